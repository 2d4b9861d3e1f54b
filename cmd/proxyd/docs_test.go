package main

// Tests that keep the documentation, the example configurations and the
// deployment examples in agreement with the code: every configuration key
// is documented with its real default, environment variable and flag;
// every example loads; every manifest parses and its embedded proxyd
// configuration passes check-config with the environment it sets; the
// Dockerfile has what the image promises; the README links every doc.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/proxyd/proxyd/internal/config"
)

// repoRoot is the repository, seen from cmd/proxyd.
var repoRoot = filepath.Join("..", "..")

func readRepoFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// entryFields returns the fields of the entries of the list keys ("hosts",
// "priority.rules", "routes") as "hosts[].match", descending into nested
// mappings ("priority.rules[].header.name").
func entryFields() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft, prefix+name+".")
				continue
			}
			out = append(out, prefix+name)
		}
	}
	for _, key := range config.Keys() {
		if t := typeOf(key); t.Kind() == reflect.Slice && deref(t.Elem()).Kind() == reflect.Struct {
			walk(t.Elem(), key+"[].")
		}
	}
	return out
}

// docRow is one row of the "Every key" table of docs/configuration.md.
type docRow struct{ key, def, env, flag, reload string }

func keyTable(t *testing.T, doc []byte) []docRow {
	t.Helper()
	_, section, ok := bytes.Cut(doc, []byte("\n## Every key\n"))
	if !ok {
		t.Fatal("docs/configuration.md has no \"## Every key\" section")
	}
	var rows []docRow
	for line := range strings.SplitSeq(string(section), "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) != 5 {
			t.Errorf("configuration.md: want 5 cells (key, default, variable, flag, reload): %s", line)
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, docRow{unquote(cells[0]), unquote(cells[1]), unquote(cells[2]), unquote(cells[3]), cells[4]})
	}
	return rows
}

func unquote(cell string) string { return strings.TrimSuffix(strings.TrimPrefix(cell, "`"), "`") }

// TestConfigurationDocCoversEveryKey: docs/configuration.md has a row for
// every key the code accepts (and for no other), with the real default,
// environment variable and flag, documents every field of the list
// entries; configs/proxyd.yaml sets every key and describes every entry
// field.
func TestConfigurationDocCoversEveryKey(t *testing.T) {
	doc := readRepoFile(t, "docs/configuration.md")
	rows := keyTable(t, doc)
	flags := map[string]string{}
	for _, fk := range flagKeys {
		flags[fk.key] = "--" + fk.flag
	}
	documented := map[string]bool{}
	for _, r := range rows {
		if documented[r.key] {
			t.Errorf("configuration.md: %s has two rows", r.key)
		}
		documented[r.key] = true
		if !slices.Contains(config.Keys(), r.key) {
			t.Errorf("configuration.md documents %q, which is not a configuration key", r.key)
			continue
		}
		if r.env != config.EnvName(r.key) {
			t.Errorf("configuration.md: %s: variable %q, want %q", r.key, r.env, config.EnvName(r.key))
		}
		if r.flag != flags[r.key] {
			t.Errorf("configuration.md: %s: flag %q, want %q", r.key, r.flag, flags[r.key])
		}
		if r.reload != "live" && r.reload != "restart" {
			t.Errorf("configuration.md: %s: reload %q, want live or restart", r.key, r.reload)
		}
		// The documented default, set in a file, must leave the defaults
		// unchanged.
		var v any
		if err := yaml.Unmarshal([]byte(r.def), &v); err != nil {
			t.Errorf("configuration.md: %s: default %q is not YAML: %v", r.key, r.def, err)
			continue
		}
		data, err := yaml.Marshal(nest(r.key, v))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := load("configuration.md", data, nil, nil)
		if err != nil {
			t.Errorf("configuration.md: %s: default %q does not load: %v", r.key, r.def, err)
		} else if !reflect.DeepEqual(cfg, config.Default()) {
			t.Errorf("configuration.md: %s: documented default %q is not the built-in default", r.key, r.def)
		}
	}
	for _, key := range config.Keys() {
		if !documented[key] {
			t.Errorf("configuration.md: no row for %s", key)
		}
	}
	for _, f := range entryFields() {
		if !bytes.Contains(doc, []byte("`"+f+"`")) {
			t.Errorf("configuration.md does not document `%s`", f)
		}
	}

	example := readRepoFile(t, "configs/proxyd.yaml")
	raw, err := parseFile(example)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range config.Keys() {
		if lookupPath(raw.(map[string]any), key) == nil {
			t.Errorf("configs/proxyd.yaml does not set %s", key)
		}
	}
	for _, f := range entryFields() {
		_, field, _ := strings.Cut(f, "[].")
		field, _, _ = strings.Cut(field, ".")
		if !bytes.Contains(example, []byte(field+":")) {
			t.Errorf("configs/proxyd.yaml does not describe %s", f)
		}
	}
}

