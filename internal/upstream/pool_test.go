package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/testnet"
)

// Tests of RoundTrip's fast path (pool.go): bodiless plain-http requests
// over the Forwarder's own pool of HTTP/1.1 connections. The upstreams are
// real sockets on 127.0.0.1; where the test needs to control the bytes,
// a raw listener stands in for the server.

// connEvents records what an upstream saw of its connections: how many it
// accepted, and one value on closed for each that ended.
type connEvents struct {
	accepted atomic.Int32
	closed   chan struct{}
}

func newConnEvents() *connEvents { return &connEvents{closed: make(chan struct{}, 256)} }

func (e *connEvents) close() {
	select {
	case e.closed <- struct{}{}:
	default: // nobody counts that many
	}
}

// trackedUpstream is newUpstream reporting its connections: closed gets a
// value when the server sees a connection end (the client closed it, or
// the server did after "Connection: close").
func trackedUpstream(t testing.TB, h http.HandlerFunc) (*httptest.Server, *connEvents) {
	t.Helper()
	ev := newConnEvents()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			ev.accepted.Add(1)
		case http.StateClosed, http.StateHijacked:
			ev.close()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, ev
}

// rawUpstream starts a listener whose connections are each served by
// serve (n counts them from 1) and closed when it returns; closed gets a
// value then. serve reads requests with readRequest and writes whatever
// bytes the test needs. Connections still open when the test ends are
// closed, which makes serve's reads fail.
func rawUpstream(t testing.TB, serve func(n int, c net.Conn, br *bufio.Reader)) (addr string, ev *connEvents) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ev = newConnEvents()
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		done  bool
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(ev.accepted.Add(1))
			mu.Lock()
			if done {
				mu.Unlock()
				c.Close()
				continue
			}
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				serve(n, c, bufio.NewReader(c))
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				ev.close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), ev
}

// readRequest reads one request and its body.
func readRequest(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

const okReply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// replyEach answers every request of a connection with reply, for as long
// as the client keeps it open.
func replyEach(reply string) func(int, net.Conn, *bufio.Reader) {
	return func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, reply); err != nil {
				return
			}
		}
	}
}

// answerThenStall answers the first n requests of each connection with
// okReply, then reads the next request, reports it on arrived (if not
// nil) and never answers: it waits for the client to close.
func answerThenStall(n int, arrived chan<- struct{}) func(int, net.Conn, *bufio.Reader) {
	return func(_ int, c net.Conn, br *bufio.Reader) {
		for range n {
			if _, err := readRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, okReply); err != nil {
				return
			}
		}
		if _, err := readRequest(br); err != nil {
			return
		}
		if arrived != nil {
			arrived <- struct{}{}
		}
		io.Copy(io.Discard, br) // until the client closes
	}
}

// poolForwarder is newForwarder counting the connections it dials: the
// count is exact when RoundTrip returns, unlike an upstream's accepts.
func poolForwarder(t testing.TB, cfg Config) (*Forwarder, *atomic.Int32) {
	t.Helper()
	dials := new(atomic.Int32)
	next := cfg.DialContext
	if next == nil {
		next = (&net.Dialer{}).DialContext
	}
	cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return next(ctx, network, addr)
	}
	return newForwarder(t, cfg), dials
}

// request builds a bodiless request as the proxy does.
func request(t testing.TB, ctx context.Context, method, target string, h http.Header) *http.Request {
	t.Helper()
	in := httptest.NewRequest(method, "/", nil)
	for k, v := range h {
		in.Header[k] = v
	}
	return Outbound(ctx, in, mustURL(t, target), nil)
}

// roundTripPool is RoundTrip that fails the test on an error or when the
// response did not come through the pool.
func roundTripPool(t testing.TB, f *Forwarder, out *http.Request) *http.Response {
	t.Helper()
	resp, err := f.RoundTrip(out, 5*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", out.Method, out.URL, err)
	}
	if _, ok := resp.Body.(*pooledBody); !ok {
		resp.Body.Close()
		t.Fatalf("body is a %T: the fast path was not taken", resp.Body)
	}
	return resp
}

// fetch GETs target through the pool and returns the body, read to its end.
func fetch(t testing.TB, f *Forwarder, target string) string {
	t.Helper()
	resp := roundTripPool(t, f, get(t, context.Background(), target))
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return string(b)
}

// idleConns is the number of connections in f's pool, checked against
// the pool's own count.
func idleConns(t testing.TB, f *Forwarder) int {
	t.Helper()
	p := f.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	if n != p.nidle {
		t.Errorf("pool holds %d idle connections but counts %d", n, p.nidle)
	}
	return n
}

func sweepArmed(f *Forwarder) bool {
	f.pool.mu.Lock()
	defer f.pool.mu.Unlock()
	return f.pool.sweep != nil
}

