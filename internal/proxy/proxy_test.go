package proxy_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/testnet"
	"github.com/proxyd/proxyd/internal/upstream"
)

// echoHandler answers with what it received: status from ?status=, a few
// headers of its own, and "METHOD REQUEST-URI body=BODY".
func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if s := r.URL.Query().Get("status"); s != "" {
		status, _ = strconv.Atoi(s)
	}
	h := w.Header()
	h.Set("Content-Type", "text/x-echo")
	h.Add("X-Multi", "a")
	h.Add("X-Multi", "b")
	h.Set("Set-Cookie", "k=v")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s %s body=%s", r.Method, r.RequestURI, b)
}

func TestForwarding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(echoHandler)
	tests := []struct {
		name, method, uri, body string
		status                  int
	}{
		{"get", "GET", "/a/b?x=1&y=two+words", "", 200},
		{"escaped path and query kept as sent", "GET", "/p%20q/a%2Fb?c=%2F&d=%C3%A9", "", 200},
		{"post", "POST", "/submit?status=201", "name=proxyd&n=1", 201},
		{"put", "PUT", "/doc/1", strings.Repeat("x", 100_000), 200},
		{"patch", "PATCH", "/doc/1", `{"a":1}`, 200},
		{"delete", "DELETE", "/doc/1?status=204", "", 204},
		{"upstream error status passes", "GET", "/missing?status=404", "", 404},
		{"head", "HEAD", "/h", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := e.req(tt.method, o.URL+tt.uri, body, "X-Custom", "passes")
			res := e.do(r)
			wantStatus(t, res, tt.status)
			h := res.resp.Header

			up := o.seen()[len(o.seen())-1]
			if up.Method != tt.method {
				t.Errorf("upstream method %q, want %q", up.Method, tt.method)
			}
			u, _ := url.Parse(tt.uri)
			if up.Path != u.Path || up.RawQuery != u.RawQuery {
				t.Errorf("upstream path %q query %q, want %q %q", up.Path, up.RawQuery, u.Path, u.RawQuery)
			}
			if got := up.Header.Get("Via"); got != "1.1 proxyd" {
				t.Errorf("upstream saw Via %q, want %q", got, "1.1 proxyd")
			}
			if got := up.Header.Get("X-Custom"); got != "passes" {
				t.Errorf("upstream saw X-Custom %q, want passes", got)
			}
			if up.Host != o.Listener.Addr().String() {
				t.Errorf("upstream saw Host %q, want %q", up.Host, o.Listener.Addr())
			}

			want := ""
			if tt.method != "HEAD" && tt.status != 204 {
				// RequestURI proves the path and query reached the upstream
				// byte for byte (%2F not decoded).
				want = tt.method + " " + tt.uri + " body=" + tt.body
			}
			if res.body != want {
				t.Errorf("body %.80q, want %.80q", res.body, want)
			}
			if got := h.Get("Content-Type"); tt.status != 204 && got != "text/x-echo" {
				t.Errorf("Content-Type %q, want text/x-echo", got)
			}
			if got := h.Values("X-Multi"); strings.Join(got, ",") != "a,b" {
				t.Errorf("X-Multi %q, want [a b]", got)
			}
			if got := h.Get("Set-Cookie"); got != "k=v" {
				t.Errorf("Set-Cookie %q, want k=v", got)
			}
			if got := h.Values("Via"); len(got) != 1 || got[0] != "1.1 proxyd" {
				t.Errorf("response Via %q, want [1.1 proxyd]", got)
			}
			if got := h.Values("Server-Timing"); len(got) != 1 || !serverTiming.MatchString(got[0]) {
				t.Errorf("Server-Timing %q, want one %v", got, serverTiming)
			}
			if got := h.Get("X-Request-Id"); got != idOf(r) {
				t.Errorf("X-Request-Id %q, want %q", got, idOf(r))
			}
			if h.Get("Proxy-Status") != "" {
				t.Errorf("Proxy-Status %q on a forwarded response", h.Get("Proxy-Status"))
			}

			rec := e.wantRecord(idOf(r), outcome.Forwarded, tt.status)
			if rec.Method != tt.method || rec.Host != o.Listener.Addr().String() || rec.Priority != 3 {
				t.Errorf("Record method %q host %q priority %d, want %q %q 3", rec.Method, rec.Host, rec.Priority, tt.method, o.Listener.Addr())
			}
			if rec.Bytes != int64(len(want)) {
				t.Errorf("Record bytes %d, want %d", rec.Bytes, len(want))
			}
			if rec.Err != nil || rec.QueueWait < 0 || rec.Upstream <= 0 || rec.Duration < rec.Upstream {
				t.Errorf("Record err %v queue_wait %v upstream %v duration %v", rec.Err, rec.QueueWait, rec.Upstream, rec.Duration)
			}
		})
	}
}

