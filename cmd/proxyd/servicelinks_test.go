package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

// serviceLinksProxyd is what the kubelet adds to every pod of a namespace
// holding a Service named proxyd with ClusterIP 10.96.0.10 and ports
// "proxy" 8080 and "admin" 9090 (issue 25: with these, proxyd exited 2).
var serviceLinksProxyd = []string{
	"PROXYD_SERVICE_HOST=10.96.0.10",
	"PROXYD_SERVICE_PORT=8080",
	"PROXYD_SERVICE_PORT_PROXY=8080",
	"PROXYD_SERVICE_PORT_ADMIN=9090",
	"PROXYD_PORT=tcp://10.96.0.10:8080",
	"PROXYD_PORT_8080_TCP=tcp://10.96.0.10:8080",
	"PROXYD_PORT_8080_TCP_PROTO=tcp",
	"PROXYD_PORT_8080_TCP_PORT=8080",
	"PROXYD_PORT_8080_TCP_ADDR=10.96.0.10",
	"PROXYD_PORT_9090_TCP=tcp://10.96.0.10:9090",
	"PROXYD_PORT_9090_TCP_PROTO=tcp",
	"PROXYD_PORT_9090_TCP_PORT=9090",
	"PROXYD_PORT_9090_TCP_ADDR=10.96.0.10",
}

// TestServiceLinksAreNotConfiguration: check-config passes and proxyd
// serves with the service links of a Service named proxyd in its
// environment, and the configuration is the defaults.
func TestServiceLinksAreNotConfiguration(t *testing.T) {
	if code, stdout, stderr := cli(t, serviceLinksProxyd, "check-config"); code != 0 || stdout != "configuration OK\n" {
		t.Fatalf("check-config with service links: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	wantLoaded(t, loadOptions{Env: serviceLinksProxyd}, nil)

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	p := startProxydEnv(t, append(slices.Clone(loopbackAllow), serviceLinksProxyd...))
	c := p.client()
	defer c.CloseIdleConnections()
	if resp, body := get(t, c, up.URL); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("through proxyd: %d %q", resp.StatusCode, body)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestServiceLinkForms: every form the kubelet writes is skipped (IPv6
// ClusterIPs, UDP and SCTP ports, port names with '-' turned into '_'),
// and it is skipped beside real configuration, which still applies.
func TestServiceLinkForms(t *testing.T) {
	env := []string{
		"PROXYD_SERVICE_HOST=fd00:10:96::a",
		"PROXYD_SERVICE_PORT=53",
		"PROXYD_SERVICE_PORT_DNS_UDP=53",
		"PROXYD_PORT=udp://[fd00:10:96::a]:53",
		"PROXYD_PORT_53_UDP=udp://[fd00:10:96::a]:53",
		"PROXYD_PORT_53_UDP_PROTO=udp",
		"PROXYD_PORT_53_UDP_PORT=53",
		"PROXYD_PORT_53_UDP_ADDR=fd00:10:96::a",
		"PROXYD_PORT_9999_SCTP=sctp://10.0.0.1:9999",
		"PROXYD_PORT_9999_SCTP_PROTO=sctp",
		"PROXYD_LIMITS_RATE=7",
	}
	wantLoaded(t, loadOptions{Env: env}, func(c *config.Config) { c.Limits.Rate = 7 })
}

// TestUnknownVariablesStillRefused: beside the service links, a misspelt
// key and look-alikes whose value is not the kubelet's stop start-up
// (exit 2), each named.
func TestUnknownVariablesStillRefused(t *testing.T) {
	for _, tc := range []struct{ kv, want string }{
		{"PROXYD_LIMITS_RAET=5", "unknown environment variable PROXYD_LIMITS_RAET (did you mean PROXYD_LIMITS_RATE?)"},
		{"PROXYD_PORT=8081", "unknown environment variable PROXYD_PORT (not a Kubernetes service link"},
		{"PROXYD_SERVICE_PORT=http", "unknown environment variable PROXYD_SERVICE_PORT (not a Kubernetes service link"},
		{"PROXYD_SERVICE_HOST=proxyd.egress.svc", "unknown environment variable PROXYD_SERVICE_HOST (not a Kubernetes service link"},
		{"PROXYD_PORT_8080_TCP_PORT=9090", "unknown environment variable PROXYD_PORT_8080_TCP_PORT (not a Kubernetes service link"},
		{"PROXYD_PORT_8080_TCP=udp://10.96.0.10:8080", "unknown environment variable PROXYD_PORT_8080_TCP (not a Kubernetes service link"},
		{"PROXYD_PORT_70000_TCP_PROTO=tcp", "unknown environment variable PROXYD_PORT_70000_TCP_PROTO (not a Kubernetes service link"},
		{"PROXYD_PORT_8080_HTTP=tcp://10.96.0.10:8080", "unknown environment variable PROXYD_PORT_8080_HTTP"},
		{"PROXYD_SERVICE_NAME=proxyd", "unknown environment variable PROXYD_SERVICE_NAME"},
	} {
		name, _, _ := strings.Cut(tc.kv, "=")
		t.Run(name, func(t *testing.T) {
			// First: of a repeated variable the first wins.
			env := append([]string{tc.kv}, serviceLinksProxyd...)
			for _, args := range [][]string{{"check-config"}, {"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}} {
				// A SIGTERM already sent: should proxyd start serving
				// after all, it stops (exit 0) rather than block the test.
				sig := make(chan os.Signal, 1)
				sig <- syscall.SIGTERM
				var out, errOut bytes.Buffer
				code, stderr := run(args, env, &out, &errOut, sig), errOut.String()
				if code != 2 || !strings.HasPrefix(stderr, "proxyd: "+tc.want) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line starting %q", args, code, stderr, "proxyd: "+tc.want)
				}
			}
		})
	}
}