// inTime runs fn on a goroutine and fails the test if it has not returned
// within d, so that a broken timeout or cancellation fails the test rather
// than hanging it. fn must not use t; a hung fn ends when the test's
// upstreams close its connections.
func inTime(t testing.TB, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	within(t, done, d, what)
}

// wantNoSentinel fails if err wraps any classification sentinel.
func wantNoSentinel(t testing.TB, err error) {
	t.Helper()
	for _, s := range sentinels {
		if errors.Is(err, s) {
			t.Errorf("%q wraps %v", err, s)
		}
	}
}

func TestFastPathPredicate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		out  func() *http.Request
		want bool
	}{
		{"GET http", func() *http.Request { return get(t, ctx, "http://a.example/") }, true},
		{"bodiless POST", func() *http.Request {
			return Outbound(ctx, httptest.NewRequest("POST", "/", nil), mustURL(t, "http://a.example/"), nil)
		}, false},
		{"bodiless POST with an idempotency key", func() *http.Request {
			in := httptest.NewRequest("POST", "/", nil)
			in.Header.Set("Idempotency-Key", "k")
			return Outbound(ctx, in, mustURL(t, "http://a.example/"), nil)
		}, true},
		{"HEAD http", func() *http.Request {
			return Outbound(ctx, httptest.NewRequest("HEAD", "/", nil), mustURL(t, "http://a.example/"), nil)
		}, true},
		{"GET https", func() *http.Request { return get(t, ctx, "https://a.example/") }, false},
		{"POST with a body", func() *http.Request {
			return Outbound(ctx, httptest.NewRequest("POST", "/", strings.NewReader("x")), mustURL(t, "http://a.example/"), nil)
		}, false},
		{"body of unknown length", func() *http.Request {
			in := httptest.NewRequest("PUT", "/", strings.NewReader("x"))
			in.ContentLength = -1
			return Outbound(ctx, in, mustURL(t, "http://a.example/"), nil)
		}, false},
		{"no host", func() *http.Request { return get(t, ctx, "http:///x") }, false},
	}
	for _, tt := range tests {
		if got := fastPath(tt.out()); got != tt.want {
			t.Errorf("%s: fastPath = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPoolReuse: sequential GETs share one connection, given back to the
// pool when the body reaches EOF; a body closed before its end takes its
// connection down with it.
func TestPoolReuse(t *testing.T) {
	up, ev := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/partial" {
			// Part of the body, then nothing until the client hangs up.
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "hello "+r.URL.Path)
	})
	f, dials := poolForwarder(t, Config{})

	for i := range 5 {
		resp := roundTripPool(t, f, get(t, context.Background(), fmt.Sprintf("%s/%d", up.URL, i)))
		if n := idleConns(t, f); n != 0 {
			t.Fatalf("%d idle connections while a body is unread", n)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != fmt.Sprintf("hello /%d", i) {
			t.Fatalf("body %q, %v", b, err)
		}
		// Back in the pool at EOF, before Close.
		if n := idleConns(t, f); n != 1 {
			t.Fatalf("after EOF: %d idle connections, want 1", n)
		}
		resp.Body.Close()
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("5 sequential GETs dialled %d connections, want 1", n)
	}

	for _, tt := range []struct {
		name string
		read int // bytes read before Close
	}{
		{"closed unread", 0},
		{"closed after a partial read", 3},
		// Nothing left buffered: only the missing EOF says the
		// connection is in the middle of a response.
		{"closed after reading all that came", len("partial")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := dials.Load()
			resp := roundTripPool(t, f, get(t, context.Background(), up.URL+"/partial"))
			if _, err := io.ReadFull(resp.Body, make([]byte, tt.read)); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if _, err := resp.Body.Read(make([]byte, 1)); err == nil || err == io.EOF {
				t.Errorf("Read after Close: %v, want an error", err)
			}
			within(t, ev.closed, 5*time.Second, "upstream seeing the abandoned connection closed")
			if n := idleConns(t, f); n != 0 {
				t.Fatalf("%d idle connections after an early Close", n)
			}
			if got := fetch(t, f, up.URL+"/next"); got != "hello /next" {
				t.Fatalf("next body %q", got)
			}
			if n := dials.Load() - before; n != 1 {
				t.Fatalf("dialled %d connections after an early Close, want 1 new", n)
			}
		})
	}
	if n := ev.accepted.Load(); n != dials.Load() {
		t.Errorf("upstream accepted %d connections, forwarder dialled %d", n, dials.Load())
	}
}

