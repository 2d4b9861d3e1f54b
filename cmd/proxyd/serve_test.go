package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logBuffer collects a proxyd's log output and lets a test wait for a line.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLine waits for a JSON log line whose msg is msg and returns it.
func (b *logBuffer) waitLine(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(b.String()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
				return m
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no log line %q; log:\n%s", msg, b.String())
	return nil
}

// countLines counts JSON log lines whose msg is msg.
func (b *logBuffer) countLines(msg string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			n++
		}
	}
	return n
}

// proc is an in-process proxyd started through run().
type proc struct {
	sig    chan os.Signal
	log    *logBuffer
	stdout *logBuffer
	code   chan int
	proxy  string
	admin  string
}

// loopbackAllow lets proxyd forward to the tests' loopback upstreams,
// which the egress policy denies by default (docs/configuration.md, "Egress policy").
var loopbackAllow = []string{"PROXYD_EGRESS_ALLOW=127.0.0.1,::1", "PROXYD_EGRESS_CONNECT_PORTS=[]"}

// startProxyd runs proxyd with args, allowed to reach loopback upstreams.
func startProxyd(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProxydEnv(t, loopbackAllow, args...)
}

// startProxydEnv runs proxyd with args and exactly the environment env.
func startProxydEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{sig: make(chan os.Signal, 4), log: &logBuffer{}, stdout: &logBuffer{}, code: make(chan int, 1)}
	args = append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)
	go func() { p.code <- run(args, env, p.stdout, p.log, p.sig) }()
	line := p.log.waitLine(t, "proxyd serving")
	p.proxy, p.admin = line["listen"].(string), line["admin_listen"].(string)
	t.Cleanup(func() {
		select {
		case <-p.code:
		default:
			p.sig <- syscall.SIGTERM
			<-p.code
		}
	})
	return p
}

func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.sig <- syscall.SIGTERM
	return p.exitCode(t)
}

// exitCode waits for proxyd to exit and returns its code.
func (p *proc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case c := <-p.code:
		p.code <- c // for Cleanup
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("proxyd did not exit")
		return -1
	}
}

func (p *proc) client() *http.Client {
	u := &url.URL{Scheme: "http", Host: p.proxy}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestServeForwardsAndExitsZero(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer up.Close()
	p := startProxyd(t)
	c := p.client()
	defer c.CloseIdleConnections()
	resp, body := get(t, c, up.URL+"/x")
	if resp.StatusCode != 200 || body != "hello /x" || resp.Header.Get("Via") != "1.1 proxyd" {
		t.Fatalf("status %d body %q via %q", resp.StatusCode, body, resp.Header.Get("Via"))
	}
	admin := &http.Client{}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r, _ := get(t, admin, "http://"+p.admin+path); r.StatusCode != 200 {
			t.Fatalf("%s: %d", path, r.StatusCode)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if _, err := net.DialTimeout("tcp", p.proxy, time.Second); err == nil {
		t.Fatal("proxy listener still accepts after exit")
	}
	if n := p.log.countLines("request"); n != 1 {
		t.Fatalf("%d access-log lines, want 1", n)
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxyd.yaml")
	writeFile(t, cfg, "limits:\n  rate: 5\n")
	p := startProxyd(t, "--config", cfg)

	writeFile(t, cfg, "limits:\n  rate: 50\n  burst: 20\n")
	p.sig <- syscall.SIGHUP
	line := p.log.waitLine(t, "configuration reloaded")
	if nl, _ := line["new_limits"].(map[string]any); nl["Rate"] != 50.0 || nl["Burst"] != 20.0 {
		t.Fatalf("reloaded limits: %v", line["new_limits"])
	}

	writeFile(t, cfg, "limits:\n  rate: -1\n")
	p.sig <- syscall.SIGHUP
	bad := p.log.waitLine(t, "reload failed; keeping the current configuration")
	if !strings.Contains(bad["error"].(string), "limits.rate") {
		t.Fatalf("reload error does not name the key: %v", bad["error"])
	}
	// (The file watcher may reload the valid edit a second time; the
	// invalid one must change nothing.)
	if got := readLimits(t, p); got["rate"] != 50.0 || got["burst"] != 20.0 {
		t.Fatalf("an invalid file was applied: %v", got)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestDrain follows docs/operations.md, "Graceful shutdown": on SIGTERM readiness turns 503, a request in
// flight goes on, one waiting keeps its place until shutdown_timeout and is
// then answered "draining", and the process exits 0.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	defer up.Close()
	defer close(release)
	p := startWithConfig(t, "limits:\n  concurrency: 1\nshutdown_timeout: 300ms\n")
	c := p.client()
	defer c.CloseIdleConnections()

	type result struct {
		status int
		ps     string
		err    error
	}
	do := func(path string) chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := c.Get(up.URL + path)
			if err != nil {
				ch <- result{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ch <- result{status: resp.StatusCode, ps: resp.Header.Get("Proxy-Status")}
		}()
		return ch
	}
	slow := do("/slow")
	if got := <-arrived; got != "/slow" {
		t.Fatalf("upstream saw %s", got)
	}
	waiting := do("/waiting")
	waitQueued(t, p) // it waits for the only slot

	p.sig <- syscall.SIGTERM
	waitStatus(t, "http://"+p.admin+"/readyz", http.StatusServiceUnavailable)

	r := <-waiting
	if r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.ps, `details="draining"`) {
		t.Fatalf("waiting request: %+v", r)
	}
	if r := <-slow; r.err == nil && r.status == 200 {
		t.Fatalf("in-flight request past shutdown_timeout was not cut: %+v", r)
	}
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit code %d after the drain", code)
	}
	select {
	case path := <-arrived:
		t.Fatalf("upstream saw %s after shutdown", path)
	default:
	}
}

// A SIGHUP during the drain (a reload sent by a service manager) is
// ignored: the request in flight finishes; only SIGTERM or SIGINT cut.
func TestSIGHUPDuringDrain(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	defer up.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before up.Close, which waits for its handlers
	p := startWithConfig(t, "shutdown_timeout: 20s\n")
	c := p.client()
	defer c.CloseIdleConnections()
	status := make(chan int, 1)
	go func() { status <- getStatus(c, up.URL+"/slow") }()
	<-arrived
	p.sig <- syscall.SIGTERM
	waitStatus(t, "http://"+p.admin+"/readyz", http.StatusServiceUnavailable)
	p.sig <- syscall.SIGHUP
	p.log.waitLine(t, "reload ignored while draining")
	free()
	if got := <-status; got != http.StatusOK {
		t.Fatalf("in-flight request answered %d after a SIGHUP during the drain, want 200", got)
	}
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit code %d after the drain", code)
	}
}

// waitQueued waits until the second request is in the queue.
func waitQueued(t *testing.T, p *proc) {
	t.Helper()
	waitDepth(t, p, 1)
}

func waitStatus(t *testing.T, u string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: admin refused before readiness turned %d", u, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never answered %d", u, want)
}

