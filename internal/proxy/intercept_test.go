package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/mitm"
	"github.com/proxyd/proxyd/internal/outcome"
)

// testAuthority is a fresh interception CA, written by mitm.InitCA as
// `proxyd ca init` does, and loaded back.
func testAuthority(t testing.TB) *mitm.Authority {
	t.Helper()
	certPath, keyPath, err := mitm.InitCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := mitm.LoadAuthority(certPath, keyPath, 100)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// intercepting makes the proxy decrypt CONNECTs to the patterns (setup
// option); the CA is e.authority.
func intercepting(patterns ...string) func(*setup) {
	return func(s *setup) {
		s.cfg.TLS.Intercept = patterns
		s.cfg.TLS.CACert, s.cfg.TLS.CAKey = "ca.pem", "ca-key.pem" // validated, never read: the Authority is given
		s.authority = testAuthority(s.t)
	}
}

// interceptClient is a client of the proxy that trusts only proxyd's CA;
// h2 forces HTTP/2 inside the tunnel.
func (e *env) interceptClient(h2 bool) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(e.authority.CA())
	tr := &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: e.addr}),
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: h2,
		GetProxyConnectHeader: func(context.Context, *url.URL, string) (http.Header, error) {
			return http.Header{"X-Request-Id": {e.nextID()}}, nil
		},
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	e.onTeardown(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 3 * waitLimit}
}

// trustOrigin makes the proxy trust o's certificate upstream (tls.upstream_ca).
func (e *env) trustOrigin(o *origin) {
	e.t.Helper()
	if err := e.fwd.SetExtraRoots([]*x509.Certificate{o.Certificate()}); err != nil {
		e.t.Fatal(err)
	}
}

// Requests inside an intercepted tunnel, HTTP/1.1 and HTTP/2, are
// forwarded one by one through the same path as plain ones: each has its
// Record (outcome, admission, Server-Timing, Via, X-Request-Id), tied to
// its CONNECT's.
func TestInterceptForwardsEachRequest(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			e := newEnv(t, intercepting("127.0.0.1"))
			o := e.newTLSOrigin(func(w http.ResponseWriter, r *http.Request) {
				_, _ = fmt.Fprintf(w, "%s %s via=%q", r.Method, r.URL.RequestURI(), r.Header.Get("Via"))
			})
			e.trustOrigin(o)
			c := e.interceptClient(h2)
			for i := range 3 {
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/item/%d?x=1", o.URL, i), nil)
				req.Header.Set("X-Request-Id", fmt.Sprintf("in-%v-%d", h2, i))
				res := roundTrip(c, req)
				wantStatus(t, res, 200)
				via := "1.1 proxyd" // RFC 9110 §7.6.3: the protocol proxyd received
				if h2 {
					via = "2 proxyd"
				}
				if want := fmt.Sprintf(`GET /item/%d?x=1 via=%q`, i, via); res.body != want {
					t.Errorf("upstream saw %q, want %q", res.body, want)
				}
				if h2 && res.resp.ProtoMajor != 2 || !h2 && res.resp.ProtoMajor != 1 {
					t.Errorf("client↔proxy protocol %s, want h2=%v", res.resp.Proto, h2)
				}
				if st := res.resp.Header.Get("Server-Timing"); !serverTiming.MatchString(st) {
					t.Errorf("Server-Timing %q", st)
				}
				if got := res.resp.Header.Get("X-Request-Id"); got != req.Header.Get("X-Request-Id") {
					t.Errorf("X-Request-Id %q", got)
				}
				r := e.wantRecord(req.Header.Get("X-Request-Id"), outcome.Forwarded, 200)
				if !r.Intercepted || r.Tunnel == "" || !r.Admitted || r.Method != http.MethodGet || r.Host != strings.TrimPrefix(o.URL, "https://") {
					t.Errorf("Record %+v: want an admitted, intercepted GET tied to its tunnel", r)
				}
			}
			if got := len(o.seen()); got != 3 {
				t.Errorf("upstream got %d requests, want 3", got)
			}
			connects := e.recordsOf(http.MethodConnect)
			if len(connects) > 1 {
				t.Errorf("%d CONNECTs for 3 keep-alive requests", len(connects))
			}
			e.stats("one open tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 1 })
		})
	}
}