// codeBlocks returns the fenced code blocks of a Markdown file whose
// language is lang.
func codeBlocks(doc []byte, lang string) []string {
	var blocks []string
	var cur []string
	in := false
	for line := range strings.SplitSeq(string(doc), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```"+lang:
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// envAssignment matches a shell assignment to a PROXYD_ variable at the
// start of a line: NAME=value, NAME='value' or NAME="value".
var envAssignment = regexp.MustCompile(`^(PROXYD_[A-Z0-9_]+)=('[^']*'|"[^"]*"|\S*)`)

// TestConfigurationDocExamplesLoad: every YAML example in
// docs/configuration.md is a valid configuration file, and every PROXYD_
// assignment in its shell examples is a valid setting.
func TestConfigurationDocExamplesLoad(t *testing.T) {
	doc := readRepoFile(t, "docs/configuration.md")
	blocks := codeBlocks(doc, "yaml")
	if len(blocks) < 5 {
		t.Fatalf("configuration.md has %d YAML examples; expected one per section", len(blocks))
	}
	for i, b := range blocks {
		if _, err := load(fmt.Sprintf("configuration.md YAML example %d", i+1), []byte(b), nil, nil); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
	}
	n := 0
	for _, b := range codeBlocks(doc, "sh") {
		for line := range strings.SplitSeq(b, "\n") {
			m := envAssignment.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			n++
			kv := m[1] + "=" + strings.Trim(m[2], `'"`)
			if _, err := load("", nil, []string{kv}, nil); err != nil {
				t.Errorf("configuration.md: %s: %v", kv, err)
			}
		}
	}
	if n == 0 {
		t.Error("configuration.md shows no environment variable example")
	}
}

// proxydSetup is how one example runs proxyd: its environment (the
// image's ENV under the example's own), its --config file's content, and
// where it came from.
type proxydSetup struct {
	where string
	env   []string
	file  string // "" when no --config
	// ports names the container's ports (Kubernetes), for the probes.
	ports map[string]int
	spec  map[string]any // the container (Kubernetes) or service (compose)
	pod   map[string]any // the pod template (Kubernetes)
}

// placeholder stands for values an example takes from elsewhere: a
// Secret, a ${VARIABLE} of the shell.
const placeholder = "placeholder-from-elsewhere"

var composeVar = regexp.MustCompile(`\$\{[^}]*\}`)

// TestDeployExamples parses every YAML file under deploy/ (every document
// of multi-document files), finds each proxyd the examples run, and checks
// its configuration with check-config, as the container would load it.
func TestDeployExamples(t *testing.T) {
	var setups []proxydSetup
	files := 0
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return err
		}
		files++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		docs := yamlDocuments(t, p, data)
		rel, _ := filepath.Rel(repoRoot, p)
		if _, ok := docs[0]["services"]; ok {
			setups = append(setups, composeSetups(t, rel, docs[0])...)
		} else {
			setups = append(setups, kubernetesSetups(t, rel, docs)...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 || len(setups) < 3 {
		t.Fatalf("found %d YAML files and %d proxyd setups under deploy/", files, len(setups))
	}
	image := dockerfileEnv(t)
	for _, s := range setups {
		t.Run(s.where, func(t *testing.T) {
			env := append(slices.Clone(s.env), image...) // the example's own first: it wins
			args := []string{"check-config"}
			if s.file != "" {
				f := filepath.Join(t.TempDir(), "proxyd.yaml")
				writeFile(t, f, s.file)
				args = append(args, "--config", f)
			}
			if code, _, stderr := cli(t, env, args...); code != 0 {
				t.Fatalf("check-config: exit %d: %s", code, stderr)
			}
			cfg, err := loadConfig(loadOptions{File: argFile(args), Env: env})
			if err != nil {
				t.Fatal(err)
			}
			if !loopback(cfg.Admin.Listen) && cfg.Admin.Token == "" {
				t.Errorf("admin.listen %s leaves loopback without admin.token", cfg.Admin.Listen)
			}
			if s.pod != nil {
				checkKubernetesProxyd(t, s, cfg)
			}
		})
	}
}

func argFile(args []string) string {
	if i := slices.Index(args, "--config"); i >= 0 {
		return args[i+1]
	}
	return ""
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// yamlDocuments parses every document of a YAML file; each must be a
// mapping.
func yamlDocuments(t *testing.T, name string, data []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: document %d: %v", name, len(docs)+1, err)
		}
		if doc == nil {
			continue // an empty document, e.g. after a leading ---
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", name)
	}
	return docs
}

func mapAt(v any, keys ...string) map[string]any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	m, _ := v.(map[string]any)
	return m
}

func listAt(v any, keys ...string) []any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	l, _ := v.([]any)
	return l
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// configArg returns the value of --config in a container's args.
func configArg(args []any) string {
	for i, a := range args {
		if s := str(a); s == "--config" && i+1 < len(args) {
			return str(args[i+1])
		} else if v, ok := strings.CutPrefix(s, "--config="); ok {
			return v
		}
	}
	return ""
}

// kubernetesSetups finds the proxyd containers of a file's workloads and
// their configuration, mounted from a ConfigMap of the same file.
func kubernetesSetups(t *testing.T, name string, docs []map[string]any) []proxydSetup {
	t.Helper()
	configMaps := map[string]map[string]any{}
	for i, d := range docs {
		if str(d["apiVersion"]) == "" || str(d["kind"]) == "" || str(mapAt(d, "metadata")["name"]) == "" {
			t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", name, i+1)
		}
		if str(d["kind"]) == "ConfigMap" {
			configMaps[str(mapAt(d, "metadata")["name"])] = mapAt(d, "data")
		}
	}
	var out []proxydSetup
	for _, d := range docs {
		if str(d["kind"]) != "Deployment" {
			continue
		}
		pod := mapAt(d, "spec", "template")
		spec := mapAt(pod, "spec")
		containers := append(listAt(spec, "initContainers"), listAt(spec, "containers")...)
		for _, c := range containers {
			c := c.(map[string]any)
			if !strings.Contains(str(c["image"]), "proxyd") {
				continue
			}
			s := proxydSetup{where: name + "/" + str(mapAt(d, "metadata")["name"]) + "/" + str(c["name"]), spec: c, pod: pod, ports: map[string]int{}}
			for _, e := range listAt(c, "env") {
				e := e.(map[string]any)
				val := str(e["value"])
				if e["valueFrom"] != nil {
					val = placeholder
				}
				s.env = append(s.env, str(e["name"])+"="+val)
			}
			// And the service links of the file's Services, which a pod
			// gets when enableServiceLinks is left on (issue 25: proxyd
			// must start with them).
			s.env = append(s.env, kubeServiceLinks(docs, "10.96.0.10")...)
			for _, p := range listAt(c, "ports") {
				p := p.(map[string]any)
				n, _ := p["containerPort"].(int)
				s.ports[str(p["name"])] = n
			}
			if file := configArg(listAt(c, "args")); file != "" {
				s.file = mountedFile(t, s.where, file, c, spec, configMaps)
			}
			out = append(out, s)
		}
	}
	return out
}

// mountedFile returns the content of file as a container sees it through
// a ConfigMap volume.
func mountedFile(t *testing.T, where, file string, c, spec map[string]any, configMaps map[string]map[string]any) string {
	t.Helper()
	for _, m := range listAt(c, "volumeMounts") {
		m := m.(map[string]any)
		if path.Dir(file) != path.Clean(str(m["mountPath"])) {
			continue
		}
		for _, v := range listAt(spec, "volumes") {
			v := v.(map[string]any)
			if str(v["name"]) != str(m["name"]) {
				continue
			}
			cm, ok := configMaps[str(mapAt(v, "configMap")["name"])]
			if !ok {
				t.Fatalf("%s: volume %s is not a ConfigMap of this file", where, str(v["name"]))
			}
			content, ok := cm[path.Base(file)].(string)
			if !ok {
				t.Fatalf("%s: the ConfigMap has no key %s", where, path.Base(file))
			}
			return content
		}
	}
	t.Fatalf("%s: nothing is mounted at %s", where, path.Dir(file))
	return ""
}

// checkKubernetesProxyd checks what the examples promise of a proxyd
// container: probes on the admin listener, resources, a locked-down
// securityContext, Prometheus annotations, and for a sidecar an
// application that uses it through HTTP_PROXY without looping.
func checkKubernetesProxyd(t *testing.T, s proxydSetup, cfg config.Config) {
	t.Helper()
	_, adminPort, _ := net.SplitHostPort(cfg.Admin.Listen)
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		p := mapAt(s.spec, probe)
		switch {
		case p == nil:
			t.Errorf("no %s", probe)
		case p["httpGet"] != nil:
			port := mapAt(p, "httpGet")["port"]
			if n, ok := s.ports[str(port)]; ok {
				port = n
			}
			if str(port) != adminPort || loopback(cfg.Admin.Listen) {
				t.Errorf("%s: httpGet on port %v, but admin.listen is %s (the kubelet probes from outside the pod)", probe, port, cfg.Admin.Listen)
			}
			wantPath := map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"}[probe]
			if got := str(mapAt(p, "httpGet")["path"]); got != wantPath {
				t.Errorf("%s: path %s, want %s", probe, got, wantPath)
			}
		case p["exec"] != nil:
			cmd := fmt.Sprint(listAt(p, "exec", "command"))
			if !strings.Contains(cmd, "proxyd health") {
				t.Errorf("%s: exec %s, want proxyd health", probe, cmd)
			}
		default:
			t.Errorf("%s: want httpGet on the admin port or exec proxyd health", probe)
		}
	}
	if mapAt(s.spec, "resources", "requests") == nil {
		t.Error("no resource requests")
	}
	sc := mapAt(s.spec, "securityContext")
	for key, want := range map[string]bool{"readOnlyRootFilesystem": true, "runAsNonRoot": true, "allowPrivilegeEscalation": false} {
		if got, ok := sc[key].(bool); !ok || got != want {
			t.Errorf("securityContext.%s: %v, want %v", key, sc[key], want)
		}
	}
	ann := mapAt(s.pod, "metadata", "annotations")
	if str(ann["prometheus.io/scrape"]) != "true" || str(ann["prometheus.io/port"]) != adminPort || loopback(cfg.Admin.Listen) {
		t.Errorf("prometheus.io annotations %v do not match admin.listen %s", ann, cfg.Admin.Listen)
	}

	// A sidecar: the pod's other containers use it.
	spec := mapAt(s.pod, "spec")
	if !slices.ContainsFunc(listAt(spec, "initContainers"), func(c any) bool { return reflect.DeepEqual(c, any(s.spec)) }) &&
		len(listAt(spec, "containers")) == 1 {
		return // a shared proxy, alone in its pod
	}
	_, proxyPort, _ := net.SplitHostPort(cfg.Listen)
	apps := 0
	for _, c := range listAt(spec, "containers") {
		c := c.(map[string]any)
		if reflect.DeepEqual(c, s.spec) {
			continue
		}
		apps++
		env := map[string]string{}
		for _, e := range listAt(c, "env") {
			env[str(mapAt(e)["name"])] = str(mapAt(e)["value"])
		}
		for _, name := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
			if want := "http://127.0.0.1:" + proxyPort; env[name] != want {
				t.Errorf("container %s: %s=%q, want %q", str(c["name"]), name, env[name], want)
			}
		}
		for _, name := range []string{"NO_PROXY", "no_proxy"} {
			hosts := strings.Split(env[name], ",")
			if !slices.Contains(hosts, "127.0.0.1") || !slices.Contains(hosts, "localhost") {
				t.Errorf("container %s: %s=%q must hold localhost and 127.0.0.1 (else a gateway call loops through proxyd)", str(c["name"]), name, env[name])
			}
		}
	}
	if apps == 0 {
		t.Error("a sidecar with no application container")
	}
}