// Several problems: one line each, every line marked as proxyd's.
func TestProblemsOneLineEach(t *testing.T) {
	file := filepath.Join(t.TempDir(), "two.yaml")
	writeFile(t, file, "limits:\n  rate: -5\n  burst: -1\n")
	var out, errOut bytes.Buffer
	if code := run([]string{"check-config", "--config", file}, nil, &out, &errOut, make(chan os.Signal)); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	want := []string{"proxyd: limits.rate: ", "proxyd: limits.burst: "}
	if len(lines) != len(want) {
		t.Fatalf("stderr %q: want %d lines", errOut.String(), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d %q, want it to start with %q", i, lines[i], w)
		}
	}
}

func TestCheckConfigExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "limits:\n  rate: 10\n")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "limits:\n  rate: 10\n  max_wait: soon\n")
	unknown := filepath.Join(dir, "unknown.yaml")
	writeFile(t, unknown, "limits:\n  rat: 10\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"valid", []string{"check-config", "--config", good}, 0, "configuration OK"},
		{"bad duration", []string{"check-config", "--config", bad}, 2, "limits.max_wait"},
		{"unknown key", []string{"check-config", "--config", unknown}, 2, "limits.rat"},
		{"missing file", []string{"check-config", "--config", filepath.Join(dir, "nope.yaml")}, 2, "nope.yaml"},
		{"serve invalid", []string{"--config", bad}, 2, "limits.max_wait"},
		{"unknown flag", []string{"--bogus"}, 2, "bogus"},
		{"file without --config", []string{"check-config", good}, 2, "--config " + good},
		{"serve with a file argument", []string{good}, 2, "--config " + good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, nil, &out, &errOut, make(chan os.Signal))
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tc.want) {
				t.Fatalf("output %q + %q lacks %q", out.String(), errOut.String(), tc.want)
			}
		})
	}
}

func TestEnvOverridesFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxyd.yaml")
	writeFile(t, cfg, "limits:\n  rate: 5\n")
	var out, errOut bytes.Buffer
	code := run([]string{"check-config", "--config", cfg}, []string{"PROXYD_LIMITS_RATE=-3"}, &out, &errOut, make(chan os.Signal))
	if code != 2 || !strings.Contains(errOut.String(), "limits.rate") {
		t.Fatalf("env value not applied over the file: exit %d, %s", code, errOut.String())
	}
}

func TestListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errOut bytes.Buffer
	code := run([]string{"--listen", ln.Addr().String(), "--admin-listen", "127.0.0.1:0"}, nil, &out, &errOut, make(chan os.Signal))
	if code != 1 || !strings.Contains(errOut.String(), "listen") {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
}

func TestWarnsWhenAdminExposedWithoutToken(t *testing.T) {
	p := startProxyd(t, "--admin-listen", "0.0.0.0:0")
	p.log.waitLine(t, "the admin API is reachable from other hosts without a token: anyone who can reach it can change the limits; set admin.token (PROXYD_ADMIN_TOKEN)")
	q := startProxyd(t)
	if strings.Contains(q.log.String(), "without a token") {
		t.Fatal("warned about a loopback admin listener")
	}
}

// waitFor polls cond until it reports done and fails the test if that takes
// longer than within, naming what it waited for and the state cond last saw.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (done bool, seen any)) {
	t.Helper()
	var seen any
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var done bool
		if done, seen = cond(); done {
			return
		}
	}
	t.Fatalf("%s not reached within %v; last saw %+v", what, within, seen)
}

// getStatus GETs u through c and returns the status, or 0 if the request
// failed; it drains and closes the body. It is safe in any goroutine.
func getStatus(c *http.Client, u string) int {
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