// An intercepted CONNECT takes a tunnel slot and no rate token; each
// request inside takes one.
func TestInterceptTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("127.0.0.1"), func(s *setup) {
		s.cfg.Limits.Rate = 0.001 // one token per 1000 s
		s.cfg.Limits.Burst = 1
	})
	o := e.newTLSOrigin(nil)
	e.trustOrigin(o)
	c := e.interceptClient(false)
	res := roundTrip(c, e.req(http.MethodGet, o.URL+"/first", nil))
	wantStatus(t, res, 200) // the CONNECT took no token: this request had it
	second := make(chan result, 1)
	go func() { second <- roundTrip(c, e.req(http.MethodGet, o.URL+"/second", nil)) }()
	e.waitDepth(1) // waits for a token, inside the tunnel
	notYet(t, second, "the second request")
	if s := e.disp.Stats(); s.Tunnels != 1 || s.Waiting[dispatch.HTTP] != 1 {
		t.Errorf("tunnels %d, waiting HTTP %d", s.Tunnels, s.Waiting[dispatch.HTTP])
	}
	// Raising the rate lets it go: it was queued like a plain request.
	l := dispatch.LimitsOf(e.cfg.Limits)
	l.Rate = 0
	e.disp.SetLimits(l)
	wantStatus(t, recv(t, second, "the second request"), 200)
	o.got("/second")
}

// Priority resolution, hosts rules and back-pressure pauses apply inside
// a tunnel: with one concurrency slot held, queued requests of the tunnel
// go most urgent first; an upstream 429 with Retry-After pauses the
// destination for the requests behind it.
func TestInterceptPriorityAndPause(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("127.0.0.1"), func(s *setup) { s.cfg.Limits.Concurrency = 1 })
	var busy bool
	o := e.newTLSOrigin(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" && !busy {
			busy = true
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	e.trustOrigin(o)
	c := e.interceptClient(true) // one tunnel, concurrent streams
	held := make(chan result, 1)
	go func() { held <- roundTrip(c, e.req(http.MethodGet, o.URL+"/hold", nil)) }()
	<-o.held
	var chans []<-chan result
	for _, u := range []int{6, 1, 4, 0} {
		ch := make(chan result, 1)
		req := e.req(http.MethodGet, fmt.Sprintf("%s/u%d", o.URL, u), nil, "Priority", fmt.Sprintf("u=%d", u))
		go func() { ch <- roundTrip(c, req) }()
		chans = append(chans, ch)
		e.waitDepth(len(chans))
	}
	o.release()
	wantStatus(t, recv(t, held, "the held request"), 200)
	for _, ch := range chans {
		wantStatus(t, recv(t, ch, "a queued request"), 200)
	}
	var order []string
	for _, p := range o.paths() {
		if strings.HasPrefix(p, "/u") {
			order = append(order, p)
		}
	}
	if strings.Join(order, " ") != "/u0 /u1 /u4 /u6" {
		t.Errorf("upstream order %v, want most urgent first", order)
	}

	// 429 + Retry-After: 1 pauses 127.0.0.1:port; the next request waits.
	res := roundTrip(c, e.req(http.MethodGet, o.URL+"/busy", nil))
	wantStatus(t, res, http.StatusTooManyRequests)
	dest := strings.TrimPrefix(o.URL, "https://")
	s := e.stats("the destination paused", func(s dispatch.Stats) bool { return len(s.Paused) == 1 })
	if s.Paused[0].Dest != dest {
		t.Errorf("paused %q, want %q", s.Paused[0].Dest, dest)
	}
	after := make(chan result, 1)
	go func() { after <- roundTrip(c, e.req(http.MethodGet, o.URL+"/after", nil)) }()
	e.waitDepth(1)
	wantStatus(t, recv(t, after, "the request after the pause"), 200)
}

// A hosts rule matches the CONNECT's host inside the tunnel.
func TestInterceptHostsRule(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("127.0.0.1"), func(s *setup) {
		s.cfg.Hosts = []config.HostRule{{Match: "127.0.0.1", Rate: ptr(0.001), Burst: ptr(1)}}
	})
	o := e.newTLSOrigin(nil)
	e.trustOrigin(o)
	c := e.interceptClient(false)
	wantStatus(t, roundTrip(c, e.req(http.MethodGet, o.URL+"/a", nil)), 200)
	second := make(chan result, 1)
	go func() { second <- roundTrip(c, e.req(http.MethodGet, o.URL+"/b", nil)) }()
	s := e.stats("the second request held by the rule", func(s dispatch.Stats) bool { return s.Depth == 1 })
	if len(s.Hosts) != 1 || s.Hosts[0].Waiting != 1 {
		t.Errorf("hosts stats %+v", s.Hosts)
	}
	e.disp.SetHosts(nil)
	wantStatus(t, recv(t, second, "the second request"), 200)
}

