package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/h1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait in these tests.
const waitLimit = 5 * time.Second

type server struct {
	*h1.Server
	addr  string
	conns atomic.Int64 // connections accepted
	log   syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// start serves h on a loopback listener until the test ends.
func start(t *testing.T, h http.HandlerFunc, opts ...func(*h1.Server)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String()}
	s.Server = &h1.Server{Handler: h, ReadHeaderTimeout: waitLimit, ErrorLog: log.New(&s.log, "", 0)}
	for _, o := range opts {
		o(s.Server)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(countingListener{ln, &s.conns}) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, h1.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s
}

func client(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitLimit}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// rawConn is a client connection for byte-level tests.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	return &rawConn{c, bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// head reads a response's status line and header, as raw text.
func (c *rawConn) head(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the header: %v (so far %q)", err, sb.String())
		}
		sb.WriteString(line)
		if line == "\r\n" {
			return sb.String()
		}
	}
}

func (c *rawConn) response(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection (EOF next).
func (c *rawConn) closed(t *testing.T) bool {
	t.Helper()
	_, err := c.br.ReadByte()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("waiting for the close: %v", err)
	}
	return err != nil
}

func TestSmallBodyGetsContentLengthAndKeepAlive(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	})
	c := client(t)
	for i := range 3 {
		resp, body := get(t, c, "http://"+s.addr+fmt.Sprintf("/n%d", i))
		if want := fmt.Sprintf("hello /n%d", i); body != want {
			t.Errorf("body %q, want %q", body, want)
		}
		if resp.ContentLength != int64(len(body)) || resp.TransferEncoding != nil {
			t.Errorf("Content-Length %d, Transfer-Encoding %v: want a Content-Length for a small body", resp.ContentLength, resp.TransferEncoding)
		}
		if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
			t.Errorf("Date %q: %v", resp.Header.Get("Date"), err)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests, want 1 (keep-alive)", n)
	}
}

func TestLargeBodyIsChunked(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, big[:100])
		io.WriteString(w, big[100:])
	})
	c := dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "GET")
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}
	if body != big {
		t.Errorf("body of %d bytes, want %d", len(body), len(big))
	}
	// The connection is kept: a second request works on it.
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != big {
		t.Errorf("second body of %d bytes", len(body))
	}
}

func TestDeclaredContentLength(t *testing.T) {
	var writeErr atomic.Value
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/exact":
			w.Header().Set("Content-Length", "5000")
			w.Write(bytes.Repeat([]byte("a"), 5000))
		case "/long":
			w.Header().Set("Content-Length", "3")
			if _, err := w.Write([]byte("abcdef")); err != nil {
				writeErr.Store(err)
			}
		case "/short":
			w.Header().Set("Content-Length", "10")
			w.Write([]byte("abc"))
		}
	})
	c := dial(t, s.addr)
	c.send(t, "GET /exact HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "GET")
	if resp.ContentLength != 5000 || len(body) != 5000 || resp.TransferEncoding != nil {
		t.Errorf("/exact: Content-Length %d, %d bytes, TE %v", resp.ContentLength, len(body), resp.TransferEncoding)
	}
	c.send(t, "GET /long HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "abc" {
		t.Errorf("/long: body %q, want the declared 3 bytes", body)
	}
	if err, _ := writeErr.Load().(error); !errors.Is(err, http.ErrContentLength) {
		t.Errorf("/long: Write error %v, want ErrContentLength", err)
	}
	// Shorter than declared: the close tells the client.
	c.send(t, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("/short: body read error %v, want unexpected EOF", err)
	}
}

func TestNoBodyResponses(t *testing.T) {
	var errs sync.Map
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "11")
		}
		_, err := w.Write([]byte("hello world"))
		errs.Store(r.Method+r.URL.Path, err)
	})
	c := dial(t, s.addr)
	for _, tc := range []struct{ method, path, wantCL string }{
		{"HEAD", "/", "11"}, {"GET", "/204", ""}, {"GET", "/304", ""},
	} {
		c.send(t, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		head := c.head(t)
		if strings.Contains(head, "Transfer-Encoding") || (tc.wantCL != "" && !strings.Contains(head, "Content-Length: "+tc.wantCL+"\r\n")) {
			t.Errorf("%s %s: header\n%s", tc.method, tc.path, head)
		}
	}
	// Nothing but headers came: the next response starts right away.
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "hello world" {
		t.Errorf("body %q after the bodiless responses", body)
	}
	if err, _ := errs.Load("HEAD/"); err != nil {
		t.Errorf("HEAD: Write error %v, want nil (discarded)", err)
	}
	for _, k := range []string{"GET/204", "GET/304"} {
		if err, _ := errs.Load(k); !errors.Is(err.(error), http.ErrBodyNotAllowed) {
			t.Errorf("%s: Write error %v, want ErrBodyNotAllowed", k, err)
		}
	}
}

