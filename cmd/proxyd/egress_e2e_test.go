package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// egressDenied returns proxyd_egress_denied_total by reason.
func egressDenied(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	fam := scrape(t, p)["proxyd_egress_denied_total"]
	if fam == nil {
		t.Fatal("no proxyd_egress_denied_total in /metrics")
	}
	out := map[string]float64{}
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" {
				out[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// waitProxied repeats GET u until it is answered status (a reload is
// asynchronous), failing the test after 10 s; it returns the body.
func waitProxied(t *testing.T, c *http.Client, u string, status int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := get(t, c, u)
		if resp.StatusCode == status {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still %d %q after 10 s, want %d", u, resp.StatusCode, body, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The issue's own reproduction: a client of the proxy must not reach
// proxyd's admin API through it. With the embedded defaults (no
// egress.allow) a loopback upstream and proxyd's own listeners are
// refused, counted by reason; a reload that allows 127.0.0.1 opens the
// upstream but never proxyd itself.
func TestEgressDefaultsAndReload(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "upstream "+r.URL.Path)
	}))
	defer up.Close()
	cfg := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, cfg, "log:\n  level: info\n")
	p := startProxydEnv(t, nil, "--config", cfg)
	c := p.client()
	defer c.CloseIdleConnections()

	resp, body := get(t, c, up.URL+"/x")
	if resp.StatusCode != 403 || resp.Header.Get("Proxy-Status") != `proxyd; error=destination_ip_prohibited; details="127.0.0.1 is loopback (127.0.0.0/8)"` {
		t.Fatalf("loopback upstream: %d %q %q", resp.StatusCode, resp.Header.Get("Proxy-Status"), body)
	}
	req, _ := http.NewRequest(http.MethodPatch, "http://"+p.admin+"/api/v1/limits", strings.NewReader(`{"rate":1}`))
	resp2, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 403 || !strings.Contains(resp2.Header.Get("Proxy-Status"), p.admin+` is proxyd itself"`) {
		t.Fatalf("PATCH of the admin API through the proxy: %d %q", resp2.StatusCode, resp2.Header.Get("Proxy-Status"))
	}
	if got := readLimits(t, p); got["rate"] != 100.0 {
		t.Fatalf("the rate changed through the proxy: %v", got)
	}
	got := egressDenied(t, p)
	for reason, want := range map[string]float64{"loopback": 1, "self": 1, "private": 0, "link_local": 0, "special": 0, "deny": 0, "port": 0} {
		if got[reason] != want {
			t.Errorf("proxyd_egress_denied_total{reason=%q} = %v, want %v (all: %v)", reason, got[reason], want, got)
		}
	}
	if line := p.log.waitLine(t, "request"); line["outcome"] != "denied" || line["egress_denied"] != "loopback" {
		t.Errorf("access log: %v", line)
	}

	// Reload: allow loopback, deny one path of it by port.
	writeFile(t, cfg, "egress:\n  allow: [127.0.0.1]\n  deny: ['127.0.0.1:1']\n")
	p.sig <- syscall.SIGHUP
	if body := waitProxied(t, c, up.URL+"/y", 200); body != "upstream /y" {
		t.Fatalf("after allowing 127.0.0.1: %q", body)
	}
	resp, _ = get(t, c, "http://"+p.admin+"/api/v1/limits")
	if resp.StatusCode != 403 {
		t.Fatalf("admin API through the proxy after allowing 127.0.0.1: %d, want 403", resp.StatusCode)
	}
	resp, _ = get(t, c, "http://127.0.0.1:1/")
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("Proxy-Status"), "http_request_denied") {
		t.Fatalf("denied entry after reload: %d %q", resp.StatusCode, resp.Header.Get("Proxy-Status"))
	}
	got = egressDenied(t, p)
	// (loopback grows while the reload is awaited: each try is refused.)
	if got["self"] != 2 || got["deny"] != 1 || got["loopback"] < 1 {
		t.Errorf("after reload: %v", got)
	}

	// Back to the defaults: refused again, pooled connection or not.
	writeFile(t, cfg, "log:\n  level: info\n")
	p.sig <- syscall.SIGHUP
	waitProxied(t, c, up.URL+"/z", 403)
}

// curl, as a newcomer would run it, sees the 403 and its reason, and the
// environment variable of the docs fixes it.
func TestEgressCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }))
	defer up.Close()
	run := func(p *proc) string {
		out, err := exec.Command(curl, "-si", "--max-time", "5", "-x", "http://"+p.proxy, up.URL+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run(startProxydEnv(t, nil))
	if !strings.HasPrefix(out, "HTTP/1.1 403") || !strings.Contains(out, `Proxy-Status: proxyd; error=destination_ip_prohibited; details="127.0.0.1 is loopback (127.0.0.0/8)"`) {
		t.Fatalf("curl without egress.allow:\n%s", out)
	}
	out = run(startProxydEnv(t, []string{"PROXYD_EGRESS_ALLOW=127.0.0.1"}))
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.HasSuffix(out, "hello") {
		t.Fatalf("curl with PROXYD_EGRESS_ALLOW=127.0.0.1:\n%s", out)
	}
}