// TestPoolMaxPerHost: of N connections in use at once, at most
// MaxIdleConnsPerHost stay pooled once their bodies are read; the upstream
// sees the others closed.
func TestPoolMaxPerHost(t *testing.T) {
	const n, perHost = 5, 2
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	up, ev := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	})
	t.Cleanup(unblock) // before the upstream's Close
	f, dials := poolForwarder(t, Config{MaxIdleConnsPerHost: perHost})

	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		out := get(t, context.Background(), up.URL)
		wg.Go(func() {
			resp, err := f.RoundTrip(out, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
				errs <- fmt.Errorf("body %q, %v", b, err)
			}
		})
	}
	// All n requests at the upstream at once: n connections.
	for i := range n {
		within(t, arrived, 5*time.Second, fmt.Sprintf("request %d at the upstream", i+1))
	}
	unblock()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if d := dials.Load(); d != n {
		t.Fatalf("%d dials for %d concurrent requests", d, n)
	}
	for i := range n - perHost {
		within(t, ev.closed, 5*time.Second, fmt.Sprintf("upstream seeing extra connection %d closed", i+1))
	}
	if got := idleConns(t, f); got != perHost {
		t.Fatalf("%d idle connections, want %d", got, perHost)
	}
	// The kept ones serve the next requests.
	for range perHost {
		fetch(t, f, up.URL)
	}
	if d := dials.Load(); d != n {
		t.Fatalf("%d dials after reusing the pool, want still %d", d, n)
	}
}

// TestPoolMaxIdle: the pool-wide cap applies across hosts.
func TestPoolMaxIdle(t *testing.T) {
	a, _ := rawUpstream(t, replyEach(okReply))
	b, bev := rawUpstream(t, replyEach(okReply))
	f, _ := poolForwarder(t, Config{})
	f.pool.maxIdle = 1
	fetch(t, f, "http://"+a+"/")
	fetch(t, f, "http://"+b+"/")
	within(t, bev.closed, 5*time.Second, "upstream b seeing its connection closed")
	if n := idleConns(t, f); n != 1 {
		t.Fatalf("%d idle connections, want 1", n)
	}
}

// TestPoolNotReused: responses that end their connection, or leave it in
// an unknown state, are not pooled.
func TestPoolNotReused(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 4096) + "END" // several reads
	closeDelimited := func(version string) func(int, net.Conn, *bufio.Reader) {
		return func(_ int, c net.Conn, br *bufio.Reader) {
			if _, err := readRequest(br); err != nil {
				return
			}
			// No length, not chunked: the body ends when the connection does.
			io.WriteString(c, version+" 200 OK\r\nContent-Type: text/plain\r\n\r\n"+big)
		}
	}
	tests := []struct {
		name  string
		serve func(int, net.Conn, *bufio.Reader)
		body  string
		reuse bool
	}{
		// The upstream would go on serving the connection: only the
		// client's obeying "Connection: close" makes it dial again.
		{"Connection: close", replyEach("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"), "ok", false},
		{"HTTP/1.0 close-delimited", closeDelimited("HTTP/1.0"), big, false},
		{"HTTP/1.1 close-delimited", closeDelimited("HTTP/1.1"), big, false},
		// Bytes after the response: if the connection were pooled, the
		// next request would get them as its response.
		{"extra bytes after the response", replyEach(okReply + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"), "ok", false},
		// An unsolicited protocol switch: the connection no longer speaks
		// HTTP/1.1, whatever the upstream does next.
		{"101 Switching Protocols", replyEach("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"), "", false},
		// The contrast: HTTP/1.0 keep-alive with a length is pooled.
		{"HTTP/1.0 keep-alive", replyEach("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"), "ok", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ev := rawUpstream(t, tt.serve)
			f, dials := poolForwarder(t, Config{})
			for i := range 2 {
				if got := fetch(t, f, "http://"+addr+"/"); got != tt.body {
					t.Fatalf("request %d: body of %d bytes %.20q…, want %d bytes", i+1, len(got), got, len(tt.body))
				}
				if n, want := idleConns(t, f), map[bool]int{true: 1, false: 0}[tt.reuse]; n != want {
					t.Fatalf("request %d: %d idle connections after EOF, want %d", i+1, n, want)
				}
			}
			wantDials := map[bool]int32{true: 1, false: 2}[tt.reuse]
			if d := dials.Load(); d != wantDials {
				t.Fatalf("2 GETs dialled %d connections, want %d", d, wantDials)
			}
			if !tt.reuse {
				within(t, ev.closed, 5*time.Second, "upstream seeing the first connection end")
			}
		})
	}
}