func TestFlushStreamsAtOnce(t *testing.T) {
	release := make(chan struct{})
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		<-release
		io.WriteString(w, "data: two\n\n")
	})
	resp, err := client(t).Get("http://" + s.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line %q, %v: want it before the handler ends", line, err)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest %q, %v", rest, err)
	}
}

func TestTrailers(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	})
	resp, body := get(t, client(t), "http://"+s.addr+"/")
	if body != "body" {
		t.Errorf("body %q", body)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "42" {
		t.Errorf("trailer X-Sum %q, want 42 (trailers %v)", got, resp.Trailer)
	}
	if got := resp.Trailer.Get("X-Late"); got != "yes" {
		t.Errorf("trailer X-Late %q, want yes (trailers %v)", got, resp.Trailer)
	}
	if resp.Header.Get("X-Sum") != "" || resp.Header.Get(http.TrailerPrefix+"X-Late") != "" {
		t.Errorf("trailer values leaked into the header: %v", resp.Header)
	}
}

// adopter is the interface upstream.CopyResponse looks for.
type adopter interface{ AdoptHeader(http.Header) bool }

func TestAdoptHeader(t *testing.T) {
	adopted := make(chan bool, 3)
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		a, ok := w.(adopter)
		if !ok {
			t.Error("the response cannot adopt a header")
			return
		}
		if r.URL.Path == "/set" {
			w.Header().Set("X-Early", "1")  // a field already set stays
			w.Header().Set("X-Up", "first") // ahead of the adopted values
		}
		h := http.Header{"X-Up": {"a", "b"}, "Trailer": {"X-Sum"}, "Content-Type": {"text/plain"}}
		got := a.AdoptHeader(h)
		adopted <- got
		if !got {
			for k, vv := range h {
				w.Header()[k] = vv
			}
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42") // trailers go into the adopted map
		if a.AdoptHeader(http.Header{"X-Late": {"1"}}) {
			t.Error("adopted a header after the response was sent")
		}
	})
	c := client(t)
	for _, tc := range []struct {
		path      string
		wantUp    string
		wantEarly string
	}{{"/", "a,b", ""}, {"/set", "first,a,b", "1"}} {
		resp, body := get(t, c, "http://"+s.addr+tc.path)
		if !<-adopted {
			t.Errorf("%s: AdoptHeader = false before the header was written", tc.path)
		}
		if body != "body" || resp.Header.Get("Content-Type") != "text/plain" || strings.Join(resp.Header.Values("X-Up"), ",") != tc.wantUp {
			t.Errorf("%s: body %q, header %v", tc.path, body, resp.Header)
		}
		if got := resp.Header.Get("X-Early"); got != tc.wantEarly {
			t.Errorf("%s: X-Early %q, want %q", tc.path, got, tc.wantEarly)
		}
		if got := resp.Trailer.Get("X-Sum"); got != "42" {
			t.Errorf("%s: trailer X-Sum %q, want 42 (trailers %v)", tc.path, got, resp.Trailer)
		}
	}
}

func TestExpectContinue(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ignore" {
			io.WriteString(w, "not reading")
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		fmt.Fprintf(w, "got %s", b)
	})
	c := dial(t, s.addr)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if head := c.head(t); !strings.HasPrefix(head, "HTTP/1.1 100 Continue\r\n") {
		t.Fatalf("interim response %q, want 100 Continue", head)
	}
	c.send(t, "hello")
	if resp, body := c.response(t, "POST"); resp.StatusCode != 200 || body != "got hello" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}

	// A handler that never reads: no "100 Continue", the answer comes,
	// and the connection closes (the body will never be sent).
	c = dial(t, s.addr)
	c.send(t, "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if resp, body := c.response(t, "POST"); resp.StatusCode != 200 || body != "not reading" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	if !c.closed(t) {
		t.Error("connection kept after an unread 100-continue body")
	}

	c = dial(t, s.addr)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: teapot\r\n\r\n")
	if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusExpectationFailed {
		t.Errorf("status %d for an unknown expectation, want 417", resp.StatusCode)
	}
}