// A request body streams: the upstream has the first part before the
// client has written the rest.
func TestRequestBodyStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := make(chan string, 1)
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, len("hello "))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		first <- string(buf)
		rest, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "got %s%s (length %d)", buf, rest, r.ContentLength)
	})
	pr, pw := io.Pipe()
	defer pw.Close()
	r := e.req(http.MethodPost, o.URL+"/upload", pr)
	done := e.goDo(r)
	if _, err := io.WriteString(pw, "hello "); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, first, "the first part of the body at the upstream"); got != "hello " {
		t.Fatalf("upstream read %q first", got)
	}
	io.WriteString(pw, "world")
	pw.Close()
	res := recv(t, done, "the response")
	wantStatus(t, res, 200)
	if res.body != "got hello world (length -1)" {
		t.Errorf("body %q", res.body)
	}
	e.wantRecord(idOf(r), outcome.Forwarded, 200)
}

// Hop-by-hop fields and proxyd's own headers (docs/clients.md, "What proxyd
// changes on the way") never reach the upstream; end-to-end ones, the
// standard Priority header included, do.
func TestHopByHopRequestHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(nil)
	host := o.Listener.Addr().String()
	res := e.raw("GET http://" + host + "/hop?x=1 HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Connection: keep-alive, X-Conn-Named\r\n" +
		"X-Conn-Named: secret\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n" +
		"TE: trailers\r\n" +
		"Trailer: X-Trail\r\n" +
		"Upgrade: websocket\r\n" +
		"X-Priority: 2\r\n" +
		"X-Proxy-Timeout: 5s\r\n" +
		"Priority: u=1, i\r\n" +
		"X-Keep: kept\r\n" +
		"X-Request-Id: hop-req\r\n" +
		"\r\n")
	wantStatus(t, res, 200)
	got := o.got("/hop").Header
	for _, k := range []string{"Connection", "X-Conn-Named", "Proxy-Connection", "Keep-Alive",
		"Proxy-Authorization", "Te", "Trailer", "Upgrade", "X-Priority", "X-Proxy-Timeout"} {
		if v, ok := got[k]; ok {
			t.Errorf("upstream got %s: %q, want it removed", k, v)
		}
	}
	for k, want := range map[string]string{"X-Keep": "kept", "Priority": "u=1, i", "Via": "1.1 proxyd", "X-Request-Id": "hop-req"} {
		if v := got.Values(k); len(v) != 1 || v[0] != want {
			t.Errorf("upstream got %s: %q, want [%q]", k, v, want)
		}
	}
	if rec := e.wantRecord("hop-req", outcome.Forwarded, 200); rec.Priority != 2 {
		t.Errorf("Record priority %d, want 2 (X-Priority)", rec.Priority)
	}
}

