package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tlsSetup is an interception CA made by `proxyd ca init`, and a TLS
// upstream (HTTP/2 capable) that records the urgency of what it gets.
type tlsSetup struct {
	dir, caCert, caKey, upstreamCA string
	up                             *httptest.Server
	mu                             sync.Mutex
	seen                           []string // "path u=N" in arrival order
}

func newTLSSetup(t *testing.T) *tlsSetup {
	t.Helper()
	s := &tlsSetup{dir: t.TempDir()}
	var out, errOut bytes.Buffer
	if code := run([]string{"ca", "init", "--out", s.dir}, nil, &out, &errOut, make(chan os.Signal)); code != 0 {
		t.Fatalf("proxyd ca init: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "REQUESTS_CA_BUNDLE") || !strings.Contains(out.String(), "NODE_EXTRA_CA_CERTS") {
		t.Errorf("ca init does not say how to trust the CA:\n%s", out.String())
	}
	s.caCert, s.caKey = filepath.Join(s.dir, "ca.pem"), filepath.Join(s.dir, "ca-key.pem")
	if fi, err := os.Stat(s.caKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem: %v %v, want mode 0600", fi.Mode(), err)
	}
	s.up = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.URL.Path+" "+r.Header.Get("Priority"))
		s.mu.Unlock()
		_, _ = fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	s.up.EnableHTTP2 = true
	s.up.Config.ErrorLog = discardLogger()
	s.up.StartTLS()
	t.Cleanup(s.up.Close)
	s.upstreamCA = filepath.Join(s.dir, "upstream.pem")
	writeFile(t, s.upstreamCA, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.up.Certificate().Raw})))
	return s
}

// config is a proxyd configuration intercepting 127.0.0.1.
func (s *tlsSetup) config(extra string) string {
	return fmt.Sprintf("tls:\n  intercept: [127.0.0.1]\n  ca_cert: %s\n  ca_key: %s\n  upstream_ca: %s\n%s", s.caCert, s.caKey, s.upstreamCA, extra)
}

// client trusts proxyd's CA only and goes through p (HTTPS_PROXY).
func (s *tlsSetup) client(t *testing.T, p *proc, h2 bool) (*http.Client, *http.Transport) {
	t.Helper()
	pem, err := os.ReadFile(s.caCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: p.proxy}),
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, tr
}

func (s *tlsSetup) arrivals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// The measurement, fixed: with limits.rate 2, ten keep-alive
// requests through one intercepted tunnel take at least 4.5 s (one token
// at once, then one every 0.5 s) instead of passing in milliseconds.
func TestTLSInterceptRateHTTP1(t *testing.T) {
	s := newTLSSetup(t)
	p := startProxyd(t, "--config", writeConfig(t, s.config("limits:\n  rate: 2\n  burst: 1\n")))
	c, _ := s.client(t, p, false)
	start := time.Now()
	for i := range 10 {
		resp, body := get(t, c, fmt.Sprintf("%s/r%d", s.up.URL, i))
		if resp.StatusCode != 200 || body != fmt.Sprintf("hello /r%d", i) || resp.ProtoMajor != 1 {
			t.Fatalf("request %d: %s %q", i, resp.Status, body)
		}
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Fatalf("10 requests through one intercepted tunnel at rate 2 took %v, want ≥ 4 s (4.5 s)", d)
	}
	waitTunnelLines(t, p, 10)
	if n := countConnects(p); n != 1 {
		t.Errorf("%d CONNECTs for 10 keep-alive requests, want 1", n)
	}
}

// waitTunnelLines waits until n access-log lines of requests read from
// intercepted tunnels are written (the log is buffered).
func waitTunnelLines(t *testing.T, p *proc, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d access-log lines of tunnelled requests", n), func() (bool, any) {
		return strings.Count(p.log.String(), `"tunnel":`) >= n, p.log.String()
	})
}

// countConnects counts the intercepted tunnels the access log's request
// lines name (a CONNECT's own line is written when its tunnel closes).
func countConnects(p *proc) int {
	tunnels := map[any]bool{}
	for _, line := range strings.Split(p.log.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request" && m["tunnel"] != nil {
			tunnels[m["tunnel"]] = true
		}
	}
	return len(tunnels)
}