func TestUnreadBody(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	// A small unread body is discarded and the connection kept.
	c := dial(t, s.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
	c.response(t, "POST")
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "ok" {
		t.Errorf("second request on the connection: %q", body)
	}
	// A large one closes it.
	c = dial(t, s.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
	go func() { c.Write(make([]byte, 1<<20)) }() //nolint:errcheck // the server may close first
	c.response(t, "POST")
	if !c.closed(t) {
		t.Error("connection kept after a large unread body")
	}
}

func TestHTTP10(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "b")
	})
	c := dial(t, s.addr)
	c.send(t, "GET / HTTP/1.0\r\n\r\n")
	resp, body := c.response(t, "GET")
	if body != "b" || !resp.Close {
		t.Errorf("body %q, close %v: want the connection closed for HTTP/1.0", body, resp.Close)
	}
	if !c.closed(t) {
		t.Error("HTTP/1.0 connection without keep-alive kept")
	}

	c = dial(t, s.addr)
	c.send(t, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if head := c.head(t); !strings.Contains(head, "Connection: keep-alive\r\n") || !strings.Contains(head, "Content-Length: 1\r\n") {
		t.Errorf("keep-alive HTTP/1.0 header:\n%s", head)
	}
	c.br.ReadByte()
	// A streamed body to an HTTP/1.0 client ends with the connection.
	c.send(t, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body = c.response(t, "GET")
	if body != "ab" || resp.TransferEncoding != nil {
		t.Errorf("body %q, TE %v", body, resp.TransferEncoding)
	}
	if !c.closed(t) {
		t.Error("connection kept after a close-delimited body")
	}
}

func TestPipelining(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	c := dial(t, s.addr)
	c.send(t, "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	for _, want := range []string{"/one", "/two", "/three"} {
		if _, body := c.response(t, "GET"); body != want {
			t.Errorf("body %q, want %q", body, want)
		}
	}
	if !c.closed(t) {
		t.Error("connection kept after Connection: close")
	}
}

func TestBadRequests(t *testing.T) {
	var calls atomic.Int64
	s := start(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }, func(s *h1.Server) { s.MaxHeaderBytes = 1024 })
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"garbage", "HELLO\r\n\r\n", 400},
		{"bad header line", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"HTTP/2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"huge header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431},
		{"bad content length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s.addr)
			c.send(t, tc.req)
			resp, body := c.response(t, "GET")
			if resp.StatusCode != tc.status || !resp.Close || body == "" {
				t.Errorf("status %d, close %v, body %q: want %d, closed, with a reason", resp.StatusCode, resp.Close, body, tc.status)
			}
			if !c.closed(t) {
				t.Error("connection kept")
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler ran %d times for bad requests", n)
	}
}

// The request's context ends when the client goes away while the request
// runs: at once with a negative WatchAfter (net/http's behaviour), after
// WatchAfter otherwise.
func TestClientGoneCancelsContext(t *testing.T) {
	for _, watch := range []time.Duration{-1, 0, 50 * time.Millisecond} {
		t.Run(fmt.Sprint(watch), func(t *testing.T) {
			ended := make(chan error, 1)
			s := start(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
					ended <- r.Context().Err()
				case <-time.After(waitLimit):
					ended <- errors.New("context not canceled")
				}
			}, func(s *h1.Server) { s.WatchAfter = watch })
			c := dial(t, s.addr)
			c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.Close()
			if err := <-ended; !errors.Is(err, context.Canceled) {
				t.Errorf("context: %v, want canceled", err)
			}
		})
	}
}

// WatchClient starts the watch at once, whatever WatchAfter says: the
// proxy calls it when a request has to wait in its queue.
func TestWatchClientAtOnce(t *testing.T) {
	ended := make(chan error, 1)
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		w.(h1.ClientWatcher).WatchClient()
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(waitLimit):
			ended <- errors.New("context not canceled")
		}
	}, func(s *h1.Server) { s.WatchAfter = time.Hour })
	c := dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("context: %v, want canceled", err)
	}
}