// Hop-by-hop fields of the upstream's response are removed too, and Via
// gets proxyd appended after the upstream's own entry.
func TestHopByHopResponseHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A raw upstream, so that exactly these bytes are sent.
	up := e.rawUpstream("HTTP/1.1 200 OK\r\n" +
		"Content-Length: 2\r\n" +
		"Connection: X-Resp-Named\r\n" +
		"X-Resp-Named: v\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"Proxy-Authenticate: Basic realm=\"x\"\r\n" +
		"Proxy-Authorization: Basic eA==\r\n" +
		"TE: trailers\r\n" +
		"Trailer: X-Trail\r\n" +
		"Upgrade: foo\r\n" +
		"Via: 1.1 origin\r\n" +
		"X-Keep: yes\r\n" +
		"\r\nok")
	res := e.raw("GET http://" + up + "/x HTTP/1.1\r\nHost: " + up + "\r\nX-Request-Id: hop-resp\r\n\r\n")
	wantStatus(t, res, 200)
	h := res.resp.Header
	for _, k := range []string{"Connection", "X-Resp-Named", "Keep-Alive", "Proxy-Connection",
		"Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"} {
		if v, ok := h[k]; ok {
			t.Errorf("response has %s: %q, want it removed", k, v)
		}
	}
	if got := h.Get("X-Keep"); got != "yes" {
		t.Errorf("X-Keep %q, want yes", got)
	}
	if got := h.Values("Via"); len(got) != 1 || got[0] != "1.1 origin, 1.1 proxyd" {
		t.Errorf("Via %q, want [1.1 origin, 1.1 proxyd]", got)
	}
	if res.body != "ok" {
		t.Errorf("body %q", res.body)
	}
	e.wantRecord("hop-resp", outcome.Forwarded, 200)
}

// A response the upstream flushes in pieces reaches the client piece by
// piece: the upstream does not write its second piece until the client
// has read the first.
func TestResponseStreams(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, contentType string
		length            bool // the upstream sends Content-Length
	}{
		{"unknown length", "text/plain", false},
		// A known length is flushed only because it is an event stream.
		{"event stream", "text/event-stream", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			next := make(chan struct{})
			const one, two = "data: one\n\n", "data: two\n\n"
			o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				if tt.length {
					w.Header().Set("Content-Length", strconv.Itoa(len(one+two)))
				}
				io.WriteString(w, one)
				http.NewResponseController(w).Flush()
				if e.block(r, next) {
					io.WriteString(w, two)
				}
			})
			r := e.req(http.MethodGet, o.URL+"/events", nil)
			resp := headersOf(t, e, r)
			defer resp.Body.Close()
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q", got)
			}
			firstRead := make(chan string, 1)
			go func() {
				buf := make([]byte, len(one))
				n, _ := io.ReadFull(resp.Body, buf)
				firstRead <- string(buf[:n])
			}()
			if got := recv(t, firstRead, "the first piece at the client while the upstream holds back the rest (not streamed?)"); got != one {
				t.Fatalf("first piece %q, want %q", got, one)
			}
			close(next)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != two {
				t.Fatalf("rest %q, %v; want %q", rest, err, two)
			}
			resp.Body.Close()
			rec := e.wantRecord(idOf(r), outcome.Forwarded, 200)
			if rec.Bytes != int64(len(one+two)) {
				t.Errorf("Record bytes %d, want %d", rec.Bytes, len(one+two))
			}
		})
	}
}

// headersOf sends r and returns the response once its headers are in,
// while the upstream still holds back the end of the body.
func headersOf(t *testing.T, e *env, r *http.Request) *http.Response {
	t.Helper()
	type got struct {
		resp *http.Response
		err  error
	}
	ch := make(chan got, 1)
	go func() {
		resp, err := e.client.Do(r)
		ch <- got{resp, err}
	}()
	g := recv(t, ch, "the response headers while the upstream holds back the rest of the body (not streamed?)")
	if g.err != nil {
		t.Fatal(g.err)
	}
	return g.resp
}

