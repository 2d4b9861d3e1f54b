package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// writeHtpasswd writes name:bcrypt lines (bcrypt's minimum cost: fast).
func writeHtpasswd(t *testing.T, path string, pairs ...string) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(pairs[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", pairs[i], h)
	}
	writeFile(t, path, b.String())
}

// docs/configuration.md ("Clients: `auth`, `clients`, `fairness`") with curl and a Go client: 407 without or with wrong
// credentials, 200 with them, the header not forwarded, CONNECT
// authenticated; failures counted; the file reloaded with the config.
func TestProxyAuthE2E(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "proxy-authorization=%q", r.Header.Get("Proxy-Authorization"))
	}))
	defer up.Close()
	tlsUp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "tls ok") }))
	defer tlsUp.Close()
	dir := t.TempDir()
	users := filepath.Join(dir, "users.htpasswd")
	writeHtpasswd(t, users, "alice", "s3cret")
	cfg := filepath.Join(dir, "proxyd.yaml")
	writeFile(t, cfg, "auth:\n  htpasswd: "+users+"\n")
	p := startProxyd(t, "--config", cfg)

	client := func(user *url.Userinfo) *http.Client {
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: p.proxy, User: user}), TLSClientConfig: tlsUp.Client().Transport.(*http.Transport).TLSClientConfig}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	resp, _ := get(t, client(nil), up.URL+"/")
	if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") != `Basic realm="proxyd"` || resp.Header.Get("Proxy-Status") != "proxyd; error=http_request_denied" {
		t.Fatalf("no credentials: %s %v", resp.Status, resp.Header)
	}
	if resp, _ = get(t, client(url.UserPassword("alice", "wrong")), up.URL+"/"); resp.StatusCode != 407 {
		t.Fatalf("wrong password: %s", resp.Status)
	}
	resp, body := get(t, client(url.UserPassword("alice", "s3cret")), up.URL+"/")
	if resp.StatusCode != 200 || body != `proxy-authorization=""` {
		t.Fatalf("with credentials: %s %q", resp.Status, body)
	}
	// CONNECT: Go sends the credentials on the CONNECT. A refused CONNECT
	// shows the client only the reason phrase, which says what to do.
	if _, err := client(nil).Get(tlsUp.URL + "/"); err == nil || !strings.Contains(err.Error(), "http_request_denied") || !strings.Contains(err.Error(), "auth.htpasswd") {
		t.Fatalf("CONNECT without credentials: %v", err)
	}
	if resp, body = get(t, client(url.UserPassword("alice", "s3cret")), tlsUp.URL+"/"); resp.StatusCode != 200 || body != "tls ok" {
		t.Fatalf("CONNECT with credentials: %s %q", resp.Status, body)
	}

	if bin, err := exec.LookPath("curl"); err == nil {
		run := func(args ...string) string {
			out, _ := exec.Command(bin, append([]string{"-q", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"}, args...)...).CombinedOutput()
			return string(out)
		}
		if got := run("-x", "http://"+p.proxy, up.URL+"/"); got != "407" {
			t.Errorf("curl without credentials: %s", got)
		}
		if got := run("-x", "http://"+p.proxy, "--proxy-user", "alice:s3cret", up.URL+"/"); got != "200" {
			t.Errorf("curl --proxy-user: %s", got)
		}
		if got := run("-x", "http://alice:s3cret@"+p.proxy, "-k", tlsUp.URL+"/"); got != "200" {
			t.Errorf("curl https through an authenticated CONNECT: %s", got)
		}
		// A refused CONNECT: curl reports the proxy's 407 as its CONNECT code.
		out, _ := exec.Command(bin, "-q", "-s", "-o", "/dev/null", "-w", "%{http_connect}", "--max-time", "10", "-x", "http://"+p.proxy, "-k", tlsUp.URL+"/").CombinedOutput()
		if string(out) != "407" {
			t.Errorf("curl CONNECT without credentials: %q", out)
		}
	} else {
		t.Log("curl not installed: its part skipped")
	}
	waitFor(t, 5*time.Second, "the auth failures counted", func() (bool, any) {
		f := scrape(t, p)["proxyd_auth_failures_total"]
		var missing, invalid float64
		for _, m := range f.GetMetric() {
			switch m.GetLabel()[0].GetValue() {
			case "missing":
				missing = m.GetCounter().GetValue()
			case "invalid":
				invalid = m.GetCounter().GetValue()
			}
		}
		return missing >= 2 && invalid == 1, f
	})
	if strings.Contains(p.log.String(), "s3cret") || strings.Contains(p.log.String(), "YWxpY2U6czNjcmV0") {
		t.Fatal("credentials in the log")
	}

	// Reloaded with the config: bob replaces alice.
	writeHtpasswd(t, users, "bob", "hunter2")
	p.sig <- syscall.SIGHUP
	waitFor(t, 10*time.Second, "bob accepted after the reload", func() (bool, any) {
		resp, _ := get(t, client(url.UserPassword("bob", "hunter2")), up.URL+"/")
		return resp.StatusCode == 200, resp.Status
	})
	if resp, _ = get(t, client(url.UserPassword("alice", "s3cret")), up.URL+"/"); resp.StatusCode != 407 {
		t.Errorf("alice after she was removed: %s", resp.Status)
	}
}

// A bad htpasswd line is refused at start, naming the file and the line.
func TestProxyAuthBadFile(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.htpasswd")
	writeFile(t, users, "# users\nalice:$apr1$abc$def\n")
	var out, errOut strings.Builder
	code := run([]string{"check-config", "--config", writeConfig(t, "auth:\n  htpasswd: "+users+"\n")}, nil, &out, &errOut, nil)
	if code != 2 || !strings.Contains(errOut.String(), users+":2:") || !strings.Contains(errOut.String(), "htpasswd -B") || strings.Contains(errOut.String(), "$apr1$abc$def") {
		t.Fatalf("check-config: exit %d %q", code, errOut.String())
	}
}
