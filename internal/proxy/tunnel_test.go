package proxy_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/testnet"
)

// https through CONNECT with Go's client: the TLS session is end to end,
// so the proxy sees neither the request nor its headers.
func TestConnectGoClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newTLSOrigin(nil)
	e.tr.TLSClientConfig = &tls.Config{RootCAs: rootsOf(o.Server)}

	res, _ := e.get(o.URL+"/secure?q=1", "X-Priority", "0")
	wantStatus(t, res, 200)
	if res.body != "ok /secure" {
		t.Errorf("body %q", res.body)
	}
	if res.resp.TLS == nil {
		t.Errorf("not TLS")
	}
	up := o.got("/secure")
	if up.Header.Get("Via") != "" || up.Header.Get("X-Priority") != "0" || up.RawQuery != "q=1" {
		t.Errorf("upstream saw Via %q X-Priority %q query %q: the tunnel must carry the request untouched",
			up.Header.Get("Via"), up.Header.Get("X-Priority"), up.RawQuery)
	}
	// The tunnel stays open for the next request.
	res, _ = e.get(o.URL + "/again")
	wantStatus(t, res, 200)
	if s := e.disp.Stats(); s.Tunnels != 1 || s.InFlight != 0 || e.h.OpenTunnels() != 1 {
		t.Errorf("tunnels %d (handler %d), in flight %d; want 1 tunnel and no concurrency slot",
			s.Tunnels, e.h.OpenTunnels(), s.InFlight)
	}
	if rs := e.recordsOf(http.MethodConnect); len(rs) != 0 {
		t.Errorf("Record before the tunnel ended: %+v", rs[0])
	}

	// The client closes the tunnel. The transport pools the connection
	// just after the body's EOF, so close idle connections until it has.
	waitFor(t, "the tunnel's Record", func() bool {
		e.tr.CloseIdleConnections()
		return len(e.recordsOf(http.MethodConnect)) > 0
	})
	rs := e.recordsOf(http.MethodConnect)
	if len(rs) != 1 {
		t.Fatalf("%d CONNECT Records, want 1", len(rs))
	}
	rec := e.wantRecord(rs[0].ID, outcome.Forwarded, 200)
	if rec.Host != o.Listener.Addr().String() || rec.Priority != 3 || rec.Bytes <= 0 || rec.BytesIn <= 0 {
		t.Errorf("Record host %q priority %d bytes %d in %d", rec.Host, rec.Priority, rec.Bytes, rec.BytesIn)
	}
	e.stats("the tunnel slot given back", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
	if n := e.h.OpenTunnels(); n != 0 {
		t.Errorf("%d open tunnels", n)
	}
	lines := e.logs.FilterMessage("request").FilterField(zap.String("request_id", rec.ID)).All()
	if len(lines) != 1 {
		t.Fatalf("%d access-log lines for the tunnel", len(lines))
	}
	if m := lines[0].ContextMap(); m["method"] != "CONNECT" || m["bytes_in"] != rec.BytesIn || m["host"] != rec.Host {
		t.Errorf("tunnel access log %v", m)
	}
}

// https through CONNECT with curl --cacert.
func TestConnectCurl(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newTLSOrigin(nil)
	out := curl(t, "-x", "http://"+e.addr, "--cacert", writePEM(t, o.Server),
		"--proxy-header", "X-Request-Id: curl-tunnel", "--proxy-header", "X-Priority: 2",
		o.URL+"/curl-secure")
	if out != "ok /curl-secure" {
		t.Errorf("curl output %q", out)
	}
	if rec := e.wantRecord("curl-tunnel", outcome.Forwarded, 200); rec.Priority != 2 || rec.Bytes <= 0 {
		t.Errorf("Record priority %d bytes %d", rec.Priority, rec.Bytes)
	}
	e.stats("the tunnel slot given back", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
}

func TestConnectRefusedRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	echo := e.echoServer()
	closed := testnet.FreeAddr(t)
	tests := []struct {
		name, target string
		hdr          []string
		status       int
		proxyStatus  string
		outcome      string
	}{
		{"no port", "example.com", nil, 400, proxyStatus("http_request_error", "") + "*", outcome.Denied},
		{"port 0", "127.0.0.1:0", nil, 400, proxyStatus("http_request_error", "") + "*", outcome.Denied},
		{"port out of range", "127.0.0.1:65536", nil, 400, proxyStatus("http_request_error", "") + "*", outcome.Denied},
		{"no host", ":443", nil, 400, proxyStatus("http_request_error", "") + "*", outcome.Denied},
		{"closed port", closed, nil, 502, proxyStatus("connection_refused", "dial tcp "+closed+": connect: connection refused"), outcome.Error},
		{"loop", echo, []string{"Via: 1.1 proxyd"}, 508, proxyStatus("proxy_loop_detected", ""), outcome.Denied},
		{"bad priority", echo, []string{"X-Priority: banana"}, 400, proxyStatus("http_request_error", "") + "*", outcome.Denied},
		{"bad timeout", echo, []string{"X-Proxy-Timeout: 0"}, 400, proxyStatus("http_request_error", "") + "*", outcome.Denied},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "connect-bad-" + string(rune('a'+i))
			tc, body := e.connect(tt.target, append(tt.hdr, "X-Request-Id: "+id)...)
			wantAnswer(t, tc.result(body), tt.status, tt.proxyStatus, false)
			e.wantRecord(id, tt.outcome, tt.status)
		})
	}
	if s := e.disp.Stats(); s.Tunnels != 0 || e.h.OpenTunnels() != 0 {
		t.Errorf("tunnels %d / %d after refusals", s.Tunnels, e.h.OpenTunnels())
	}
}

