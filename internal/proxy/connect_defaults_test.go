package proxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

// connectHeaderClient is a client of the proxy whose CONNECTs carry hdr
// (Go's Transport.ProxyConnectHeader) and that trusts only proxyd's CA; h2
// forces HTTP/2 inside the tunnel.
func (e *env) connectHeaderClient(h2 bool, hdr http.Header) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(e.authority.CA())
	tr := &http.Transport{
		Proxy:              http.ProxyURL(&url.URL{Scheme: "http", Host: e.addr}),
		TLSClientConfig:    &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2:  h2,
		ProxyConnectHeader: hdr,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	e.onTeardown(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 3 * waitLimit}
}

// Priority and timeout headers sent on the CONNECT are the defaults of the
// requests inside an intercepted tunnel, over HTTP/1.1 and HTTP/2; a
// request's own priority header (custom or RFC 9218) or timeout header
// wins. The urgency shows in the Record and in the dispatcher's order.
func TestInterceptConnectHeadersAreDefaults(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, intercepting("127.0.0.1"), func(s *setup) { s.cfg.Limits.Concurrency = 1 })
			var mu sync.Mutex
			var order []string // the two origins' requests, in arrival order
			logged := func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				order = append(order, r.URL.Path)
				mu.Unlock()
			}
			o := e.newTLSOrigin(logged)
			e.trustOrigin(o)
			plain := e.newOrigin(logged)
			c := e.connectHeaderClient(h2, http.Header{"X-Priority": {"1"}, "X-Proxy-Timeout": {"400ms"}})

			// Urgency: the CONNECT's, unless the request has its own.
			for _, tc := range []struct {
				name string
				hdr  []string
				want int
			}{
				{"no header of its own", nil, 1},
				{"its own X-Priority", []string{"X-Priority", "5"}, 5},
				{"its own Priority", []string{"Priority", "u=6"}, 6},
			} {
				r := e.req(http.MethodGet, o.URL+"/"+strings.ReplaceAll(tc.name, " ", "-"), nil, tc.hdr...)
				wantStatus(t, roundTrip(c, r), 200)
				if rec := e.wantRecord(idOf(r), outcome.Forwarded, 200); rec.Priority != tc.want || !rec.Intercepted {
					t.Errorf("%s: Record priority %d intercepted %v, want %d inside the tunnel", tc.name, rec.Priority, rec.Intercepted, tc.want)
				}
			}
			for _, rec := range e.recordsOf(http.MethodConnect) {
				if rec.Priority != 1 {
					t.Errorf("CONNECT Record priority %d, want 1", rec.Priority)
				}
			}

			// Order: with the one slot held, a plain request at 2 and a
			// tunnelled one with no priority header of its own (1, from
			// its CONNECT) wait; the tunnelled one goes first. Its own
			// timeout header wins: the CONNECT's 400ms would time it out.
			_, held := plain.hold("")
			second := e.goDo(e.req(http.MethodGet, plain.URL+"/u2", nil, "X-Priority", "2"))
			e.waitDepth(1)
			tunnelled := make(chan result, 1)
			tr := e.req(http.MethodGet, o.URL+"/u1", nil, "X-Proxy-Timeout", "1m")
			go func() { tunnelled <- roundTrip(c, tr) }()
			s := e.stats("both waiting", func(s dispatch.Stats) bool { return s.Depth == 2 })
			if s.ByPriority[1] != 1 || s.ByPriority[2] != 1 {
				t.Errorf("waiting by priority %v, want one at 1 and one at 2", s.ByPriority)
			}
			plain.release()
			wantStatus(t, recv(t, held, "the held request"), 200)
			wantStatus(t, recv(t, tunnelled, "the tunnelled request"), 200)
			wantStatus(t, recv(t, second, "the plain request"), 200)
			if rec := e.wantRecord(idOf(tr), outcome.Forwarded, 200); rec.Priority != 1 {
				t.Errorf("tunnelled Record priority %d, want 1", rec.Priority)
			}
			mu.Lock()
			got := strings.Join(order[len(order)-2:], " ")
			mu.Unlock()
			if got != "/u1 /u2" {
				t.Errorf("upstream order %q, want the tunnelled request (urgency 1 from its CONNECT) first", got)
			}

			// Timeout: the CONNECT's 400ms budget runs out in the queue for
			// a request with no timeout header of its own.
			again := e.newOrigin(nil)
			_, held = again.hold("")
			r := e.req(http.MethodGet, o.URL+"/budget", nil)
			res := roundTrip(c, r)
			wantStatus(t, res, 503)
			if ps := res.resp.Header.Get("Proxy-Status"); ps != proxyStatus("connection_limit_reached", "queue timeout") {
				t.Errorf("Proxy-Status %q, want the queue timeout of the CONNECT's budget", ps)
			}
			e.wantRecord(idOf(r), outcome.QueueTimeout, 503)
			again.release()
			wantStatus(t, recv(t, held, "the second held request"), 200)
			o.never("/budget")
		})
	}
}