// HTTP/2: ten requests queued at once in one tunnel with different
// Priority headers reach the upstream most urgent first, at the rate.
func TestTLSInterceptPriorityHTTP2(t *testing.T) {
	s := newTLSSetup(t)
	p := startProxyd(t, "--config", writeConfig(t, s.config("limits:\n  rate: 2\n  burst: 1\n")))
	c, _ := s.client(t, p, true)
	resp, _ := get(t, c, s.up.URL+"/warm") // opens the tunnel; takes the token
	if resp.ProtoMajor != 2 {
		t.Fatalf("client↔proxyd %s, want HTTP/2", resp.Proto)
	}
	// Hold the queue while all ten are queued, then let them go at rate 2.
	patch(t, p, `{"rate":0.001}`)
	urgencies := []int{5, 2, 7, 0, 3, 6, 1, 4, 2, 5}
	var wg sync.WaitGroup
	errs := make(chan error, len(urgencies))
	for i, u := range urgencies {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/q%d", s.up.URL, i), nil)
			req.Header.Set("Priority", fmt.Sprintf("u=%d", u))
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("q%d: %s", i, resp.Status)
			}
		})
	}
	waitDepth(t, p, len(urgencies))
	start := time.Now()
	patch(t, p, `{"rate":2,"burst":1}`)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("10 queued requests at rate 2 took %v, want ≥ 4 s", d)
	}
	var got []int
	for _, a := range s.arrivals() {
		if _, pr, ok := strings.Cut(a, " u="); ok && strings.HasPrefix(a, "/q") {
			n, _ := strconv.Atoi(pr)
			got = append(got, n)
		}
	}
	want := slices.Sorted(slices.Values(urgencies))
	if !slices.Equal(got, want) {
		t.Errorf("upstream got urgencies %v, want most urgent first %v", got, want)
	}
	waitTunnelLines(t, p, 11)
	if n := countConnects(p); n != 1 {
		t.Errorf("%d intercepted CONNECTs, want 1", n)
	}
}

func patch(t *testing.T, p *proc, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, "http://"+p.admin+"/api/v1/limits", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH %s: %s", body, resp.Status)
	}
}

// curl and Python requests, as users run them: HTTPS_PROXY and the CA
// file; two requests each through one tunnel, both counted.
func TestTLSInterceptCurlAndPython(t *testing.T) {
	s := newTLSSetup(t)
	p := startProxyd(t, "--config", writeConfig(t, s.config("")))
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "HTTPS_PROXY=http://" + p.proxy, "https_proxy=http://" + p.proxy}
	t.Run("curl", func(t *testing.T) {
		bin, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl not installed")
		}
		cmd := exec.Command(bin, "-q", "-sS", "--max-time", "10", "--cacert", s.caCert, s.up.URL+"/c1", "--next", "--cacert", s.caCert, s.up.URL+"/c2")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "hello /c1hello /c2" {
			t.Fatalf("curl: %v %q", err, out)
		}
		waitTunnelLines(t, p, 2)
		if n := countConnects(p); n != 1 {
			t.Errorf("curl: %d intercepted CONNECTs for 2 requests, want 1", n)
		}
	})
	t.Run("python-requests", func(t *testing.T) {
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Skipf("python3 not found (Debian: python3-requests; .ci/run installs it): %v", err)
		}
		if out, err := exec.Command(py, "-c", "import requests").CombinedOutput(); err != nil {
			t.Skipf("python3 module requests not found (Debian: python3-requests; .ci/run installs it): %v: %s", err, out)
		}
		script := `import requests, sys
s = requests.Session()
for path in ("/p1", "/p2"):
    r = s.get(sys.argv[1] + path, verify=sys.argv[2], timeout=10)
    sys.stdout.write(str(r.status_code) + " " + r.text + ";")
`
		cmd := exec.Command(py, "-c", script, s.up.URL, s.caCert)
		cmd.Env = append(env, "REQUESTS_CA_BUNDLE="+s.caCert)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "200 hello /p1;200 hello /p2;" {
			t.Fatalf("python requests: %v %q", err, out)
		}
	})
	// Each request was scheduled on its own: its access-log line names its
	// tunnel.
	waitTunnelLines(t, p, 4) // one per request, each tied to its tunnel
}