// Tunnels count against max_tunnels: a second CONNECT waits in the queue
// until the first closes. An open tunnel holds no concurrency slot.
func TestConnectMaxTunnels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) {
		s.cfg.Limits.MaxTunnels = 1
		s.cfg.Limits.Concurrency = 1
	})
	// Echoes four bytes, then closes: once the client closes too, both
	// sides have, and the tunnel ends however half-closes are handled.
	echo := e.tcpServer(func(c net.Conn) {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf)
		}
	})
	t1, _ := e.connect(echo, "X-Request-Id: tunnel-1")
	if t1.resp.StatusCode != 200 || t1.resp.Header.Get("Via") != "1.1 proxyd" {
		t.Fatalf("CONNECT answer %s, Via %q", t1.resp.Status, t1.resp.Header.Get("Via"))
	}
	roundTripLine(t, t1, "ping")
	e.stats("one tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 1 })

	type connected struct {
		tc  *tunnelConn
		err error
	}
	second := make(chan connected, 1)
	go func() {
		tc, _, err := e.dialConnect(echo, "X-Request-Id: tunnel-2", "X-Priority: 1")
		second <- connected{tc, err}
	}()
	s := e.stats("the second CONNECT waiting", func(s dispatch.Stats) bool { return s.Waiting[dispatch.Tunnel] == 1 })
	if s.Tunnels != 1 || s.Depth != 1 || s.ByPriority[1] != 1 {
		t.Errorf("tunnels %d depth %d by priority %v", s.Tunnels, s.Depth, s.ByPriority)
	}
	notYet(t, second, "the second CONNECT's answer")

	// Neither the open tunnel nor the waiting CONNECT holds back an HTTP
	// request, with concurrency 1.
	o := e.newOrigin(nil)
	res, _ := e.get(o.URL + "/meanwhile")
	wantStatus(t, res, 200)

	t1.Close()
	got := recv(t, second, "the second CONNECT's answer")
	if got.err != nil || got.tc.resp.StatusCode != 200 {
		t.Fatalf("second CONNECT: %v %v", got.err, got.tc)
	}
	roundTripLine(t, got.tc, "pong")
	rec1 := e.wantRecord("tunnel-1", outcome.Forwarded, 200)
	if rec1.BytesIn != 4 || rec1.Bytes != 4 {
		t.Errorf("first tunnel bytes in %d out %d", rec1.BytesIn, rec1.Bytes)
	}
	e.stats("the second tunnel open", func(s dispatch.Stats) bool { return s.Tunnels == 1 && s.Depth == 0 })
	got.tc.Close()
	if rec := e.wantRecord("tunnel-2", outcome.Forwarded, 200); rec.QueueWait <= 0 || rec.Priority != 1 {
		t.Errorf("second tunnel queue wait %v priority %d", rec.QueueWait, rec.Priority)
	}
	e.stats("no tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
}

// CloseTunnels cuts an open tunnel.
func TestCloseTunnels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	echo := e.echoServer()
	t1, _ := e.connect(echo, "X-Request-Id: cut")
	roundTripLine(t, t1, "ping")
	closed := make(chan struct{})
	go func() {
		e.h.CloseTunnels()
		close(closed)
	}()
	recv(t, closed, "CloseTunnels to return")
	// The client's end is closed: reading ends (EOF or reset) at once.
	if b, _ := io.ReadAll(t1); len(b) != 0 {
		t.Errorf("read %q after CloseTunnels", b)
	}
	rec := e.wantRecord("cut", outcome.Forwarded, 200)
	if rec.Err == nil {
		t.Errorf("a cut tunnel's Record has no error")
	}
	e.stats("no tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
	if n := e.h.OpenTunnels(); n != 0 {
		t.Errorf("%d open tunnels", n)
	}
}

// After CloseTunnels, a new CONNECT is refused, not answered 200 and cut.
func TestConnectAfterCloseTunnels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	echo := e.echoServer()
	e.h.CloseTunnels()
	tc, body := e.connect(echo, "X-Request-Id: late")
	wantAnswer(t, tc.result(body), 503, proxyStatus("proxy_internal_response", "draining"), true)
	e.wantRecord("late", outcome.Draining, 503)
}

