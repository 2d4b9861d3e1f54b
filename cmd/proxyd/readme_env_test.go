package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// readmeSection returns the README's text from the heading title to the
// next heading of its level.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	doc := string(readRepoFile(t, "README.md"))
	_, rest, ok := strings.Cut(doc, "\n"+title+"\n")
	if !ok {
		t.Fatalf("README.md has no %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// TestReadmeProxyVariablesReachProxyd runs the README's "Use it" export
// lines in a shell and curl after them, as a newcomer would: the request
// must go through proxyd (issue 25: with only HTTP_PROXY set, curl went
// direct, silently).
func TestReadmeProxyVariablesReachProxyd(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	var exports []string
	for line := range strings.SplitSeq(readmeSection(t, "## Use it"), "\n") {
		if strings.HasPrefix(line, "export ") && strings.Contains(strings.ToLower(line), "proxy") {
			exports = append(exports, line)
		}
	}
	if len(exports) == 0 {
		t.Fatal(`README.md "Use it" exports no proxy variable`)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	p := startProxyd(t)
	script := strings.ReplaceAll(strings.Join(exports, "\n"), "127.0.0.1:8080", p.proxy) +
		"\nexec " + curl + ` -sS -D - -o /dev/null "$1"`
	cmd := exec.Command("sh", "-c", script, "sh", up.URL+"/readme")
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s\nscript:\n%s", err, stderr.String(), script)
	}
	if !regexp.MustCompile(`(?mi)^Via: 1\.1 proxyd\r?$`).Match(out) {
		t.Errorf("curl after the README's exports did not go through proxyd (no Via: 1.1 proxyd):\n%s\nscript:\n%s", out, script)
	}
}

// TestDockerfileSaysItNeedsBuildKit: the Dockerfile uses what only
// BuildKit understands; its header and docs/operations.md say so, with
// the commands that work (issue 25).
func TestDockerfileSaysItNeedsBuildKit(t *testing.T) {
	df := string(readRepoFile(t, "Dockerfile"))
	if !strings.Contains(df, "--platform=$BUILDPLATFORM") && !strings.Contains(df, "RUN --mount") {
		t.Fatal("the Dockerfile no longer uses BuildKit-only syntax (--platform=$BUILDPLATFORM, RUN --mount): drop the BuildKit notes from its header and docs/operations.md, and this test")
	}
	header, _, _ := strings.Cut(df, "\nARG ")
	for _, want := range []string{"BuildKit", "DOCKER_BUILDKIT=1 docker build", "docker buildx build"} {
		if !strings.Contains(header, want) {
			t.Errorf("the Dockerfile's header comment does not say %q", want)
		}
	}
	ops := string(readRepoFile(t, "docs/operations.md"))
	_, section, _ := strings.Cut(ops, "\n## The container image\n")
	section, _, _ = strings.Cut(section, "\n## ")
	for _, want := range []string{"BuildKit", "DOCKER_BUILDKIT=1 docker build", "docker buildx build", "failed to parse platform"} {
		if !strings.Contains(section, want) {
			t.Errorf(`docs/operations.md "The container image" does not say %q`, want)
		}
	}
}

// TestClientTables: the clients' proxy-variable table and the CA trust
// table name the clients issue 25 tried.
func TestClientTables(t *testing.T) {
	for _, tc := range []struct {
		doc, table string
		rows       []string
	}{
		{"docs/clients.md", "| client | proxy variables read |", []string{
			"| curl |", "| Go `net/http`", "| Python `requests` |", "| Python `urllib` |", "| Python `httpx` |",
			"| Python `aiohttp` |", "| Node.js, undici `EnvHttpProxyAgent` |", "| Node.js, undici `ProxyAgent` |", "| Java |",
		}},
		{"docs/tls-interception.md", "| client | how |", []string{
			"| curl |", "| Python `requests` |", "| Python `httpx` |", "| Python `aiohttp` |",
			"| Node.js, undici `EnvHttpProxyAgent`", "| Java |",
		}},
	} {
		doc := string(readRepoFile(t, tc.doc))
		_, table, ok := strings.Cut(doc, tc.table)
		if !ok {
			t.Errorf("%s: no table %q", tc.doc, tc.table)
			continue
		}
		table, _, _ = strings.Cut(table, "\n\n")
		var rows []string
		for line := range strings.SplitSeq(table, "\n") {
			rows = append(rows, strings.TrimSpace(line))
		}
		for _, want := range tc.rows {
			found := false
			for _, r := range rows {
				found = found || strings.HasPrefix(r, want)
			}
			if !found {
				t.Errorf("%s: table %q has no row %q", tc.doc, tc.table, want)
			}
		}
	}
}