// TestPoolStaleConnection: the upstream closes a kept-alive connection
// while it sits in the pool. A replayable request fails on it and is sent
// again on a new connection; one that is not (a bodiless POST or DELETE)
// never takes the pool: the Transport sends it on a connection of its own.
func TestPoolStaleConnection(t *testing.T) {
	type seen struct {
		conn        int
		method, key string
	}
	requests := make(chan seen, 16)
	// Each connection serves one request, advertising keep-alive, and is
	// then closed by the upstream. With "?then=hangup", it is closed only
	// once the next request has arrived on it, unanswered: the pool finds
	// an idle connection that the upstream closed before reusing it, so
	// this is how a request meets a connection that dies under it.
	addr, ev := rawUpstream(t, func(n int, c net.Conn, br *bufio.Reader) {
		req, err := readRequest(br)
		if err != nil {
			return
		}
		requests <- seen{n, req.Method, req.Header.Get("Idempotency-Key") + req.Header.Get("X-Idempotency-Key")}
		if req.Method == "HEAD" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
			return
		}
		io.WriteString(c, okReply)
		if req.URL.RawQuery == "then=hangup" {
			if req, err := readRequest(br); err == nil {
				requests <- seen{n, req.Method, ""}
			}
		}
	})
	target := "http://" + addr + "/"

	tests := []struct {
		method string
		header http.Header
		// direct sends through the pool itself (roundTripH1), as if
		// fastPath let the request in; else through RoundTrip.
		direct bool
		retry  bool
	}{
		{"GET", nil, false, true},
		{"HEAD", nil, false, true},
		{"OPTIONS", nil, false, true},
		{"POST", http.Header{"Idempotency-Key": {"k1"}}, false, true},
		{"POST", http.Header{"X-Idempotency-Key": {"k2"}}, false, true},
		// Not replayable: RoundTrip hands them to the Transport, which
		// does not know the stale connection.
		{"POST", nil, false, true},
		{"DELETE", nil, false, true},
		// Were they sent through the pool, they would not be sent twice.
		{"POST", nil, true, false},
		{"DELETE", nil, true, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v direct=%v", tt.method, tt.header, tt.direct), func(t *testing.T) {
			f, dials := poolForwarder(t, Config{})
			// A kept-alive connection, which the upstream then closes.
			first := ev.accepted.Load() + 1
			firstTarget := target
			if !tt.retry {
				firstTarget += "?then=hangup"
			}
			if got := fetch(t, f, firstTarget); got != "ok" {
				t.Fatalf("first body %q", got)
			}
			if s := within(t, requests, 5*time.Second, "first request"); s.conn != int(first) || s.method != "GET" {
				t.Fatalf("first request: %+v", s)
			}
			if tt.retry {
				within(t, ev.closed, 5*time.Second, "upstream closing the idle connection")
			}
			if n := idleConns(t, f); n != 1 {
				t.Fatalf("%d idle connections, want the stale one", n)
			}

			roundTrip := f.RoundTrip
			if tt.direct {
				roundTrip = f.roundTripH1
			}
			resp, err := roundTrip(request(t, context.Background(), tt.method, target, tt.header), 5*time.Second)
			if !tt.retry {
				if resp != nil {
					resp.Body.Close()
					t.Fatalf("%s on a stale connection was sent again: %s", tt.method, resp.Status)
				}
				wantClass(t, err, ErrUpstream)
				if !closedIdle(err) {
					t.Errorf("%q: want the closed connection as the cause", err)
				}
				if d := dials.Load(); d != 1 {
					t.Errorf("%d dials, want 1: no retry", d)
				}
				// The upstream got it once, on the connection that died.
				if s := within(t, requests, 5*time.Second, "the request"); s.conn != int(first) || s.method != tt.method {
					t.Errorf("upstream got %+v", s)
				}
				within(t, ev.closed, 5*time.Second, "upstream closing the connection")
				select {
				case s := <-requests:
					t.Errorf("upstream got %+v again", s)
				default:
				}
			} else {
				if err != nil {
					t.Fatalf("%s was not retried on a new connection: %v", tt.method, err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %s", resp.Status)
				}
				if d := dials.Load(); d != 2 {
					t.Errorf("%d dials, want 2", d)
				}
				s := within(t, requests, 5*time.Second, "the retried request")
				wantKey := tt.header.Get("Idempotency-Key") + tt.header.Get("X-Idempotency-Key")
				if s.conn != int(first)+1 || s.method != tt.method || s.key != wantKey {
					t.Errorf("retried request arrived as %+v", s)
				}
				// The upstream closes that one too; the next subtest
				// waits for its own connection's close.
				within(t, ev.closed, 5*time.Second, "upstream closing the retried connection")
			}
			if n := idleConns(t, f); n != 0 && !tt.retry {
				t.Errorf("%d idle connections after the failure", n)
			}
		})
	}
}