// composeSetups finds the proxyd services of a compose file, their
// environment and their --config file from the file's inline configs.
func composeSetups(t *testing.T, name string, doc map[string]any) []proxydSetup {
	t.Helper()
	var out []proxydSetup
	for svcName, svc := range mapAt(doc, "services") {
		svc := svc.(map[string]any)
		if !strings.Contains(str(svc["image"]), "proxyd") {
			continue
		}
		s := proxydSetup{where: name + "/" + svcName, spec: svc}
		switch env := svc["environment"].(type) {
		case map[string]any:
			for k, v := range env {
				s.env = append(s.env, k+"="+composeVar.ReplaceAllString(str(v), placeholder))
			}
		case []any:
			for _, kv := range env {
				s.env = append(s.env, composeVar.ReplaceAllString(str(kv), placeholder))
			}
		}
		slices.Sort(s.env)
		if file := configArg(listAt(svc, "command")); file != "" {
			found := false
			for _, c := range listAt(svc, "configs") {
				c := mapAt(c)
				if str(c["target"]) == file {
					content, ok := mapAt(doc, "configs", str(c["source"]))["content"].(string)
					if !ok {
						t.Fatalf("%s: config %s has no inline content", s.where, str(c["source"]))
					}
					s.file, found = content, true
				}
			}
			if !found {
				t.Fatalf("%s: nothing provides %s", s.where, file)
			}
		}
		out = append(out, s)
	}
	return out
}

