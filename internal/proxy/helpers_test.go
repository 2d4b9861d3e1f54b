package proxy_test

// The harness of the end-to-end tests: a real proxy (proxy.Handler behind an
// h1.Server on 127.0.0.1:0, as in proxyd) with its own dispatcher and forwarder, real
// upstreams (httptest servers, raw TCP listeners), and clients that talk to
// it over sockets (Go's http.Client through http.ProxyURL, raw connections
// for what http.Client will not send, curl when it is installed).
//
// Nothing here sleeps to make an outcome happen: tests wait on channels
// from the upstream handlers or poll a condition (dispatcher.Stats, the
// records) until a deadline that fails the test.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/mitm"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/proxy"
	"github.com/proxyd/proxyd/internal/upstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait on a condition; reaching it fails the test.
// It is a safety net, never what makes an outcome happen: over loopback
// every awaited event comes within milliseconds unless something is broken.
const waitLimit = 5 * time.Second

// setup is what a test may change before its proxy starts.
type setup struct {
	cfg config.Config   // starts as config.Default() with limits.rate 0
	fwd upstream.Config // TLSClientConfig for https upstreams
	// watchAfter is the h1 server's WatchAfter; 0 is proxyd's default.
	watchAfter time.Duration
	// localAddrs are the host addresses the self rule knows; nil: the
	// host's real interface addresses.
	localAddrs []netip.Addr
	// ln, when set, is the proxy's listener (a test that must know the
	// proxy's address before it starts); nil: a fresh 127.0.0.1 port.
	ln net.Listener
	// authority, when set, is the CA of TLS interception (tls.intercept).
	authority *mitm.Authority
	// users, when set, are auth.htpasswd's: every request must authenticate.
	users *auth.Users
	// tracer, when set, traces requests (proxy.Deps.Tracer).
	tracer trace.TracerProvider
	// pricingMemory is proxy.Deps.PricingMemory; 0: the default.
	pricingMemory int64
	t             testing.TB
}

// allowLoopback lets a test proxy reach the loopback upstreams every test
// runs (127.0.0.1 and ::1, any port; CONNECT to any port), which the egress
// policy denies by default (docs/configuration.md, "Egress policy: `egress`"). Every test environment starts with it; the egress
// tests undo it with defaultEgress.
func allowLoopback(c *config.Config) {
	c.Egress.Allow = []string{"127.0.0.1", "::1"}
	c.Egress.ConnectPorts = []int{}
}

// defaultEgress restores the default egress policy (setup option).
func defaultEgress(s *setup) { s.cfg.Egress = config.Default().Egress }

// env is one proxy under test and everything it talks to.
type env struct {
	t         *testing.T
	cfg       config.Config
	disp      *dispatch.Dispatcher
	fwd       *upstream.Forwarder
	egress    *egress.Guard
	authority *mitm.Authority
	h         *proxy.Handler
	addr      string // the proxy's host:port
	client    *http.Client
	tr        *http.Transport
	logs      *observer.ObservedLogs
	// done is closed first at teardown, so that upstream handlers that
	// block on it return.
	done chan struct{}
	ids  atomic.Int64

	mu       sync.Mutex
	recs     []*outcome.Record
	teardown []func() // upstreams; run last-in first-out after the proxy is closed
	srvLog   bytes.Buffer
}