// TestPoolFreshConnectionNotRetried: only a reused connection failing
// looks like a stale one; a new connection that fails is an error, or an
// upstream that always hangs up would be dialled forever.
func TestPoolFreshConnectionNotRetried(t *testing.T) {
	addr, _ := rawUpstream(t, func(_ int, _ net.Conn, br *bufio.Reader) {
		readRequest(br) // and hang up
	})
	f, dials := poolForwarder(t, Config{})
	resp, err := f.RoundTrip(get(t, context.Background(), "http://"+addr+"/"), 5*time.Second)
	if resp != nil {
		resp.Body.Close()
		t.Fatal("got a response")
	}
	wantClass(t, err, ErrUpstream)
	if d := dials.Load(); d != 1 {
		t.Fatalf("%d dials, want 1", d)
	}
}

func TestPoolTimeouts(t *testing.T) {
	const headerTimeout = 100 * time.Millisecond
	blockingDial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}

	t.Run("response timeout", func(t *testing.T) {
		for _, answered := range []int{0, 1} { // new, then reused connection
			addr, ev := rawUpstream(t, answerThenStall(answered, nil))
			f, _ := poolForwarder(t, Config{})
			for range answered {
				fetch(t, f, "http://"+addr+"/")
			}
			// Should the header timeout not work, fail rather than hang.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := f.RoundTrip(get(t, ctx, "http://"+addr+"/"), headerTimeout)
			d := time.Since(start)
			wantClass(t, err, ErrResponseTimeout)
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				t.Errorf("%q: want DeadlineExceeded and not Canceled", err)
			}
			if d < headerTimeout || d > headerTimeout+2*time.Second {
				t.Errorf("timed out after %v, want %v", d, headerTimeout)
			}
			within(t, ev.closed, 5*time.Second, "upstream seeing the timed-out connection closed")
			if n := idleConns(t, f); n != 0 {
				t.Errorf("%d idle connections", n)
			}
		}
	})

	t.Run("caller deadline", func(t *testing.T) {
		addr, _ := rawUpstream(t, answerThenStall(0, nil))
		f, _ := poolForwarder(t, Config{})
		ctx, cancel := context.WithTimeout(context.Background(), headerTimeout)
		defer cancel()
		out := get(t, ctx, "http://"+addr+"/")
		var err error
		inTime(t, 5*time.Second, "RoundTrip past the caller's deadline", func() { _, err = f.RoundTrip(out, 0) })
		wantClass(t, err, ErrResponseTimeout)
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Errorf("%q: want DeadlineExceeded and not Canceled", err)
		}
	})

	t.Run("header timeout while dialling", func(t *testing.T) {
		f, _ := poolForwarder(t, Config{DialTimeout: time.Minute, DialContext: blockingDial})
		start := time.Now()
		_, err := f.RoundTrip(get(t, context.Background(), "http://upstream.test/"), headerTimeout)
		wantClass(t, err, ErrConnectTimeout)
		if errors.Is(err, context.Canceled) {
			t.Errorf("%q looks like a cancellation", err)
		}
		if d := time.Since(start); d > headerTimeout+2*time.Second {
			t.Errorf("took %v", d)
		}
	})

	t.Run("dial timeout", func(t *testing.T) {
		f, _ := poolForwarder(t, Config{DialTimeout: headerTimeout, DialContext: blockingDial})
		out := get(t, context.Background(), "http://upstream.test/")
		var err error
		inTime(t, 5*time.Second, "RoundTrip past the dial timeout", func() { _, err = f.RoundTrip(out, 0) })
		wantClass(t, err, ErrConnectTimeout)
	})

	t.Run("refused", func(t *testing.T) {
		f, _ := poolForwarder(t, Config{})
		_, err := f.RoundTrip(get(t, context.Background(), "http://"+testnet.FreeAddr(t)+"/"), time.Second)
		wantClass(t, err, ErrConnRefused)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%q does not wrap ECONNREFUSED", err)
		}
	})

	t.Run("dns", func(t *testing.T) {
		f, _ := poolForwarder(t, Config{DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "upstream.test", IsNotFound: true}}
		}})
		_, err := f.RoundTrip(get(t, context.Background(), "http://upstream.test/"), time.Second)
		wantClass(t, err, ErrDNS)
	})
}