// dockerfileEnv returns the Dockerfile's ENV settings as KEY=VALUE.
func dockerfileEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, ins := range dockerfileInstructions(t) {
		if ins.cmd != "ENV" {
			continue
		}
		for _, kv := range strings.Fields(ins.args) {
			if !strings.Contains(kv, "=") {
				t.Fatalf("Dockerfile: write ENV as KEY=VALUE: %q", ins.args)
			}
			env = append(env, strings.Trim(kv, `"`))
		}
	}
	return env
}

type instruction struct{ cmd, args string }

// dockerfileInstructions reads the Dockerfile's instructions, comments
// dropped and continuation lines joined.
func dockerfileInstructions(t *testing.T) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readRepoFile(t, "Dockerfile")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDockerfile checks what the image promises, since no Docker engine
// runs in CI: a Go build stage, a static, trimmed, stamped build, a
// non-root user, the ports, a HEALTHCHECK with the binary itself, the proxy
// on 0.0.0.0 by environment and the admin listener left on loopback.
func TestDockerfile(t *testing.T) {
	var froms []string
	all := map[string][]string{}
	for _, in := range dockerfileInstructions(t) {
		all[in.cmd] = append(all[in.cmd], in.args)
		if in.cmd == "FROM" {
			froms = append(froms, in.args)
		}
	}
	if len(froms) < 2 || !regexp.MustCompile(`(?i)^(--platform=\S+ )?golang:\S+ AS build$`).MatchString(froms[0]) {
		t.Errorf("FROM: want a golang builder stage \"AS build\" first, got %q", froms)
	}
	if last := froms[len(froms)-1]; last != "gcr.io/distroless/static-debian12:nonroot" && last != "scratch" {
		t.Errorf("final FROM %q: want gcr.io/distroless/static-debian12:nonroot or scratch", last)
	}
	build := strings.Join(all["RUN"], "\n")
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", "-ldflags", "-X main.version=", "-X main.commit=", "-X main.date=", "./cmd/proxyd"} {
		if !strings.Contains(build, want) {
			t.Errorf("no RUN has %q", want)
		}
	}
	if u := all["USER"]; len(u) == 0 || !regexp.MustCompile(`^(nonroot(:nonroot)?|[1-9][0-9]*(:[1-9][0-9]*)?)$`).MatchString(u[len(u)-1]) {
		t.Errorf("USER %q: want nonroot or a numeric non-root uid", u)
	}
	if e := all["EXPOSE"]; len(e) != 1 || e[0] != "8080 9090" {
		t.Errorf("EXPOSE %q, want \"8080 9090\"", e)
	}
	if entry := all["ENTRYPOINT"]; len(entry) != 1 || entry[0] != `["/usr/local/bin/proxyd"]` {
		t.Errorf("ENTRYPOINT %q", entry)
	}
	if hc := all["HEALTHCHECK"]; len(hc) != 1 || !strings.HasSuffix(hc[0], `CMD ["/usr/local/bin/proxyd", "health"]`) {
		t.Errorf("HEALTHCHECK %q: want CMD [\"/usr/local/bin/proxyd\", \"health\"] (exec form: there is no shell)", hc)
	}
	if !slices.Contains(all["COPY"], "--from=build /out/proxyd /usr/local/bin/proxyd") {
		t.Errorf("COPY %q: the binary must land at /usr/local/bin/proxyd", all["COPY"])
	}
	env := dockerfileEnv(t)
	if v := lookupEnv(env, "PROXYD_LISTEN"); v != "0.0.0.0:8080" {
		t.Errorf("ENV PROXYD_LISTEN=%q, want 0.0.0.0:8080", v)
	}
	if v := lookupEnv(env, "PROXYD_ADMIN_LISTEN"); v != "" && !loopback(v) {
		t.Errorf("the image sets PROXYD_ADMIN_LISTEN=%s: the admin listener leaves loopback only when the operator also sets a token", v)
	}
	if lookupEnv(env, "PROXYD_ADMIN_TOKEN") != "" {
		t.Error("the image must not carry an admin token")
	}
	ignore := string(readRepoFile(t, ".dockerignore"))
	for _, want := range []string{"*", "!go.mod", "!go.sum", "!cmd/", "!internal/"} {
		if !slices.Contains(strings.Split(ignore, "\n"), want) {
			t.Errorf(".dockerignore lacks the line %q", want)
		}
	}
}