// Failure paths: an upstream certificate proxyd does not trust is 502
// tls_certificate_error; a client that does not trust proxyd's CA fails its
// handshake, which is logged and counted; a host not intercepted is still
// spliced (the client sees the upstream's own certificate).
func TestTLSInterceptFailures(t *testing.T) {
	s := newTLSSetup(t)
	cfg := fmt.Sprintf("tls:\n  intercept: [127.0.0.1]\n  ca_cert: %s\n  ca_key: %s\n", s.caCert, s.caKey) // no upstream_ca
	p := startProxyd(t, "--config", writeConfig(t, cfg))

	c, _ := s.client(t, p, false)
	resp, body := get(t, c, s.up.URL+"/bad")
	// What the user reads: the reason phrase and the body say why, and
	// which setting helps (docs/operations.md, "Proxy-Status errors").
	const why = "tls_certificate_error: x509: certificate signed by unknown authority (a private CA? see tls.upstream_ca)"
	if resp.StatusCode != 502 || resp.Header.Get("Proxy-Status") != `proxyd; error=tls_certificate_error; details="x509: certificate signed by unknown authority"` ||
		resp.Status != "502 "+why || body != "502 "+why+"\n" {
		t.Fatalf("untrusted upstream: %s %q %q", resp.Status, resp.Header.Get("Proxy-Status"), body)
	}

	// A client trusting only the upstream's certificate: proxyd's leaf
	// fails its verification.
	untrusting := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: p.proxy}),
		TLSClientConfig: &tls.Config{RootCAs: poolOf(s.up.Certificate())},
	}
	defer untrusting.CloseIdleConnections()
	if _, err := (&http.Client{Transport: untrusting}).Get(s.up.URL + "/never"); err == nil {
		t.Fatal("a client that does not trust proxyd's CA got through")
	}
	line := p.log.waitLine(t, "tls_handshake_failed")
	if line["host"] != strings.TrimPrefix(s.up.URL, "https://") {
		t.Errorf("tls_handshake_failed line: %v", line)
	}
	waitFor(t, 5*time.Second, "the handshake failure counted", func() (bool, any) {
		f := scrape(t, p)["proxyd_tls_handshake_failures_total"]
		return f != nil && f.GetMetric()[0].GetCounter().GetValue() == 1, f
	})
	if f := scrape(t, p)["proxyd_tls_certificates_issued_total"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("proxyd_tls_certificates_issued_total: %v, want 1 (one leaf for 127.0.0.1)", f)
	}

	// localhost is not intercepted: spliced to the upstream, whose
	// certificate (for 127.0.0.1 and example.com) the client checks itself.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.up.URL, "https://"))
	spliced := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: p.proxy}),
		TLSClientConfig: &tls.Config{RootCAs: poolOf(s.up.Certificate()), ServerName: "example.com"},
	}
	defer spliced.CloseIdleConnections()
	resp, body = get(t, &http.Client{Transport: spliced}, "https://localhost:"+port+"/spliced")
	if resp.StatusCode != 200 || body != "hello /spliced" {
		t.Fatalf("spliced tunnel: %s %q", resp.Status, body)
	}
	if resp.TLS == nil || !resp.TLS.PeerCertificates[0].Equal(s.up.Certificate()) {
		t.Errorf("the spliced tunnel did not show the upstream's own certificate")
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// Start-up and check-config name the key of a bad tls section.
func TestTLSConfigErrors(t *testing.T) {
	s := newTLSSetup(t)
	for _, tc := range []struct{ yaml, want string }{
		{"tls:\n  intercept: [api.example.com]\n", "tls.ca_cert: is required when tls.intercept is not empty"},
		{fmt.Sprintf("tls:\n  intercept: [api.example.com]\n  ca_cert: %s/missing.pem\n  ca_key: %s\n", s.dir, s.caKey), "tls.ca_cert: "},
		{fmt.Sprintf("tls:\n  intercept: [api.example.com]\n  ca_cert: %s\n  ca_key: %s\n", s.caCert, s.upstreamCA), "tls.ca_key: "},
		{fmt.Sprintf("tls:\n  upstream_ca: %s\n", s.caKey), "tls.upstream_ca: " + s.caKey + ": no PEM certificate in it"},
		{"tls:\n  intercept: ['*.bad*']\n", "tls.intercept[0]: "},
	} {
		var out, errOut bytes.Buffer
		code := run([]string{"check-config", "--config", writeConfig(t, tc.yaml)}, nil, &out, &errOut, make(chan os.Signal))
		if code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("check-config %q: exit %d, %q; want 2 naming %q", tc.yaml, code, errOut.String(), tc.want)
		}
		if strings.Contains(errOut.String(), "PRIVATE KEY") {
			t.Errorf("an error shows key material: %s", errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"check-config", "--config", writeConfig(t, s.config(""))}, nil, &out, &errOut, make(chan os.Signal)); code != 0 {
		t.Errorf("a valid tls section: exit %d %s", code, errOut.String())
	}
}

// tls.intercept is reloadable: a host spliced before a reload is
// intercepted after it (new tunnels; open ones keep what they were).
func TestTLSInterceptReload(t *testing.T) {
	s := newTLSSetup(t)
	cfg := writeConfig(t, fmt.Sprintf("tls:\n  ca_cert: %s\n  ca_key: %s\n  upstream_ca: %s\n", s.caCert, s.caKey, s.upstreamCA))
	p := startProxyd(t, "--config", cfg)
	caPEM, err := os.ReadFile(s.caCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := poolOf(s.up.Certificate())
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: p.proxy}),
		TLSClientConfig: &tls.Config{RootCAs: pool},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	issuer := func(path string) string {
		t.Helper()
		resp, body := get(t, c, s.up.URL+path)
		if resp.StatusCode != 200 || body != "hello "+path {
			t.Fatalf("%s: %s %q", path, resp.Status, body)
		}
		return resp.TLS.PeerCertificates[0].Issuer.CommonName
	}
	upstreamIssuer := s.up.Certificate().Issuer.CommonName
	if got := issuer("/before"); got != upstreamIssuer {
		t.Fatalf("before the reload the tunnel showed a certificate issued by %q, want the upstream's own (%q)", got, upstreamIssuer)
	}
	writeFile(t, cfg, s.config(""))
	p.sig <- syscall.SIGHUP
	waitFor(t, 10*time.Second, "interception after the reload", func() (bool, any) {
		tr.CloseIdleConnections() // a new tunnel
		got := issuer("/after")
		return strings.HasPrefix(got, "proxyd interception CA"), got
	})
}