// TestPoolResponseHeaderLimit: an upstream that never ends its header
// section is cut off after as many bytes as http.Transport allows, not
// buffered until the header timeout.
func TestPoolResponseHeaderLimit(t *testing.T) {
	for _, tt := range []struct{ name, head, unit string }{
		{"endless header line", "HTTP/1.1 200 OK\r\nX-Big: ", strings.Repeat("a", 64<<10)},
		{"endless interim responses", "", "HTTP/1.1 103 Early Hints\r\nLink: <" + strings.Repeat("a", 8<<10) + ">\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := rawUpstream(t, func(_ int, c net.Conn, br *bufio.Reader) {
				if _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(c, tt.head)
				for sent := 0; sent < 2*maxResponseHeaderBytes; sent += len(tt.unit) {
					if _, err := io.WriteString(c, tt.unit); err != nil {
						return // the client hung up
					}
				}
				io.Copy(io.Discard, br)
			})
			f, _ := poolForwarder(t, Config{})
			start := time.Now()
			const headerTimeout = 5 * time.Second
			resp, err := f.RoundTrip(get(t, context.Background(), "http://"+addr+"/"), headerTimeout)
			if resp != nil {
				resp.Body.Close()
				t.Fatalf("got a response: %s", resp.Status)
			}
			wantClass(t, err, ErrUpstream)
			if !strings.Contains(err.Error(), "exceed") {
				t.Errorf("%q does not name the limit", err)
			}
			if d := time.Since(start); d >= headerTimeout {
				t.Errorf("took %v: cut by the header timeout, not the limit", d)
			}
		})
	}
}

func TestPoolCallerCancel(t *testing.T) {
	t.Run("waiting for headers", func(t *testing.T) {
		arrived := make(chan struct{}, 1)
		addr, ev := rawUpstream(t, answerThenStall(0, arrived))
		f, _ := poolForwarder(t, Config{})
		cause := errors.New("client hung up")
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		go func() {
			<-arrived
			cancel(cause)
		}()
		out := get(t, ctx, "http://"+addr+"/")
		var (
			resp *http.Response
			err  error
		)
		inTime(t, 5*time.Second, "RoundTrip after the cancellation", func() { resp, err = f.RoundTrip(out, 0) })
		if resp != nil {
			resp.Body.Close()
			t.Fatalf("got a response: %s", resp.Status)
		}
		if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
			t.Fatalf("err = %v, want context.Canceled and the cause", err)
		}
		wantNoSentinel(t, err)
		within(t, ev.closed, 5*time.Second, "upstream seeing the connection closed")
		if n := idleConns(t, f); n != 0 {
			t.Errorf("%d idle connections", n)
		}
	})

	// A cancellation that comes before the request is written (here: one
	// that came before the call) must not be lost to the header deadline
	// being set after it.
	t.Run("canceled before the call, pooled connection", func(t *testing.T) {
		addr, _ := rawUpstream(t, answerThenStall(1, nil))
		f, _ := poolForwarder(t, Config{})
		const headerTimeout = 2 * time.Second
		for range 50 {
			fetch(t, f, "http://"+addr+"/") // a pooled connection
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			start := time.Now()
			resp, err := f.RoundTrip(get(t, ctx, "http://"+addr+"/"), headerTimeout)
			if resp != nil {
				resp.Body.Close()
				t.Fatalf("got a response: %s", resp.Status)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > headerTimeout/2 {
				t.Fatalf("the cancellation was noticed after %v: lost, and the header timeout ended the wait", d)
			}
		}
	})

	// The upstream sends part of a body and waits; the caller goes away.
	partial := func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
		io.Copy(io.Discard, br)
	}

	t.Run("while the body streams", func(t *testing.T) {
		addr, ev := rawUpstream(t, partial)
		f, _ := poolForwarder(t, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := roundTripPool(t, f, get(t, ctx, "http://"+addr+"/"))
		defer resp.Body.Close()
		buf := make([]byte, len("partial"))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "partial" {
			t.Fatalf("read %q, %v", buf, err)
		}
		cancel()
		var (
			n   int
			err error
		)
		inTime(t, 5*time.Second, "Read after the cancellation", func() { n, err = resp.Body.Read(make([]byte, 100)) })
		if n != 0 || !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel: %d, %v; want an error wrapping context.Canceled", n, err)
		}
		if _, err2 := resp.Body.Read(make([]byte, 100)); err2 == nil || err2 == io.EOF {
			t.Errorf("second Read: %v, want the error again", err2)
		}
		within(t, ev.closed, 5*time.Second, "upstream seeing the connection closed")
		if n := idleConns(t, f); n != 0 {
			t.Errorf("%d idle connections", n)
		}
	})

	t.Run("CopyResponse", func(t *testing.T) {
		addr, ev := rawUpstream(t, partial)
		f, _ := poolForwarder(t, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := roundTripPool(t, f, get(t, ctx, "http://"+addr+"/"))
		w := &cancelingWriter{discardWriter: discardWriter{h: http.Header{}}, cancel: cancel}
		var (
			n   int64
			err error
		)
		inTime(t, 5*time.Second, "CopyResponse after the cancellation", func() { n, err = CopyResponse(w, resp, nil) })
		if !errors.Is(err, ErrClientGone) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrBodyCut) {
			t.Fatalf("err %v, want ErrClientGone and context.Canceled", err)
		}
		if n != int64(len("partial")) {
			t.Errorf("copied %d bytes", n)
		}
		within(t, ev.closed, 5*time.Second, "upstream seeing the connection closed")
	})
}