// newEnv starts a proxy configured by opts and stops it, its upstreams and
// its clients when the test ends.
func newEnv(t *testing.T, opts ...func(*setup)) *env {
	t.Helper()
	s := setup{cfg: config.Default(), t: t}
	// Unlimited rate: no test depends on token timing unless it asks.
	s.cfg.Limits.Rate = 0
	allowLoopback(&s.cfg)
	for _, o := range opts {
		o(&s)
	}
	if err := s.cfg.Validate(); err != nil {
		t.Fatalf("test configuration is invalid: %v", err)
	}
	dcfg, err := dispatch.ConfigOf(s.cfg) // as the app builds it
	if err != nil {
		t.Fatal(err)
	}
	disp := dispatch.New(dcfg, dispatch.Deps{})
	pol, err := egress.New(s.cfg.Egress)
	if err != nil {
		t.Fatal(err)
	}
	guard := egress.NewGuard(pol)
	fc := s.fwd
	fc.DialTimeout = s.cfg.Upstream.DialTimeout
	fc.MaxIdleConnsPerHost = s.cfg.Upstream.MaxIdleConnsPerHost
	if fc.Control == nil {
		fc.Control = guard.Control
	}
	fwd := upstream.New(fc)
	fc.Control = guard.ControlTrusted
	gw := upstream.New(fc)
	core, logs := observer.New(zapcore.DebugLevel)
	if s.cfg.Fairness == config.FairnessClient {
		disp.SetFairness(true)
	}
	e := &env{t: t, cfg: s.cfg, disp: disp, fwd: fwd, egress: guard, authority: s.authority, logs: logs, done: make(chan struct{})}
	h, err := proxy.New(s.cfg, proxy.Deps{
		Dispatcher: disp,
		Forwarder:  fwd,
		Gateway:    gw,
		Egress:     guard,
		Authority:  s.authority,
		Users:      s.users,
		Logger:     zap.New(core),
		Observe:    e.observe,
		Tracer:     s.tracer,

		PricingMemory: s.pricingMemory,
	})
	if err != nil {
		disp.Close()
		fwd.Close()
		gw.Close()
		t.Fatalf("proxy.New: %v", err)
	}
	e.h = h
	ln := s.ln
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	e.addr = ln.Addr().String()
	// As proxyd does: its own listener is never a destination.
	if err := guard.SetSelf([]net.Addr{ln.Addr()}, s.localAddrs); err != nil {
		t.Fatal(err)
	}
	srv := &h1.Server{
		Handler:           h,
		WatchAfter:        s.watchAfter,
		ReadHeaderTimeout: waitLimit,
		ErrorLog:          log.New(lockedWriter{&e.mu, &e.srvLog}, "", 0),
		WriteStallTimeout: h.ClientWriteTimeout, // as cmd/proxyd wires it
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	proxyURL := &url.URL{Scheme: "http", Host: e.addr}
	e.tr = &http.Transport{
		Proxy:              http.ProxyURL(proxyURL),
		DisableCompression: true,
		// Tag CONNECT requests too, so that their Record can be found.
		GetProxyConnectHeader: func(context.Context, *url.URL, string) (http.Header, error) {
			return http.Header{"X-Request-Id": {e.nextID()}}, nil
		},
	}
	// A safety net only: tests bound their own waits with waitLimit.
	e.client = &http.Client{Transport: e.tr, Timeout: 3 * waitLimit}

	t.Cleanup(func() {
		close(e.done)
		e.tr.CloseIdleConnections()
		srv.Close()
		<-served
		h.CloseTunnels()
		disp.Close()
		e.mu.Lock()
		td := e.teardown
		e.mu.Unlock()
		for i := len(td) - 1; i >= 0; i-- {
			td[i]()
		}
		fwd.Close()
		gw.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		// Exactly one Record per request: no id twice (a handler still
		// finishing could only add a missing one, never a false duplicate).
		seen := make(map[string]bool, len(e.recs))
		for _, r := range e.recs {
			if seen[r.ID] {
				t.Errorf("more than one Record for request %s", r.ID)
			}
			seen[r.ID] = true
		}
		if e.srvLog.Len() > 0 {
			t.Logf("proxy h1.Server log:\n%s", e.srvLog.String())
		}
	})
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *env) observe(r *outcome.Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recs = append(e.recs, r)
}

// nextID returns a fresh request id; the handler uses a client's sane
// X-Request-Id as the Record's ID.
func (e *env) nextID() string { return "t" + strconv.FormatInt(e.ids.Add(1), 10) }

// records returns the Records with this id so far.
func (e *env) records(id string) []*outcome.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*outcome.Record
	for _, r := range e.recs {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// record waits for the Record of request id and fails unless there is
// exactly one.
func (e *env) record(id string) *outcome.Record {
	e.t.Helper()
	waitFor(e.t, "the Record of "+id, func() bool { return len(e.records(id)) > 0 })
	rs := e.records(id)
	if len(rs) != 1 {
		e.t.Fatalf("%d Records for request %s, want exactly 1: %+v", len(rs), id, rs)
	}
	return rs[0]
}

// wantRecord waits for the one Record of id and checks its outcome and
// status.
func (e *env) wantRecord(id, outcome string, status int) *outcome.Record {
	e.t.Helper()
	r := e.record(id)
	if r.Outcome != outcome || r.Status != status {
		e.t.Errorf("Record %s: outcome %q status %d, want %q %d (err %v)", id, r.Outcome, r.Status, outcome, status, r.Err)
	}
	return r
}

// stats waits until cond holds for the dispatcher's state and returns it.
func (e *env) stats(what string, cond func(dispatch.Stats) bool) dispatch.Stats {
	e.t.Helper()
	var s dispatch.Stats
	waitFor(e.t, what, func() bool { s = e.disp.Stats(); return cond(s) })
	return s
}

// waitDepth waits until exactly n requests wait in the queue.
func (e *env) waitDepth(n int) {
	e.t.Helper()
	e.stats(fmt.Sprintf("queue depth %d", n), func(s dispatch.Stats) bool { return s.Depth == n })
}

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv receives from ch, failing the test after waitLimit.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		panic("unreachable")
	}
}