// readWatch follows the watch's background reads on one connection
// (h1.OnBackgroundRead), so that a test sends bytes only once the watch is
// there to read them, and goes on only once it has: without it, a loaded
// machine lets the bytes arrive first, and the test passes without testing
// the watch at all.
type readWatch struct {
	parked  chan struct{} // a read is about to block
	stopped chan struct{} // the background read has stopped
	mu      sync.Mutex
	peer    string // the client's address, as the server sees it
}

func newReadWatch(t *testing.T) *readWatch {
	rw := &readWatch{parked: make(chan struct{}, 1), stopped: make(chan struct{}, 1)}
	h1.OnBackgroundRead(t, func(nc net.Conn, parked bool) {
		rw.mu.Lock()
		peer := rw.peer
		rw.mu.Unlock()
		if nc.RemoteAddr().String() != peer {
			return
		}
		ch := rw.stopped
		if parked {
			ch = rw.parked
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return rw
}

// follow makes rw follow the server's end of c.
func (rw *readWatch) follow(c *rawConn) {
	rw.mu.Lock()
	rw.peer = c.LocalAddr().String()
	rw.mu.Unlock()
}

// wait reports whether ch got a value within waitLimit.
func (rw *readWatch) wait(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(waitLimit):
		return false
	}
}

// A watched request that the client follows with a pipelined one is not
// canceled, and the next request arrives intact.
func TestWatchKeepsPipelinedBytes(t *testing.T) {
	reads := newReadWatch(t)
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			// The watch read the next request's first byte and stopped:
			// had it taken that for the client going away, the context
			// would be canceled by now.
			if !reads.wait(reads.stopped) {
				t.Errorf("the watch did not read the pipelined request within %v", waitLimit)
			} else if r.Context().Err() != nil {
				t.Error("context canceled by a pipelined request")
			}
		}
		io.WriteString(w, r.URL.Path)
	}, func(s *h1.Server) { s.WatchAfter = -1 })
	c := dial(t, s.addr)
	reads.follow(c)
	c.send(t, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	if !reads.wait(reads.parked) {
		t.Fatalf("the watch did not start reading within %v", waitLimit)
	}
	c.send(t, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"/slow", "/next"} {
		if _, body := c.response(t, "GET"); body != want {
			t.Errorf("body %q, want %q", body, want)
		}
	}
}

func TestHijack(t *testing.T) {
	done := make(chan struct{})
	reads := newReadWatch(t)
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		// The watch has read the early bytes: Hijack must hand them over.
		if !reads.wait(reads.stopped) {
			t.Errorf("the watch did not read the early bytes within %v", waitLimit)
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrHijacked) {
			t.Errorf("Write after Hijack: %v, want ErrHijacked", err)
		}
		brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		brw.Flush()
		// Read as the proxy's tunnel does (internal/proxy/splice.go): what
		// the reader holds, then the connection itself.
		early := make([]byte, brw.Reader.Buffered())
		io.ReadFull(brw, early)
		rest, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Errorf("reading the tunnel: %v", err)
		}
		io.WriteString(conn, "echo "+string(early)+rest)
	}, func(s *h1.Server) { s.WatchAfter = -1 })
	c := dial(t, s.addr)
	reads.follow(c)
	// The client speaks before the 200: those bytes must reach the handler.
	// They follow the header once the watch reads the connection, so that
	// the watch takes them, not the read of the header.
	c.send(t, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	if !reads.wait(reads.parked) {
		t.Fatalf("the watch did not start reading within %v", waitLimit)
	}
	c.send(t, "early\n")
	if head := c.head(t); !strings.HasPrefix(head, "HTTP/1.1 200 Connection established") {
		t.Errorf("head %q", head)
	}
	if line, err := c.br.ReadString('\n'); line != "echo early\n" {
		t.Errorf("tunnel echoed %q, %v", line, err)
	}
	<-done
	if !c.closed(t) {
		t.Error("hijacked connection still open after the handler closed it")
	}
}