// TestPoolInterimResponses: 1xx responses before the final one are read
// and dropped, and the connection stays usable.
func TestPoolInterimResponses(t *testing.T) {
	addr, _ := rawUpstream(t, replyEach(
		"HTTP/1.1 100 Continue\r\n\r\n"+
			"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 5\r\n\r\nfinal"))
	f, dials := poolForwarder(t, Config{})
	for i := range 2 {
		resp := roundTripPool(t, f, get(t, context.Background(), "http://"+addr+"/"))
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "final" {
			t.Fatalf("request %d: body %q, %v", i+1, b, err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Final") != "yes" {
			t.Errorf("request %d: %s %v", i+1, resp.Status, resp.Header)
		}
		if _, ok := resp.Header["Link"]; ok {
			t.Errorf("request %d: interim Link header in the final response", i+1)
		}
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d dials, want 1: the connection is reusable after interim responses", d)
	}
}

// TestPoolBodilessResponses: HEAD, 204, 304 and an empty 200 have no body
// to read; the connection goes back to the pool at once.
func TestPoolBodilessResponses(t *testing.T) {
	up, _ := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		default:
			w.Header().Set("Content-Length", "100") // HEAD: no body follows
		}
	})
	f, dials := poolForwarder(t, Config{})
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"HEAD", "/head", 200},
		{"GET", "/204", 204},
		{"GET", "/304", 304},
		{"GET", "/empty", 200},
		{"HEAD", "/head", 200},
	} {
		resp := roundTripPool(t, f, request(t, context.Background(), tt.method, up.URL+tt.path, nil))
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %s", tt.method, tt.path, resp.Status)
		}
		if n := idleConns(t, f); n != 1 {
			t.Errorf("%s %s: %d idle connections before the body is touched, want 1", tt.method, tt.path, n)
		}
		for range 2 {
			if n, err := resp.Body.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Errorf("%s %s: Read = %d, %v; want 0, EOF", tt.method, tt.path, n, err)
			}
		}
		resp.Body.Close()
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d dials, want 1", d)
	}
}

// TestPoolTrailers: a chunked body's trailers are in resp.Trailer once the
// body is read, and the connection is reused.
func TestPoolTrailers(t *testing.T) {
	up, _ := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "part1,")
		http.NewResponseController(w).Flush() // chunked from here on
		io.WriteString(w, "part2")
		w.Header().Set("X-Sum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	})
	f, dials := poolForwarder(t, Config{})
	for range 2 {
		resp := roundTripPool(t, f, get(t, context.Background(), up.URL))
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("not chunked: %v", resp.TransferEncoding)
		}
		if _, ok := resp.Trailer["X-Sum"]; !ok {
			t.Errorf("X-Sum not announced: %v", resp.Trailer)
		}
		if v := resp.Trailer.Get("X-Sum"); v != "" {
			t.Errorf("X-Sum = %q before the body was read", v)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != "part1,part2" {
			t.Fatalf("body %q, %v", b, err)
		}
		if v := resp.Trailer.Get("X-Sum"); v != "abc" {
			t.Errorf("trailer X-Sum = %q (%v)", v, resp.Trailer)
		}
		if v := resp.Trailer.Get("X-Late"); v != "late" {
			t.Errorf("trailer X-Late = %q (%v)", v, resp.Trailer)
		}
		if n := idleConns(t, f); n != 1 {
			t.Errorf("%d idle connections after EOF, want 1", n)
		}
		resp.Body.Close()
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d dials, want 1", d)
	}
}

// TestPoolIdleSweep: connections idle for idleTimeout are closed, each no
// sooner than idleTimeout after it went idle; the timer re-arms for those
// that were younger, and disarms when the pool is empty.
func TestPoolIdleSweep(t *testing.T) {
	const idle = 150 * time.Millisecond
	a, aev := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") })
	b, bev := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	f, _ := poolForwarder(t, Config{})
	f.pool.idleTimeout = idle

	aIdle := time.Now() // no later than the connection went idle
	fetch(t, f, a.URL)
	// b goes idle later than a, so that the sweep that closes a (most
	// likely) finds b too young and has to re-arm; if this wait overruns,
	// both close in one sweep and the bounds below still hold.
	<-time.After(idle / 2)
	bIdle := time.Now()
	fetch(t, f, b.URL)
	if n := idleConns(t, f); n != 2 || !sweepArmed(f) {
		t.Fatalf("%d idle connections, sweep armed %v", n, sweepArmed(f))
	}

	within(t, aev.closed, 5*time.Second, "a's idle connection closed")
	if d := time.Since(aIdle); d < idle {
		t.Errorf("a's connection closed after %v idle, before the %v timeout", d, idle)
	}
	within(t, bev.closed, 5*time.Second, "b's idle connection closed")
	if d := time.Since(bIdle); d < idle {
		t.Errorf("b's connection closed after %v idle, before the %v timeout", d, idle)
	}
	if n := idleConns(t, f); n != 0 {
		t.Errorf("%d idle connections after the sweep", n)
	}
	if sweepArmed(f) {
		t.Error("sweep timer still armed with an empty pool")
	}

	// The pool works on after the sweep.
	if got := fetch(t, f, a.URL); got != "a" {
		t.Fatalf("body %q", got)
	}
	if aev.accepted.Load() != 2 {
		t.Errorf("a accepted %d connections, want 2", aev.accepted.Load())
	}
}