// notYet fails the test if ch has delivered already.
func notYet[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s happened too early: %+v", what, v)
	default:
	}
}

// ---- requests through the proxy ----

// result is a finished exchange: the response with its body read.
type result struct {
	resp *http.Response
	body string
	err  error
}

func (r result) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%s %q %q", r.resp.Status, r.resp.Header, r.body)
}

// req builds a request with a fresh X-Request-Id; hdr are name, value pairs.
func (e *env) req(method, target string, body io.Reader, hdr ...string) *http.Request {
	e.t.Helper()
	r, err := http.NewRequest(method, target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	r.Header.Set("X-Request-Id", e.nextID())
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func idOf(r *http.Request) string { return r.Header.Get("X-Request-Id") }

// roundTrip sends r through the proxy and reads the whole body.
func roundTrip(c *http.Client, r *http.Request) result {
	resp, err := c.Do(r)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{resp: resp, body: string(b), err: err}
}

// do sends r through the proxy and fails the test on a transport error.
func (e *env) do(r *http.Request) result {
	e.t.Helper()
	res := roundTrip(e.client, r)
	if res.err != nil {
		e.t.Fatalf("%s %s: %v", r.Method, r.URL, res.err)
	}
	return res
}

// goDo sends r in the background.
func (e *env) goDo(r *http.Request) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- roundTrip(e.client, r) }()
	return ch
}

// get is do(GET target).
func (e *env) get(target string, hdr ...string) (result, string) {
	e.t.Helper()
	r := e.req(http.MethodGet, target, nil, hdr...)
	return e.do(r), idOf(r)
}