// The concurrency slot is held until the response body is done: with
// concurrency 1, a second request waits while the first still streams.
func TestSlotHeldWhileBodyStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) { s.cfg.Limits.Concurrency = 1 })
	next := make(chan struct{})
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			io.WriteString(w, "second")
			return
		}
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		if e.block(r, next) {
			io.WriteString(w, "last\n")
		}
	})
	a := e.req(http.MethodGet, o.URL+"/stream", nil)
	resp := headersOf(t, e, a)
	defer resp.Body.Close()
	buf := make([]byte, len("first\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	// The headers and a first piece are out; the body is not done.
	b := e.req(http.MethodGet, o.URL+"/b", nil)
	bres := e.goDo(b)
	s := e.stats("the second request waiting", func(s dispatch.Stats) bool { return s.Depth == 1 })
	if s.InFlight != 1 {
		t.Errorf("in flight %d while the first body streams, want 1", s.InFlight)
	}
	notYet(t, bres, "the second response")
	o.never("/b")

	close(next)
	if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "last\n" {
		t.Fatalf("rest of the stream %q, %v", rest, err)
	}
	res := recv(t, bres, "the second response")
	wantStatus(t, res, 200)
	if res.body != "second" {
		t.Errorf("second body %q", res.body)
	}
	if rec := e.wantRecord(idOf(b), outcome.Forwarded, 200); rec.QueueWait <= 0 {
		t.Errorf("second request's queue wait %v, want > 0", rec.QueueWait)
	}
	e.wantRecord(idOf(a), outcome.Forwarded, 200)
	e.stats("nothing in flight", func(s dispatch.Stats) bool { return s.InFlight == 0 && s.Depth == 0 })
}

// An upstream that resets mid-body: the client's stream is cut too (not a
// short "complete" body), and the request is logged with the error.
func TestUpstreamCutMidBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "0123456789")
		http.NewResponseController(w).Flush()
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	})
	r := e.req(http.MethodGet, o.URL+"/cut", nil)
	res := roundTrip(e.client, r)
	if res.err == nil {
		t.Fatalf("the client got a whole response %v, want a cut stream", res)
	}
	// The status line and the first bytes may still sit in the proxy's
	// buffer when the cut comes (a known length is not flushed): then the
	// client sees the connection end before any response.
	if res.resp != nil && (res.resp.StatusCode != 200 || !strings.HasPrefix("0123456789", res.body)) {
		t.Errorf("got %v; want at most the status and the first 10 bytes, then the cut", res)
	}
	rec := e.wantRecord(idOf(r), outcome.Forwarded, 200)
	if rec.Err == nil || !errors.Is(rec.Err, upstream.ErrBodyCut) || rec.Bytes != 10 || !rec.Cut {
		t.Errorf("Record err %v bytes %d; want ErrBodyCut and 10", rec.Err, rec.Bytes)
	}
	if n := e.logs.FilterLevelExact(zapcore.WarnLevel).FilterField(zap.String("request_id", idOf(r))).Len(); n != 1 {
		t.Errorf("%d warnings logged for the cut, want 1", n)
	}
	e.stats("the slot given back", func(s dispatch.Stats) bool { return s.InFlight == 0 })
}

func TestLoopDetected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(nil)
	for i, via := range []string{
		"1.1 proxyd",
		"1.0 edge, 1.1 proxyd",
		"HTTP/1.1 proxyd:8080 (our own)",
		"1.1 PROXYD",
	} {
		r := e.req(http.MethodGet, fmt.Sprintf("%s/loop%d", o.URL, i), nil, "Via", via)
		res := e.do(r)
		wantAnswer(t, res, http.StatusLoopDetected, proxyStatus("proxy_loop_detected", ""), false)
		e.wantRecord(idOf(r), outcome.Denied, http.StatusLoopDetected)
		o.never(fmt.Sprintf("/loop%d", i))
	}

	// Another proxy's Via, or proxyd in a comment, is not a loop; proxyd is
	// appended.
	for _, via := range []string{"1.1 other", "1.1 other (proxyd)"} {
		r := e.req(http.MethodGet, o.URL+"/notloop", nil, "Via", via)
		res := e.do(r)
		wantStatus(t, res, 200)
		got := o.seen()[len(o.seen())-1].Header.Values("Via")
		if len(got) != 1 || got[0] != via+", 1.1 proxyd" {
			t.Errorf("upstream saw Via %q, want [%q]", got, via+", 1.1 proxyd")
		}
	}
}