// TestPoolForwarderClose: Close closes the idle pooled connections and
// leaves the Forwarder usable.
func TestPoolForwarderClose(t *testing.T) {
	up, ev := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	f, dials := poolForwarder(t, Config{})
	fetch(t, f, up.URL)
	if n := idleConns(t, f); n != 1 {
		t.Fatalf("%d idle connections, want 1", n)
	}
	f.Close()
	within(t, ev.closed, 5*time.Second, "upstream seeing the pooled connection closed")
	if n := idleConns(t, f); n != 0 || sweepArmed(f) {
		t.Errorf("after Close: %d idle connections, sweep armed %v", n, sweepArmed(f))
	}
	if got := fetch(t, f, up.URL); got != "ok" {
		t.Fatalf("body %q", got)
	}
	if d := dials.Load(); d != 2 {
		t.Errorf("%d dials, want 2", d)
	}
}

// TestPoolBodyGoesThroughTransport: a request with a body is not the fast
// path's: it goes through the Transport, arrives intact, and the pool
// stays empty.
func TestPoolBodyGoesThroughTransport(t *testing.T) {
	type got struct {
		body   string
		length int64
	}
	received := make(chan got, 1)
	up, _ := trackedUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received <- got{string(b), r.ContentLength}
		io.WriteString(w, "done")
	})
	f, _ := poolForwarder(t, Config{})
	const payload = "a request body"
	in := httptest.NewRequest("POST", "/", strings.NewReader(payload))
	out := Outbound(context.Background(), in, mustURL(t, up.URL), nil)
	resp, err := f.RoundTrip(out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Body.(*pooledBody); ok {
		t.Error("a request with a body took the fast path")
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "done" {
		t.Fatalf("body %q, %v", b, err)
	}
	if g := within(t, received, 5*time.Second, "the request at the upstream"); g.body != payload || g.length != int64(len(payload)) {
		t.Errorf("upstream got %q (Content-Length %d)", g.body, g.length)
	}
	f.pool.mu.Lock()
	defer f.pool.mu.Unlock()
	if len(f.pool.idle) != 0 || f.pool.nidle != 0 || f.pool.sweep != nil {
		t.Errorf("the pool was used: %d hosts, %d idle", len(f.pool.idle), f.pool.nidle)
	}
}

// BenchmarkRoundTripPaths compares, for the same bodiless GET on the wire,
// RoundTrip's fast path with its Transport path. The Transport path is
// forced with Body http.NoBody and ContentLength -1: fastPath declines an
// unknown length, while the Transport sizes a request by its Body
// (outgoingLength is 0 for NoBody) and sends the very same bodiless GET,
// which the upstream checks. Both include RoundTrip's own overhead
// (timer, context, trace for the Transport) and reading the body to its
// end.
func BenchmarkRoundTripPaths(b *testing.B) {
	up := newUpstream(b, func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 || len(r.TransferEncoding) != 0 {
			http.Error(w, "request has a body", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
	in := inbound("GET", "http://origin.example/a", nil)
	target := mustURL(b, up.URL+"/a")
	ctx := context.Background()

	paths := []struct {
		name      string
		transport bool
	}{{"pool", false}, {"transport", true}}
	one := func(f *Forwarder, transport bool) error {
		out := Outbound(ctx, in, target, nil)
		if transport {
			out.Body, out.ContentLength = http.NoBody, -1
		}
		resp, err := f.RoundTrip(out, 5*time.Second)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %s", resp.Status)
		}
		if _, pooled := resp.Body.(*pooledBody); pooled == transport {
			return fmt.Errorf("wrong path: body is a %T", resp.Body)
		}
		return nil
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			f := newForwarder(b, Config{})
			if err := one(f, p.transport); err != nil { // connect outside the loop
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := one(f, p.transport); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, p := range paths {
		b.Run(p.name+"-parallel", func(b *testing.B) {
			f := newForwarder(b, Config{})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := one(f, p.transport); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