// raw writes request (CRLF line ends; a final empty line is the caller's)
// on a new connection to the proxy and reads one response.
func (e *env) raw(request string) result {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, request); err != nil {
		e.t.Fatal(err)
	}
	method, _, _ := strings.Cut(request, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		e.t.Fatalf("reading the response to %q: %v", request, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{resp: resp, body: string(b), err: err}
}

// wantStatus checks a response's status.
func wantStatus(t testing.TB, res result, status int) {
	t.Helper()
	if res.err != nil {
		t.Fatalf("want status %d, got %v", status, res.err)
	}
	if res.resp.StatusCode != status {
		t.Fatalf("status %d, want %d; response %v", res.resp.StatusCode, status, res)
	}
}

// wantAnswer checks one of the proxy's own answers (docs/operations.md,
// "Proxy-Status errors"): status, Proxy-Status (exactly, or as a prefix
// when want ends with "*"), a short text body, and Retry-After in whole
// seconds >= 1 when retry (absent otherwise).
func wantAnswer(t testing.TB, res result, status int, want string, retry bool) {
	t.Helper()
	wantStatus(t, res, status)
	h := res.resp.Header
	got := h.Get("Proxy-Status")
	if p, ok := strings.CutSuffix(want, "*"); ok && !strings.HasPrefix(got, p) || !ok && got != want {
		t.Errorf("Proxy-Status %q, want %q", got, want)
	}
	if n := len(h.Values("Proxy-Status")); n != 1 {
		t.Errorf("%d Proxy-Status fields, want 1", n)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if res.body == "" || len(res.body) > 200 || !strings.Contains(res.body, strconv.Itoa(status)) {
		t.Errorf("body %q: want a short text naming the status %d", res.body, status)
	}
	ra, has := h["Retry-After"]
	switch {
	case retry && !has:
		t.Errorf("no Retry-After on a rejection")
	case retry:
		n, err := strconv.Atoi(ra[0])
		if err != nil || n < 1 || len(ra) != 1 {
			t.Errorf("Retry-After %q: want one whole number of seconds >= 1", ra)
		}
	case has:
		t.Errorf("Retry-After %q on an answer that is not a rejection", ra)
	}
	if h.Get("Server-Timing") != "" {
		t.Errorf("Server-Timing %q on the proxy's own answer: nothing was forwarded", h.Get("Server-Timing"))
	}
}

func proxyStatus(errType, details string) string {
	s := "proxyd; error=" + errType
	if details != "" {
		s += `; details="` + details + `"`
	}
	return s
}

// ---- upstreams ----

// hit is a request an upstream received.
type hit struct {
	Method, Path, RawQuery, Proto, Host string
	Header                              http.Header
}

// origin is an httptest upstream that records the requests it gets. Its
// handler blocks on "/hold…" paths until release, and otherwise runs
// handle (or answers "ok <path>").
type origin struct {
	*httptest.Server
	e      *env
	handle http.HandlerFunc
	held   chan string   // a "/hold…" request arrived (its path)
	gate   chan struct{} // closed by release
	once   sync.Once

	mu   sync.Mutex
	hits []hit
}

func (e *env) newOrigin(handle http.HandlerFunc) *origin {
	o := &origin{e: e, handle: handle, held: make(chan string, 16), gate: make(chan struct{})}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	e.onTeardown(o.Server.Close)
	return o
}

// newTLSOrigin is newOrigin over TLS (httptest's certificate: 127.0.0.1,
// ::1 and example.com).
func (e *env) newTLSOrigin(handle http.HandlerFunc) *origin {
	o := &origin{e: e, handle: handle, held: make(chan string, 16), gate: make(chan struct{})}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
	// Handshakes that fail on purpose are not worth a line on stderr.
	o.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.Server.StartTLS()
	e.onTeardown(o.Server.Close)
	return o
}

func (e *env) onTeardown(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.teardown = append(e.teardown, f)
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.hits = append(o.hits, hit{r.Method, r.URL.Path, r.URL.RawQuery, r.Proto, r.Host, r.Header.Clone()})
	o.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/hold") {
		o.held <- r.URL.Path
		if !o.e.block(r, o.gate) {
			return
		}
		_, _ = io.WriteString(w, "released "+r.URL.Path)
		return
	}
	if o.handle != nil {
		o.handle(w, r)
		return
	}
	w.Header().Set("X-Upstream", "yes")
	_, _ = io.WriteString(w, "ok "+r.URL.Path)
}

// release lets every "/hold…" request go on.
func (o *origin) release() { o.once.Do(func() { close(o.gate) }) }

// hold sends GET /hold<suffix> through the proxy and returns once the
// upstream has it: it then holds a concurrency slot until release.
func (o *origin) hold(suffix string, hdr ...string) (id string, res <-chan result) {
	o.e.t.Helper()
	r := o.e.req(http.MethodGet, o.URL+"/hold"+suffix, nil, hdr...)
	res = o.e.goDo(r)
	if p := recv(o.e.t, o.held, "the held request at the upstream"); p != "/hold"+suffix {
		o.e.t.Fatalf("upstream holds %s, want /hold%s", p, suffix)
	}
	return idOf(r), res
}

// seen returns the requests the upstream got, in order.
func (o *origin) seen() []hit {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]hit(nil), o.hits...)
}

// paths returns the paths the upstream got, in order.
func (o *origin) paths() []string {
	var ps []string
	for _, h := range o.seen() {
		ps = append(ps, h.Path)
	}
	return ps
}