// dialIntercepted opens a CONNECT to target through the proxy and
// completes a TLS handshake trusting roots, returning the TLS connection.
func (e *env) dialIntercepted(target string, roots *x509.CertPool, nextProto string) (*tls.Conn, error) {
	tc, body, err := e.dialConnect(target)
	if err != nil {
		return nil, err
	}
	if tc.resp.StatusCode != 200 {
		return nil, fmt.Errorf("CONNECT: %s %q", tc.resp.Status, body)
	}
	host, _, _ := net.SplitHostPort(target)
	c := tls.Client(tc, &tls.Config{RootCAs: roots, ServerName: host, NextProtos: []string{nextProto}})
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	return c, c.Handshake()
}

// A request for another host than the tunnel's is refused 400, as is a
// CONNECT inside the tunnel; the leaf names the CONNECT's host.
func TestInterceptHostMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("127.0.0.1"))
	o := e.newTLSOrigin(nil)
	e.trustOrigin(o)
	pool := x509.NewCertPool()
	pool.AddCert(e.authority.CA())
	target := strings.TrimPrefix(o.URL, "https://")
	for _, tc := range []struct{ request, detail string }{
		{"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n", `Host \"other.example\" is not the tunnel's host \"` + target + `\"`},
		{"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", `Host \"127.0.0.1:1\" is not the tunnel's host \"` + target + `\"`},
		{"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", "CONNECT inside an intercepted tunnel"},
	} {
		c, err := e.dialIntercepted(target, pool, "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		if leaf := c.ConnectionState().PeerCertificates[0]; len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
			t.Errorf("leaf IP SANs %v, want [127.0.0.1]", leaf.IPAddresses)
		}
		if _, err := io.WriteString(c, tc.request); err != nil {
			t.Fatal(err)
		}
		method, _, _ := strings.Cut(tc.request, " ")
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantAnswer(t, result{resp: resp, body: string(b)}, 400, proxyStatus("http_request_error", tc.detail), false)
		c.Close()
	}
	o.never("/")
}

// A CONNECT to a host that is not intercepted is spliced: the client sees
// the upstream's own certificate.
func TestInterceptOtherHostsSpliced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("api.example.com", "*.corp.example"))
	o := e.newTLSOrigin(nil)
	pool := x509.NewCertPool()
	pool.AddCert(o.Certificate())
	c, err := e.dialIntercepted(strings.TrimPrefix(o.URL, "https://"), pool, "http/1.1")
	if err != nil {
		t.Fatalf("handshake with the upstream's own certificate: %v", err)
	}
	c.Close()
	for _, r := range e.recordsOf(http.MethodConnect) {
		if r.Intercepted {
			t.Errorf("a CONNECT to 127.0.0.1 was intercepted: %+v", r)
		}
	}
}

// An upstream whose certificate does not verify is 502
// tls_certificate_error inside the tunnel.
func TestInterceptBadUpstreamCertificate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("127.0.0.1"))
	o := e.newTLSOrigin(nil) // not trusted: no trustOrigin
	c := e.interceptClient(false)
	req := e.req(http.MethodGet, o.URL+"/x", nil)
	res := roundTrip(c, req)
	wantAnswer(t, res, 502, proxyStatus("tls_certificate_error", "x509: certificate signed by unknown authority"), false)
	e.wantRecord(idOf(req), outcome.Error, 502)
	o.never("/x")
}

// A client that does not trust proxyd's CA fails its handshake: the
// CONNECT's Record says so, one log line names the host, and the tunnel
// slot is given back (goleak in TestMain checks no goroutine is left).
func TestInterceptUntrustedClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("127.0.0.1"))
	o := e.newTLSOrigin(nil)
	target := strings.TrimPrefix(o.URL, "https://")
	_, err := e.dialIntercepted(target, x509.NewCertPool(), "http/1.1")
	if err == nil {
		t.Fatal("a client that does not trust proxyd's CA completed the handshake")
	}
	waitFor(t, "the CONNECT's Record", func() bool { return len(e.recordsOf(http.MethodConnect)) == 1 })
	r := e.recordsOf(http.MethodConnect)[0]
	if !r.HandshakeFailed || !r.Intercepted || r.Status != 200 {
		t.Errorf("CONNECT Record %+v: want a failed handshake after 200", r)
	}
	logs := e.logs.FilterMessage("tls_handshake_failed").All()
	if len(logs) != 1 || logs[0].ContextMap()["host"] != target {
		t.Errorf("%d tls_handshake_failed lines (%v), want 1 naming %s", len(logs), logs, target)
	}
	e.stats("the tunnel slot given back", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
	if n := e.h.OpenTunnels(); n != 0 {
		t.Errorf("%d tunnels open", n)
	}
	o.never("/")
}