// TestLoopBeforeHeaders: the loop check is part of target resolution, so a
// looping request is answered 508 whatever its other headers say: a bad
// priority or timeout header does not turn it into a 400.
func TestLoopBeforeHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(nil)
	for i, hdr := range [][]string{
		{"X-Priority", "banana"},
		{"X-Priority", "9"},
		{"X-Proxy-Timeout", "soon"},
	} {
		path := fmt.Sprintf("/loopbad%d", i)
		r := e.req(http.MethodGet, o.URL+path, nil, append([]string{"Via", "1.1 proxyd"}, hdr...)...)
		wantAnswer(t, e.do(r), http.StatusLoopDetected, proxyStatus("proxy_loop_detected", ""), false)
		e.wantRecord(idOf(r), outcome.Denied, http.StatusLoopDetected)
		o.never(path)
	}
	u, _ := url.Parse(o.URL)
	res := e.raw("CONNECT " + u.Host + " HTTP/1.1\r\nHost: " + u.Host + "\r\nVia: 1.1 proxyd\r\nX-Priority: banana\r\nX-Request-Id: loopconnect\r\n\r\n")
	wantStatus(t, res, http.StatusLoopDetected)
	e.wantRecord("loopconnect", outcome.Denied, http.StatusLoopDetected)
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	t.Run("connection refused", func(t *testing.T) {
		addr := testnet.FreeAddr(t)
		r := e.req(http.MethodGet, "http://"+addr+"/x", nil)
		wantAnswer(t, e.do(r), 502, proxyStatus("connection_refused", "dial tcp "+addr+": connect: connection refused"), false)
		if rec := e.wantRecord(idOf(r), outcome.Error, 502); rec.Err == nil || rec.Priority != 3 {
			t.Errorf("Record err %v priority %d, want an error and 3", rec.Err, rec.Priority)
		}
	})
	t.Run("dns failure", func(t *testing.T) {
		r := e.req(http.MethodGet, "http://nonexistent.invalid/x", nil)
		wantAnswer(t, e.do(r), 502, `proxyd; error=dns_error; details="lookup nonexistent.invalid: *`, false)
		if rec := e.wantRecord(idOf(r), outcome.Error, 502); rec.Host != "nonexistent.invalid" {
			t.Errorf("Record host %q", rec.Host)
		}
	})
	t.Run("unsupported scheme", func(t *testing.T) {
		// http.Client refuses ftp:// itself: send the request line raw.
		res := e.raw("GET ftp://127.0.0.1/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: ftp-1\r\n\r\n")
		wantAnswer(t, res, 400, proxyStatus("http_request_error", "")+"*", false)
		if !strings.Contains(res.resp.Header.Get("Proxy-Status"), "ftp") {
			t.Errorf("Proxy-Status %q does not say what is wrong", res.resp.Header.Get("Proxy-Status"))
		}
		e.wantRecord("ftp-1", outcome.Denied, 400)
	})
	t.Run("origin-form without routes", func(t *testing.T) {
		// Sent to the proxy as if it were the server.
		c := &http.Client{Transport: &http.Transport{}, Timeout: waitLimit}
		defer c.CloseIdleConnections()
		r := e.req(http.MethodGet, "http://"+e.addr+"/some/path?q=1", nil)
		res := roundTrip(c, r)
		wantAnswer(t, res, 404, proxyStatus("destination_not_found", ""), false)
		if rec := e.wantRecord(idOf(r), outcome.Denied, 404); rec.Host != e.addr {
			t.Errorf("Record host %q, want %q", rec.Host, e.addr)
		}
	})
}

// An absolute-form https:// request (not a CONNECT) is forwarded over TLS.
func TestForwardAbsoluteHTTPS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newTLSOrigin(nil)
	// The forwarder must trust the test server: a second proxy with its roots.
	e2 := newEnv(t, func(s *setup) {
		s.fwd.TLSClientConfig = o.Client().Transport.(*http.Transport).TLSClientConfig
	})
	host := o.Listener.Addr().String()
	res := e2.raw("GET https://" + host + "/secure HTTP/1.1\r\nHost: " + host + "\r\nX-Request-Id: abs-https\r\n\r\n")
	wantStatus(t, res, 200)
	if res.body != "ok /secure" || res.resp.Header.Get("Via") != "1.1 proxyd" {
		t.Errorf("body %q Via %q", res.body, res.resp.Header.Get("Via"))
	}
	if got := o.got("/secure").Header.Get("Via"); got != "1.1 proxyd" {
		t.Errorf("upstream saw Via %q", got)
	}
	e2.wantRecord("abs-https", outcome.Forwarded, 200)

	// Without the roots the TLS handshake fails: a 502, not a hang.
	res = e.raw("GET https://" + host + "/secure2 HTTP/1.1\r\nHost: " + host + "\r\nX-Request-Id: abs-https-bad\r\n\r\n")
	wantAnswer(t, res, 502, "proxyd; error=*", false)
	e.wantRecord("abs-https-bad", outcome.Error, 502)
}