// got returns the one request the upstream got for path.
func (o *origin) got(path string) hit {
	o.e.t.Helper()
	var found []hit
	for _, h := range o.seen() {
		if h.Path == path {
			found = append(found, h)
		}
	}
	if len(found) != 1 {
		o.e.t.Fatalf("upstream got %d requests for %s, want 1 (all: %v)", len(found), path, o.paths())
	}
	return found[0]
}

// never fails the test if the upstream got a request for path.
func (o *origin) never(path string) {
	o.e.t.Helper()
	for _, p := range o.paths() {
		if p == path {
			o.e.t.Errorf("upstream got %s, which must not have been forwarded", path)
		}
	}
}

// block waits for gate; false when the request or the test ended first.
func (e *env) block(r *http.Request, gate <-chan struct{}) bool {
	select {
	case <-gate:
		return true
	case <-r.Context().Done():
	case <-e.done:
	}
	return false
}

// tcpServer starts a raw TCP server on 127.0.0.1 that runs handle for
// every connection (and closes it after), stopped at teardown.
func (e *env) tcpServer(handle func(net.Conn)) string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	e.onTeardown(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// rawUpstream answers every request on its connections with response.
func (e *env) rawUpstream(response string) string {
	return e.tcpServer(func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, response); err != nil {
				return
			}
		}
	})
}

// ---- CONNECT ----

// tunnelConn is the client end of a CONNECT.
type tunnelConn struct {
	net.Conn
	br   *bufio.Reader
	resp *http.Response
}

func (c *tunnelConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// connect sends "CONNECT target" with extra header lines (each "Name: v")
// and reads the proxy's answer. A 200 leaves the tunnel open; any other
// answer has its body read into body.
func (e *env) connect(target string, hdr ...string) (tc *tunnelConn, body string) {
	e.t.Helper()
	tc, body, err := e.dialConnect(target, hdr...)
	if err != nil {
		e.t.Fatal(err)
	}
	return tc, body
}

// dialConnect is connect for any goroutine: it returns errors.
func (e *env) dialConnect(target string, hdr ...string) (*tunnelConn, string, error) {
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		return nil, "", err
	}
	e.onTeardown(func() { c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	for _, h := range hdr {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, "", err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("CONNECT %s: reading the answer: %w", target, err)
	}
	tc := &tunnelConn{Conn: c, br: br, resp: resp}
	if resp.StatusCode != http.StatusOK {
		bb, _ := io.ReadAll(resp.Body)
		c.Close()
		return tc, string(bb), nil
	}
	return tc, "", nil
}

// result returns the CONNECT answer as a result, for wantAnswer.
func (c *tunnelConn) result(body string) result { return result{resp: c.resp, body: body} }

// recordsOf returns the Records with this method.
func (e *env) recordsOf(method string) []*outcome.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*outcome.Record
	for _, r := range e.recs {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// echoServer echoes every connection until EOF, then writes "bye" and
// closes.
func (e *env) echoServer() string {
	return e.tcpServer(func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_, _ = io.WriteString(c, "bye")
	})
}

// roundTripLine writes s and reads len(s) bytes back through an echo.
func roundTripLine(t testing.TB, c *tunnelConn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write %q into the tunnel: %v", s, err)
	}
	buf := make([]byte, len(s))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read the echo of %q: %v", s, err)
	}
	if string(buf) != s {
		t.Fatalf("echo %q, want %q", buf, s)
	}
}

// ---- TLS and curl ----

// rootsOf returns a pool trusting the httptest TLS server.
func rootsOf(s *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

// writePEM writes the TLS server's certificate for curl's --cacert.
func writePEM(t testing.TB, s *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// curl runs curl with args (after -q, so no .curlrc, and with no proxy
// environment); it skips the test when curl is absent.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skipf("curl not found: %v", err)
	}
	cmd := exec.Command(bin, append([]string{"-q", "-sS", "--max-time", "10"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// serverTiming is the Server-Timing value of every forwarded response
// (docs/clients.md, "When proxyd says no").
var serverTiming = regexp.MustCompile(`^queue;dur=\d+(\.\d{1,3})?, upstream;dur=\d+(\.\d{1,3})?$`)