// The tunnel ends cleanly when either side closes.
func TestTunnelEnds(t *testing.T) {
	t.Parallel()
	t.Run("client half-closes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		sawEOF := make(chan struct{})
		up := e.tcpServer(func(c net.Conn) {
			io.Copy(c, c) // echo until the client's EOF
			close(sawEOF)
			io.WriteString(c, "bye")
		})
		tc, _ := e.connect(up, "X-Request-Id: half")
		roundTripLine(t, tc, "ping")
		if err := tc.Conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		recv(t, sawEOF, "the client's half-close (EOF) at the upstream")
		// The upstream's last words may be passed on (half-close) or
		// dropped (RFC 9110 §9.3.6 closes both); either way the stream ends.
		rest, err := io.ReadAll(tc)
		if err != nil || (string(rest) != "bye" && string(rest) != "") {
			t.Fatalf("after half-close read %q, %v; want EOF", rest, err)
		}
		tc.Close()
		rec := e.wantRecord("half", outcome.Forwarded, 200)
		if rec.BytesIn != 4 || rec.Bytes != int64(4+len(rest)) {
			t.Errorf("Record bytes in %d out %d; want 4, %d", rec.BytesIn, rec.Bytes, 4+len(rest))
		}
		e.stats("no tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
	})
	t.Run("client closes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		sawEOF := make(chan string, 1)
		up := e.tcpServer(func(c net.Conn) {
			b, _ := io.ReadAll(c) // until the client's close reaches it
			sawEOF <- string(b)
			<-e.done // then idles: it never closes by itself
		})
		tc, _ := e.connect(up, "X-Request-Id: client-closes")
		io.WriteString(tc, "hello")
		tc.Close()
		if got := recv(t, sawEOF, "the client's close (EOF) at the upstream"); got != "hello" {
			t.Errorf("upstream read %q", got)
		}
		// RFC 9110 §9.3.6: once either side has closed, the intermediary
		// sends what is outstanding, then closes both connections.
		if !eventually(tunnelEndLimit, func() bool { return len(e.records("client-closes")) > 0 }) {
			t.Fatalf("the client closed its connection, the upstream saw EOF but idles, and the tunnel stays open (Stats().Tunnels = %d, OpenTunnels = %d) after %v; RFC 9110 §9.3.6 says close both connections",
				e.disp.Stats().Tunnels, e.h.OpenTunnels(), tunnelEndLimit)
		}
		e.wantRecord("client-closes", outcome.Forwarded, 200)
		e.stats("no tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
	})
	t.Run("upstream closes, client idles", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		up := e.tcpServer(func(c net.Conn) { io.WriteString(c, "hello") }) // then closes
		tc, _ := e.connect(up, "X-Request-Id: upstream-closes-idle")
		readToEOF(t, tc, "hello")
		// The client keeps its end open and sends nothing.
		if !eventually(tunnelEndLimit, func() bool { return len(e.records("upstream-closes-idle")) > 0 }) {
			t.Fatalf("the upstream closed its connection and the client got EOF, but the tunnel stays open (Stats().Tunnels = %d) after %v while the client keeps its end; RFC 9110 §9.3.6 says close both connections",
				e.disp.Stats().Tunnels, tunnelEndLimit)
		}
		e.wantRecord("upstream-closes-idle", outcome.Forwarded, 200)
	})
	t.Run("upstream closes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		up := e.tcpServer(func(c net.Conn) { io.WriteString(c, "hello") }) // then closes
		tc, _ := e.connect(up, "X-Request-Id: upstream-closes")
		readToEOF(t, tc, "hello")
		tc.Close()
		if rec := e.wantRecord("upstream-closes", outcome.Forwarded, 200); rec.Bytes != 5 {
			t.Errorf("Record bytes %d, want 5", rec.Bytes)
		}
		e.stats("no tunnel", func(s dispatch.Stats) bool { return s.Tunnels == 0 })
	})
}

// tunnelEndLimit bounds the wait for a tunnel to end after one side has
// closed and the other idles: the proxy may linger a little (to let a
// half-closed peer answer) but must then close both sides.
const tunnelEndLimit = waitLimit

// eventually polls cond for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// readToEOF reads the tunnel to its end and wants exactly want.
func readToEOF(t *testing.T, tc *tunnelConn, want string) {
	t.Helper()
	got, err := io.ReadAll(tc) // the connection's deadline is waitLimit
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("read %q and no EOF after %v: the upstream's close did not reach the client", got, waitLimit)
	}
	if err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q then EOF", got, err, want)
	}
}
