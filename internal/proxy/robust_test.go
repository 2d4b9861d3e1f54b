package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/testnet"
)

// A request keeps the policy it was read with: a reload while it waits
// (new priority and timeout header names) must not let its old headers
// through to the upstream.
func TestPolicyReloadWhileWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, full(4))
	o := e.newOrigin(nil)
	_, held := o.hold("")
	r := e.req(http.MethodGet, o.URL+"/waiting", nil, "X-Priority", "2", "X-Proxy-Timeout", "4s")
	res := e.goDo(r)
	e.waitDepth(1)

	cfg := e.cfg
	cfg.Priority.Header = "X-Urgency"
	cfg.Upstream.TimeoutHeader = "X-Budget"
	if err := e.h.SetPolicy(cfg); err != nil {
		t.Fatal(err)
	}
	o.release()
	wantStatus(t, recv(t, held, "the held response"), 200)
	wantStatus(t, recv(t, res, "the waiting response"), 200)
	up := o.got("/waiting").Header
	for _, k := range []string{"X-Priority", "X-Proxy-Timeout"} {
		if v := up.Get(k); v != "" {
			t.Errorf("upstream got %s: %q, read as proxyd's own header before the reload", k, v)
		}
	}
	if rec := e.wantRecord(idOf(r), outcome.Forwarded, 200); rec.Priority != 2 {
		t.Errorf("Record priority %d, want 2", rec.Priority)
	}
}

// panicDial is a DialContext that panics for addresses in boom.
func panicDial(boom string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == boom {
			panic("dial hook exploded")
		}
		return d.DialContext(ctx, network, addr)
	}
}

// A panic in the request's goroutine before anything was written is
// answered 502 proxy_internal_error and recorded as an error, and the
// proxy goes on serving.
func TestPanicBeforeResponse(t *testing.T) {
	t.Parallel()
	boom := testnet.FreeAddr(t)
	e := newEnv(t, func(s *setup) { s.fwd.DialContext = panicDial(boom) })
	// A bodiless GET dials in the request's goroutine (the pooled fast
	// path); net/http's transport would dial in one of its own.
	r := e.req(http.MethodGet, "http://"+boom+"/x", nil)
	wantAnswer(t, e.do(r), 502, proxyStatus("proxy_internal_error", ""), false)
	rec := e.wantRecord(idOf(r), outcome.Error, 502)
	if rec.Err == nil || !strings.Contains(rec.Err.Error(), "dial hook exploded") {
		t.Errorf("Record err %v, want the panic", rec.Err)
	}
	// A CONNECT dials in the request's goroutine too.
	tc, body := e.connect(boom, "X-Request-Id: panic-connect")
	wantAnswer(t, tc.result(body), 502, proxyStatus("proxy_internal_error", ""), false)
	e.wantRecord("panic-connect", outcome.Error, 502)
	if n := e.disp.Stats(); n.InFlight != 0 || n.Tunnels != 0 {
		t.Errorf("slots still held after the panics: %+v", n)
	}
	if e.logs.FilterMessage("panic serving a request").Len() == 0 {
		t.Errorf("no log line for the panic")
	}
	o := e.newOrigin(nil)
	res, _ := e.get(o.URL + "/after")
	wantStatus(t, res, 200)
}

// panicConn panics on a Read that returns bytes holding "boom".
type panicConn struct{ net.Conn }

func (c panicConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if strings.Contains(string(p[:n]), "boom") {
		panic("reader exploded")
	}
	return n, err
}

// A panic once the response has started cuts the client's stream and is
// recorded as an error (Cut).
func TestPanicMidResponse(t *testing.T) {
	t.Parallel()
	var d net.Dialer
	e := newEnv(t, func(s *setup) {
		s.fwd.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return panicConn{c}, nil
		}
	})
	more := make(chan struct{})
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		// Unknown length: the proxy flushes each part at once.
		_, _ = io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		if !e.block(r, more) {
			return
		}
		_, _ = io.WriteString(w, "boom")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	r := e.req(http.MethodGet, o.URL+"/cut", nil)
	resp, err := e.client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, len("first "))
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatalf("reading the first bytes: %v", err)
	}
	close(more)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("body read: %v, want the stream cut (unexpected EOF)", err)
	}
	rec := e.wantRecord(idOf(r), outcome.Error, 200)
	if !rec.Cut || rec.Err == nil {
		t.Errorf("Record cut %v err %v, want a cut with the panic", rec.Cut, rec.Err)
	}
}

// An absolute-form target with an invalid port is the client's mistake: a
// 400, refused before it is admitted.
func TestBadTargetPort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i, target := range []string{
		"http://127.0.0.1:99999/x",
		"http://127.0.0.1:0/x",
		"http://127.0.0.1:65536/x",
		"http://:80/x",
	} {
		id := "port-" + string(rune('a'+i))
		res := e.raw("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: " + id + "\r\n\r\n")
		wantAnswer(t, res, 400, proxyStatus("http_request_error", "")+"*", false)
		if rec := e.wantRecord(id, outcome.Denied, 400); rec.Admitted {
			t.Errorf("%s: admitted (took a token and a slot)", target)
		}
	}
}

// A malformed request body is the client's failure (400), not the
// upstream's (502).
func TestMalformedRequestBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	res := e.raw("POST " + o.URL + "/up HTTP/1.1\r\nHost: " + o.Listener.Addr().String() +
		"\r\nX-Request-Id: badbody\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	wantAnswer(t, res, 400, proxyStatus("http_request_error", "malformed request body"), false)
	if rec := e.wantRecord("badbody", outcome.Denied, 400); rec.Err == nil {
		t.Errorf("Record without the error")
	}

	// A client that leaves mid-body is a cancellation, as before.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "POST "+o.URL+"/up HTTP/1.1\r\nHost: "+o.Listener.Addr().String()+
		"\r\nX-Request-Id: shortbody\r\nContent-Length: 100000\r\n\r\nonly this")
	waitFor(t, "the upstream to get the request", func() bool { return len(o.paths()) == 2 })
	c.Close()
	e.wantRecord("shortbody", outcome.Canceled, outcome.StatusClientClosed)
}

// A retry that the upstream's pause would hold in the queue past
// limits.max_wait is not made: the upstream's answer is forwarded, not
// thrown away for the proxy's own queue timeout.
func TestRetryBeyondMaxWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) {
		s.cfg.Limits.MaxWait = 200 * time.Millisecond
		s.cfg.Upstream.Retry.Attempts = 1
		s.cfg.Upstream.Retry.On = []string{"503"}
	})
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "upstream busy")
	})
	r := e.req(http.MethodGet, o.URL+"/busy", nil)
	res := e.do(r)
	wantStatus(t, res, 503)
	if res.body != "upstream busy" || res.resp.Header.Get("Retry-After") != "30" {
		t.Errorf("got %v, want the upstream's own 503", res)
	}
	if rec := e.wantRecord(idOf(r), outcome.Forwarded, 503); rec.Retries != 0 {
		t.Errorf("Record retries %d, want 0", rec.Retries)
	}
	if n := len(o.paths()); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}