func TestPanics(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		w.Write(bytes.Repeat([]byte("x"), 10000))
		w.(http.Flusher).Flush()
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		panic("boom")
	})
	for _, path := range []string{"/abort", "/boom"} {
		c := dial(t, s.addr)
		c.send(t, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("%s: body ended cleanly, want a cut", path)
		}
	}
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(s.log.String(), "boom") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	logged := s.log.String()
	if !strings.Contains(logged, "panic serving") || !strings.Contains(logged, "boom") || !strings.Contains(logged, "goroutine") {
		t.Errorf("panic log %q, want the value and a stack", logged)
	}
	if strings.Count(logged, "panic serving") != 1 {
		t.Errorf("ErrAbortHandler logged: %q", logged)
	}
}

func TestShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})
	idle := dial(t, s.addr)
	idle.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.response(t, "GET")
	busy := dial(t, s.addr)
	busy.send(t, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered

	// Out of time while a request runs: Shutdown says so.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a busy connection: %v, want DeadlineExceeded", err)
	}
	cancel()
	if !idle.closed(t) {
		t.Error("idle connection not closed by Shutdown")
	}
	if _, err := net.Dial("tcp", s.addr); err == nil {
		t.Error("still accepting after Shutdown")
	}

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	close(release)
	resp, body := busy.response(t, "GET")
	if body != "done" || !resp.Close {
		t.Errorf("busy request: %q, close %v: want it finished, with Connection: close", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestCloseCutsBusyConnections(t *testing.T) {
	entered := make(chan struct{})
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}, func(s *h1.Server) { s.WatchAfter = -1 })
	c := dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	s.Close()
	if !c.closed(t) {
		t.Error("busy connection not closed by Close")
	}
}

func TestTimeouts(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }, func(s *h1.Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = 150 * time.Millisecond
	})
	// A header that never ends.
	c := dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n")
	if !c.closed(t) {
		t.Error("slow header not cut")
	}
	// An idle keep-alive connection.
	c = dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.response(t, "GET")
	startIdle := time.Now()
	if !c.closed(t) {
		t.Error("idle connection not closed")
	}
	if d := time.Since(startIdle); d < 100*time.Millisecond {
		t.Errorf("idle connection closed after %v, before its timeout", d)
	}
}

// curl, a client that is not Go's, reads a chunked response with
// trailers and a kept-alive connection.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Done")
		w.WriteHeader(200)
		fmt.Fprintf(w, "%s %s\n", r.Method, r.URL.Path)
		w.(http.Flusher).Flush()
		io.WriteString(w, "second\n")
		w.Header().Set("X-Done", "1")
	})
	out, err := exec.Command(curl, "-sS", "--http1.1", "--raw", "http://"+s.addr+"/a", "http://"+s.addr+"/b").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	for _, want := range []string{"GET /a\n", "GET /b\n", "second\n", "X-Done: 1"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("curl output lacks %q:\n%s", want, out)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("curl used %d connections for 2 URLs, want 1", n)
	}
}

// flakyListener fails its first Accept with err.
type flakyListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	var err error
	l.once.Do(func() { err = l.err })
	if err != nil {
		return nil, err
	}
	return l.Listener.Accept()
}

// Running out of file descriptors is waited out, logged, and serving goes
// on; any other accept error ends Serve with it.
func TestAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logged syncBuffer
	srv := &h1.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), ErrorLog: log.New(&logged, "", 0)}
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(&flakyListener{Listener: ln, err: &net.OpError{Op: "accept", Err: syscall.EMFILE}})
	}()
	if _, body := get(t, client(t), "http://"+ln.Addr().String()+"/"); body != "ok" {
		t.Errorf("body %q after a transient accept error", body)
	}
	if !strings.Contains(logged.String(), "too many open files") {
		t.Errorf("log %q, want the accept error", logged.String())
	}
	srv.Close()
	if err := <-done; !errors.Is(err, h1.ErrServerClosed) {
		t.Errorf("Serve: %v, want ErrServerClosed", err)
	}

	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fatal := errors.New("listener broken")
	srv2 := &h1.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	if err := srv2.Serve(&flakyListener{Listener: ln2, err: fatal}); !errors.Is(err, fatal) {
		t.Errorf("Serve: %v, want the accept error", err)
	}
	if _, err := net.Dial("tcp", ln2.Addr().String()); err == nil {
		t.Error("listener still open after Serve returned")
	}
}