// CloseTunnels (shutdown) cuts an intercepted tunnel too.
func TestInterceptCloseTunnels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intercepting("127.0.0.1"))
	o := e.newTLSOrigin(nil)
	e.trustOrigin(o)
	c := e.interceptClient(true)
	wantStatus(t, roundTrip(c, e.req(http.MethodGet, o.URL+"/a", nil)), 200)
	e.stats("one tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 1 })
	e.h.CloseTunnels()
	e.stats("no tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
}

// wire maps the forwarder's dials (upstream.Config.DialContext) to local
// origins by port and records, for each connection opened, whether the
// first byte written was a TLS handshake record (0x16): what an
// intercepted tunnel sends upstream is TLS or nothing.
type wire struct {
	mu    sync.Mutex
	to    map[string]string // port dialed → the origin's address
	conns []*sniffConn
}

func (w *wire) route(port, addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.to[port] = addr
}

func (w *wire) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	_, port, _ := net.SplitHostPort(addr)
	w.mu.Lock()
	to, ok := w.to[port]
	w.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("test wire: no origin for %s", addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, to)
	if err != nil {
		return nil, err
	}
	sc := &sniffConn{Conn: c, dialed: addr}
	w.mu.Lock()
	w.conns = append(w.conns, sc)
	w.mu.Unlock()
	return sc, nil
}

// cleartext returns the addresses dialed whose first byte was not a TLS
// handshake record, and how many connections were opened in all.
func (w *wire) cleartext() (clear []string, opened int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.conns {
		if f := c.first.Load(); f != 0 && f != 0x16+1 {
			clear = append(clear, fmt.Sprintf("%s (first byte %q)", c.dialed, byte(f-1)))
		}
	}
	return clear, len(w.conns)
}

type sniffConn struct {
	net.Conn
	dialed string
	first  atomic.Int32 // the first byte written, plus one; 0: nothing yet
}

func (c *sniffConn) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.first.CompareAndSwap(0, int32(p[0])+1)
	}
	return c.Conn.Write(p)
}

// newOriginFor is newTLSOrigin with a certificate for name signed by the
// interception CA, which the proxy then trusts upstream.
func (e *env) newOriginFor(name string) *origin {
	e.t.Helper()
	leaf, err := e.authority.Certificate(name)
	if err != nil {
		e.t.Fatal(err)
	}
	o := &origin{e: e, held: make(chan string, 16), gate: make(chan struct{})}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
	o.Server.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	o.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.Server.StartTLS()
	e.onTeardown(o.Server.Close)
	if err := e.fwd.SetExtraRoots([]*x509.Certificate{e.authority.CA()}); err != nil {
		e.t.Fatal(err)
	}
	return o
}

