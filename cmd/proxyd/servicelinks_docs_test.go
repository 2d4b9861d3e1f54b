package main

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

// kubeServiceLinks returns the variables the kubelet gives a pod for the
// Services among docs (pkg/kubelet/envvars in Kubernetes), each with
// ClusterIP clusterIP: what a pod of the example sees when
// enableServiceLinks is left on.
func kubeServiceLinks(docs []map[string]any, clusterIP string) []string {
	var env []string
	for _, d := range docs {
		if str(d["kind"]) != "Service" {
			continue
		}
		prefix := strings.ToUpper(strings.ReplaceAll(str(mapAt(d, "metadata")["name"]), "-", "_"))
		ports := listAt(d, "spec", "ports")
		if len(ports) == 0 {
			continue
		}
		env = append(env, prefix+"_SERVICE_HOST="+clusterIP, prefix+"_SERVICE_PORT="+str(mapAt(ports[0])["port"]))
		for _, p := range ports {
			if name := str(mapAt(p)["name"]); name != "" {
				env = append(env, prefix+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+"="+str(mapAt(p)["port"]))
			}
		}
		for i, p := range ports { // Docker-links style
			port, proto := str(mapAt(p)["port"]), strings.ToUpper(str(mapAt(p)["protocol"]))
			if proto == "" {
				proto = "TCP"
			}
			url := strings.ToLower(proto) + "://" + net.JoinHostPort(clusterIP, port)
			if i == 0 {
				env = append(env, prefix+"_PORT="+url)
			}
			pp := fmt.Sprintf("%s_PORT_%s_%s", prefix, port, proto)
			env = append(env, pp+"="+url, pp+"_PROTO="+strings.ToLower(proto), pp+"_PORT="+port, pp+"_ADDR="+clusterIP)
		}
	}
	return env
}

func TestKubeServiceLinks(t *testing.T) {
	docs := yamlDocuments(t, "service", []byte(`
apiVersion: v1
kind: Service
metadata: {name: proxyd}
spec:
  ports:
    - {name: proxy, port: 8080}
    - {name: admin, port: 9090}
`))
	got := strings.Join(kubeServiceLinks(docs, "10.96.0.10"), "\n")
	if want := strings.Join(serviceLinksProxyd, "\n"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// podSpecs returns the pod specs of a Kubernetes document, by where they
// are: a Pod's own, a workload's template, a CronJob's job template.
func podSpecs(d map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	switch kind := str(d["kind"]); kind {
	case "Pod":
		out["spec"] = mapAt(d, "spec")
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController":
		out["spec.template.spec"] = mapAt(d, "spec", "template", "spec")
	case "CronJob":
		out["spec.jobTemplate.spec.template.spec"] = mapAt(d, "spec", "jobTemplate", "spec", "template", "spec")
	}
	return out
}

// TestDeployExamplesDisableServiceLinks: every pod of the Kubernetes
// examples sets enableServiceLinks: false (issue 25), and proxyd would
// also start with the links the examples' own Services create (checked
// with check-config in TestDeployExamples, which adds them).
func TestDeployExamplesDisableServiceLinks(t *testing.T) {
	pods := 0
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy", "kubernetes"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		for _, doc := range yamlDocuments(t, rel, data) {
			for where, spec := range podSpecs(doc) {
				pods++
				if v, ok := spec["enableServiceLinks"].(bool); !ok || v {
					t.Errorf("%s: %s %s: %s.enableServiceLinks is %v, want false", rel, str(doc["kind"]), str(mapAt(doc, "metadata")["name"]), where, spec["enableServiceLinks"])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pods < 2 {
		t.Fatalf("found %d pod specs under deploy/kubernetes", pods)
	}
}

// TestKubeServiceLinksOfTheExamples: the shared-proxy example's Service
// is the one of issue 25 (named proxyd), so TestDeployExamples checks its
// links for real.
func TestKubeServiceLinksOfTheExamples(t *testing.T) {
	p := filepath.Join(repoRoot, "deploy", "kubernetes", "shared-proxy.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	env := kubeServiceLinks(yamlDocuments(t, p, data), "10.96.0.10")
	if len(env) == 0 || !strings.HasPrefix(env[0], "PROXYD_SERVICE_HOST=") {
		t.Fatalf("links of %s: %q, want those of a Service named proxyd", p, env)
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if !config.IsServiceLink(name, value) {
			t.Errorf("%s is not taken for a service link", kv)
		}
	}
	if _, err := strconv.Atoi(strings.TrimPrefix(env[1], "PROXYD_SERVICE_PORT=")); err != nil {
		t.Errorf("second link %q, want PROXYD_SERVICE_PORT=<port>", env[1])
	}
}