// TestDocLinks: the README links every document in docs/ and has the
// sidecar section; relative links (and their #anchors) in the README, in
// deploy/README.md and in the user guides resolve.
func TestDocLinks(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	_, docSection, ok := bytes.Cut(readme, []byte("\n## Documentation\n"))
	if !ok {
		t.Fatal("README.md has no \"## Documentation\" section")
	}
	if i := bytes.Index(docSection, []byte("\n## ")); i >= 0 {
		docSection = docSection[:i]
	}
	mds, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, md := range mds {
		link := "(docs/" + filepath.Base(md) + ")"
		if !bytes.Contains(docSection, []byte(link)) {
			t.Errorf("README.md's Documentation section does not link %s", link)
		}
	}
	configure := bytes.Index(readme, []byte("\n## Configure it\n"))
	sidecar := bytes.Index(readme, []byte("\n## Run it as a sidecar\n"))
	if sidecar < 0 || configure < 0 || sidecar < configure ||
		bytes.Contains(readme[configure+1:sidecar], []byte("\n## ")) {
		t.Error("README.md: want a \"## Run it as a sidecar\" section right after \"## Configure it\"")
	}

	for _, name := range []string{"README.md", "deploy/README.md", "docs/architecture.md", "docs/configuration.md", "docs/operations.md", "docs/clients.md"} {
		checkLinks(t, name)
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// checkLinks checks the relative links of a Markdown file of the
// repository: the file exists and, for a Markdown target, so does the
// heading the #anchor names.
func checkLinks(t *testing.T, name string) {
	t.Helper()
	doc := readRepoFile(t, name)
	for _, m := range mdLink.FindAllSubmatch(stripCode(doc), -1) {
		target := string(m[1])
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		file, anchor, _ := strings.Cut(target, "#")
		resolved := name
		if file != "" {
			resolved = path.Clean(path.Join(path.Dir(name), file))
		}
		if strings.HasPrefix(resolved, "../") {
			continue // outside the repository (../shared/SPEC.md)
		}
		local := filepath.Join(repoRoot, filepath.FromSlash(resolved))
		if _, err := os.Stat(local); err != nil {
			t.Errorf("%s: broken link %s: %v", name, target, err)
			continue
		}
		if anchor != "" && path.Ext(resolved) == ".md" {
			data, err := os.ReadFile(local)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(anchors(data), anchor) {
				t.Errorf("%s: link %s: %s has no heading with anchor #%s", name, target, resolved, anchor)
			}
		}
	}
}

// stripCode removes fenced code blocks, whose brackets are not links.
func stripCode(doc []byte) []byte {
	var out bytes.Buffer
	in := false
	for line := range strings.SplitSeq(string(doc), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}

// anchors returns the anchors GitHub gives a Markdown file's headings:
// lower case, punctuation dropped, spaces as "-", "-1", "-2"… for repeats.
func anchors(doc []byte) []string {
	var out []string
	seen := map[string]int{}
	for _, line := range strings.Split(string(stripCode(doc)), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out = append(out, a+"-"+strconv.Itoa(n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}