// curl --proxy-header 'X-Priority: 1' prioritises the requests inside an
// intercepted tunnel (HTTP/1.1 and HTTP/2); -H 'X-Priority: 6', sent inside
// the tunnel, wins.
func TestInterceptCurlProxyHeader(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not found")
	}
	e := newEnv(t, intercepting("127.0.0.1"))
	o := e.newTLSOrigin(nil)
	e.trustOrigin(o)
	ca := filepath.Join(t.TempDir(), "proxyd-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.authority.CA().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		proto, id string
		extra     []string
		want      int
	}{
		{"--http1.1", "curl-h1", nil, 1},
		{"--http2", "curl-h2", nil, 1},
		{"--http1.1", "curl-own", []string{"-H", "X-Priority: 6"}, 6},
	} {
		args := []string{"-x", "http://" + e.addr, "--proxy-header", "X-Priority: 1", "--cacert", ca, tc.proto,
			"-H", "X-Request-Id: " + tc.id, "-o", "/dev/null", "-w", "%{http_code} %{http_version}"}
		args = append(append(args, tc.extra...), o.URL+"/"+tc.id)
		out := curl(t, args...)
		if !strings.HasPrefix(out, "200 ") {
			t.Fatalf("curl %s: %q, want 200", tc.proto, out)
		}
		if tc.proto == "--http2" && out != "200 2" {
			t.Logf("curl spoke %q inside the tunnel (no HTTP/2 support?)", out)
		}
		if rec := e.wantRecord(tc.id, outcome.Forwarded, 200); rec.Priority != tc.want || !rec.Intercepted {
			t.Errorf("%s: Record priority %d intercepted %v, want %d", tc.id, rec.Priority, rec.Intercepted, tc.want)
		}
	}
}

// With the queue full (queue_size 1, held full), a CONNECT to an
// intercepted host is admitted (it needs a tunnel slot only) and evicts
// nobody; the request inside gets the proper 503 with Retry-After and
// Proxy-Status details="queue full", and its reason phrase says so.
func TestInterceptConnectWhileQueueFull(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		waitingUrgency string // of the request holding the queue full
	}{
		{"as urgent as the waiting request", "3"},
		{"more urgent than the waiting request", "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, intercepting("127.0.0.1"), full(1))
			o := e.newTLSOrigin(nil)
			e.trustOrigin(o)
			plain := e.newOrigin(nil)
			_, held := plain.hold("")
			waiting := e.req(http.MethodGet, plain.URL+"/waiting", nil, "X-Priority", tc.waitingUrgency)
			wres := e.goDo(waiting)
			e.waitDepth(1)

			c := e.interceptClient(false) // CONNECT at the default urgency, 3
			// As urgent as the waiting one: refused, not queued.
			r := e.req(http.MethodGet, o.URL+"/inside", nil, "X-Priority", tc.waitingUrgency)
			res := roundTrip(c, r)
			if res.err != nil {
				t.Fatalf("the client saw a connection error, not an HTTP answer: %v", res.err)
			}
			wantAnswer(t, res, 503, proxyStatus("connection_limit_reached", "queue full"), true)
			ra := res.resp.Header.Get("Retry-After")
			if want := "503 connection_limit_reached: queue full (retry after " + ra + "s; see limits.rate, limits.queue_size)"; res.resp.Status != want {
				t.Errorf("status line %q, want %q", res.resp.Status, want)
			}
			e.wantRecord(idOf(r), outcome.Rejected, 503)
			connects := e.recordsOf(http.MethodConnect)
			if len(connects) != 0 {
				t.Errorf("CONNECT ended while its tunnel is open: %+v", connects[0])
			}
			if s := e.disp.Stats(); s.Tunnels != 1 || s.Depth != 1 {
				t.Errorf("tunnels %d depth %d, want the tunnel open and the waiting request still queued", s.Tunnels, s.Depth)
			}
			notYet(t, wres, "the waiting request (it must not be shed)")
			plain.release()
			wantStatus(t, recv(t, held, "the held response"), 200)
			wantStatus(t, recv(t, wres, "the waiting response"), 200)
			o.never("/inside")
			// With room in the queue again, the same tunnel's next request
			// is forwarded.
			wantStatus(t, roundTrip(c, e.req(http.MethodGet, o.URL+"/later", nil)), 200)
		})
	}
}