// One access-log line per request, with the fixed field names
// (docs/metrics.md, "Access log").
func TestAccessLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(nil)
	host := o.Listener.Addr().String()

	ok, okID := e.get(o.URL+"/logged", "X-Priority", "1")
	wantStatus(t, ok, 200)
	loop, loopID := e.get(o.URL+"/loop", "Via", "1.1 proxyd")
	wantStatus(t, loop, 508)
	e.record(okID)
	e.record(loopID)

	check := func(id string, want map[string]any) {
		t.Helper()
		lines := e.logs.FilterMessage("request").FilterFieldKey("request_id").All()
		var mine []map[string]any
		for _, l := range lines {
			if m := l.ContextMap(); m["request_id"] == id {
				mine = append(mine, m)
			}
		}
		if len(mine) != 1 {
			t.Fatalf("%d access-log lines for %s, want 1", len(mine), id)
		}
		m := mine[0]
		for _, k := range []string{"request_id", "method", "host", "status", "priority", "queue_wait", "upstream_time", "bytes", "outcome"} {
			if _, ok := m[k]; !ok {
				t.Errorf("access log of %s has no %q field: %v", id, k, m)
			}
		}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("access log of %s: %s = %#v, want %#v", id, k, m[k], v)
			}
		}
		if _, ok := m["queue_wait"].(time.Duration); !ok {
			t.Errorf("queue_wait %#v is not a duration", m["queue_wait"])
		}
		if _, ok := m["upstream_time"].(time.Duration); !ok {
			t.Errorf("upstream_time %#v is not a duration", m["upstream_time"])
		}
	}
	check(okID, map[string]any{
		"method": "GET", "host": host, "status": int64(200), "priority": int64(1),
		"bytes": int64(len("ok /logged")), "outcome": "forwarded",
	})
	check(loopID, map[string]any{
		"method": "GET", "host": host, "status": int64(508), "outcome": "denied", "bytes": int64(0),
	})
	if n := e.logs.FilterMessage("request").Len(); n != 2 {
		t.Errorf("%d access-log lines for 2 requests", n)
	}

	// Without an X-Request-Id of its own, a request gets one, in the
	// response, the Record and the log line.
	r, err := http.NewRequest(http.MethodGet, o.URL+"/anonymous", nil)
	if err != nil {
		t.Fatal(err)
	}
	res := e.do(r)
	wantStatus(t, res, 200)
	id := res.resp.Header.Get("X-Request-Id")
	if id == "" {
		t.Fatal("no X-Request-Id on the response")
	}
	e.wantRecord(id, outcome.Forwarded, 200)
	check(id, map[string]any{"method": "GET", "host": host, "status": int64(200), "outcome": "forwarded"})
}

// curl -x against a plain HTTP upstream.
func TestCurlPlainHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(echoHandler)
	out := curl(t, "-x", "http://"+e.addr, "-D", "-",
		"-H", "X-Request-Id: curl-plain", "-H", "X-Priority: 1",
		"-d", "from curl", o.URL+"/curl?q=1")
	for _, want := range []string{"HTTP/1.1 200", "Via: 1.1 proxyd", "Server-Timing: queue;dur=", "POST /curl?q=1 body=from curl"} {
		if !strings.Contains(out, want) {
			t.Errorf("curl output lacks %q:\n%s", want, out)
		}
	}
	up := o.got("/curl")
	if up.Header.Get("Via") != "1.1 proxyd" || up.Header.Get("X-Priority") != "" || up.Method != "POST" {
		t.Errorf("upstream saw %s Via %q X-Priority %q", up.Method, up.Header.Get("Via"), up.Header.Get("X-Priority"))
	}
	if rec := e.wantRecord("curl-plain", outcome.Forwarded, 200); rec.Priority != 1 {
		t.Errorf("Record priority %d, want 1", rec.Priority)
	}
}