// Nothing leaves an intercepted tunnel in clear, nor for another port
// (docs/tls-interception.md): inside CONNECT api.test:8443, an
// absolute-form target with the http scheme (port 80 or the tunnel's), or
// with https and another port, and an HTTP/2 request whose :scheme is
// http, are refused 400 http_request_error; the plain origin on port 80
// gets nothing and every upstream connection opened starts with a TLS
// handshake. The tunnel's own https://api.test:8443 target, absolute or
// origin-form, is forwarded over TLS.
func TestInterceptNoCleartext(t *testing.T) {
	t.Parallel()
	w := &wire{to: map[string]string{}}
	e := newEnv(t, intercepting("api.test"), func(s *setup) { s.fwd.DialContext = w.dial })
	plain := e.newOrigin(nil) // stands for api.test:80
	tlsOrigin := e.newOriginFor("api.test")
	w.route("80", plain.Listener.Addr().String())
	w.route("8443", tlsOrigin.Listener.Addr().String())
	pool := x509.NewCertPool()
	pool.AddCert(e.authority.CA())
	const want = "https://api.test:8443"

	t.Run("HTTP/1.1", func(t *testing.T) {
		for _, tc := range []struct {
			request string
			status  int
			detail  string
		}{
			{"GET http://api.test/clear HTTP/1.1\r\nHost: api.test\r\n\r\n", 400, `target \"http://api.test\" is not ` + want},
			{"GET http://api.test:8443/clear HTTP/1.1\r\nHost: api.test:8443\r\n\r\n", 400, `target \"http://api.test:8443\" is not ` + want},
			{"GET HTTP://API.TEST:8443/clear HTTP/1.1\r\nHost: api.test:8443\r\n\r\n", 400, `target \"http://API.TEST:8443\" is not ` + want},
			{"GET http://api.test:8443/clear HTTP/1.1\r\nHost: other.example\r\n\r\n", 400, `target \"http://api.test:8443\" is not ` + want},
			{"GET https://api.test/clear HTTP/1.1\r\nHost: api.test\r\n\r\n", 400, `target \"https://api.test\" is not ` + want},
			{"GET https://api.test:80/clear HTTP/1.1\r\nHost: api.test:80\r\n\r\n", 400, `target \"https://api.test:80\" is not ` + want},
			{"GET https://api.test:8443/abs HTTP/1.1\r\nHost: api.test:8443\r\n\r\n", 200, ""},
			{"GET https://API.test.:8443/abs-dot HTTP/1.1\r\nHost: api.test:8443\r\n\r\n", 200, ""},
			{"GET /origin HTTP/1.1\r\nHost: api.test\r\n\r\n", 200, ""},
		} {
			line, _, _ := strings.Cut(tc.request, "\r\n")
			t.Run(line, func(t *testing.T) {
				c, err := e.dialIntercepted("api.test:8443", pool, "http/1.1")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(c, tc.request); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodGet})
				if err != nil {
					t.Fatalf("%q: %v", tc.request, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				c.Close()
				res := result{resp: resp, body: string(b)}
				if tc.status == 400 {
					wantAnswer(t, res, 400, proxyStatus("http_request_error", tc.detail), false)
					return
				}
				wantStatus(t, res, 200)
				path := strings.Fields(tc.request)[1]
				if i := strings.Index(path, "/abs"); i > 0 {
					path = path[i:]
				}
				if res.body != "ok "+path {
					t.Errorf("%q: body %q, want the TLS origin's answer for %s", tc.request, res.body, path)
				}
				wantHits(t, tlsOrigin, path, 1)
			})
		}
	})

	t.Run("HTTP/2", func(t *testing.T) {
		for _, tc := range []struct {
			url    string
			status int
			detail string
		}{
			{"http://api.test/clear", 400, `:scheme http in an intercepted tunnel: only ` + want},
			{"http://api.test:8443/clear", 400, `:scheme http in an intercepted tunnel: only ` + want},
			{"https://api.test:80/clear", 400, `Host \"api.test:80\" is not the tunnel's host \"api.test:8443\"`},
			{"https://api.test:8443/h2", 200, ""},
		} {
			c, err := e.dialIntercepted("api.test:8443", pool, "h2")
			if err != nil {
				t.Fatal(err)
			}
			cc, err := (&http2.Transport{}).NewClientConn(c)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			res := roundTrip(&http.Client{Transport: cc}, req)
			cc.Close()
			c.Close()
			if tc.status == 400 {
				wantAnswer(t, res, 400, proxyStatus("http_request_error", tc.detail), false)
				continue
			}
			wantStatus(t, res, 200)
			wantHits(t, tlsOrigin, "/h2", 1)
		}
	})

	if hits := plain.seen(); len(hits) != 0 {
		t.Errorf("the plain origin (api.test:80) got %d requests: %+v", len(hits), hits)
	}
	clear, opened := w.cleartext()
	if len(clear) != 0 {
		t.Errorf("cleartext sent upstream from an intercepted tunnel: %v", clear)
	}
	if opened == 0 {
		t.Error("no upstream connection opened: the allowed requests were not forwarded")
	}
	wantHits(t, tlsOrigin, "/clear", 0)
}

// wantHits checks that o got n requests for path (origin.got and
// origin.never fail the env's test, not a subtest).
func wantHits(t *testing.T, o *origin, path string, n int) {
	t.Helper()
	got := 0
	for _, p := range o.paths() {
		if p == path {
			got++
		}
	}
	if got != n {
		t.Errorf("the TLS origin got %d requests for %s, want %d (all: %v)", got, path, n, o.paths())
	}
}
