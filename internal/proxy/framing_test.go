package proxy_test

// Request framing and header limits at the proxy's edge (issue 26): a raw
// client writes exact bytes to a real proxy, a raw origin records exactly
// what reaches it. See docs/operations.md, "Framing and header limits".

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wireOrigin is a raw upstream that keeps every byte it receives and
// answers each request it can parse "200 ok" (after reading its body and
// trailers).
type wireOrigin struct {
	addr string
	reqs atomic.Int64 // requests parsed
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (e *env) newWireOrigin() *wireOrigin {
	o := &wireOrigin{}
	o.addr = e.tcpServer(func(c net.Conn) {
		br := bufio.NewReader(io.TeeReader(c, lockedWriter{&o.mu, &o.buf}))
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			o.reqs.Add(1)
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return o
}

// wire returns the bytes the origin received so far.
func (o *wireOrigin) wire() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// rawExchange writes request on a new connection to the proxy and reads
// one response. The request must end its connection (Connection: close,
// or one the proxy refuses): closed reports whether the proxy then closed
// it with nothing more sent.
func (e *env) rawExchange(request string) (res result, closed bool) {
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
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
	if err != nil {
		e.t.Fatalf("reading the response to %q: %v", request, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	res = result{resp: resp, body: string(b), err: err}
	rest, err := io.ReadAll(br)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		e.t.Errorf("after the response: %v (read %q)", err, rest)
		return res, false
	}
	if len(rest) > 0 {
		e.t.Errorf("after the answer the proxy sent more: %q", rest)
	}
	return res, len(rest) == 0
}

// A request whose framing is ambiguous (RFC 9112 §6.1, §6.3) is refused
// 400 and its connection closed: the bytes after it, a smuggled request,
// are never read, and nothing reaches the origin.
func TestAmbiguousFramingRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newWireOrigin()
	smuggled := "GET http://" + o.addr + "/SMUGGLED HTTP/1.1\r\nHost: " + o.addr + "\r\n\r\n"
	body := "0\r\n\r\n" + smuggled
	for _, tc := range []struct{ name, head, details string }{
		{"CL and TE", "POST http://" + o.addr + "/a HTTP/1.1\r\nHost: " + o.addr +
			fmt.Sprintf("\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n", len(body)),
			"both Content-Length and Transfer-Encoding (RFC 9112, section 6.3)"},
		{"TE in HTTP/1.0", "POST http://" + o.addr + "/a HTTP/1.0\r\nHost: " + o.addr +
			"\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
			"Transfer-Encoding in an HTTP/1.0 request (RFC 9112, section 6.1)"},
		{"TE and CL in HTTP/1.0", "POST http://" + o.addr + "/a HTTP/1.0\r\nHost: " + o.addr +
			fmt.Sprintf("\r\nConnection: keep-alive\r\ntransfer-encoding: chunked\r\ncontent-length: %d\r\n\r\n", len(body)),
			"Transfer-Encoding in an HTTP/1.0 request (RFC 9112, section 6.1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, closed := e.rawExchange(tc.head + body)
			wantAnswer(t, res, 400, proxyStatus("http_request_error", tc.details), false)
			if !closed || !res.resp.Close {
				t.Errorf("connection kept (Connection: close %v, closed %v)", res.resp.Close, closed)
			}
		})
	}
	if n, w := o.reqs.Load(), o.wire(); n != 0 || w != "" {
		t.Errorf("the origin got %d requests: %q", n, w)
	}
}

// "Transfer-Encoding : chunked" (whitespace before the colon) is the
// client's error, 400, not an upstream failure (RFC 9112 §5.1).
func TestWhitespaceBeforeColonRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newWireOrigin()
	res, closed := e.rawExchange("POST http://" + o.addr + "/p HTTP/1.1\r\nHost: " + o.addr +
		"\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	wantAnswer(t, res, 400, proxyStatus("http_request_error", "whitespace between a field name and its colon (RFC 9112, section 5.1)"), false)
	if !closed {
		t.Error("connection kept")
	}
	if n := o.reqs.Load(); n != 0 {
		t.Errorf("the origin got %d requests: %q", n, o.wire())
	}
}

// Every request proxyd can read gets an answer: a target http.ReadRequest
// refuses is answered 400 with Proxy-Status, never a silent close.
func TestMalformedTargetsAnswered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newWireOrigin()
	for _, target := range []string{
		"http://%31%32%37.0.0.1/",
		"[::ffff:0x7f.1]",
		"http://[::ffff:0x7f.1]/",
		"http://10.0.0.7#@example.com/",
		"http://exa%mple.com/",
		"http://a%2/",
		"http://%00/",
		"http://[::1/",
		"http://[::1]x/",
		"http://[fe80::1%en0]/",
		"http://127.0.0.1:port/",
		"http://127.0.0.1:-1/",
		"http://127.0.0.1:8%30/",
		"http://\x7f/",
		"://127.0.0.1/",
		"%zz",
		"http://a\x01b/",
	} {
		t.Run(fmt.Sprintf("%q", target), func(t *testing.T) {
			res, closed := e.rawExchange("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")
			wantAnswer(t, res, 400, "proxyd; error=http_request_error; details=*", false)
			if !closed {
				t.Error("connection kept")
			}
		})
	}
	if n := o.reqs.Load(); n != 0 {
		t.Errorf("the origin got %d requests", n)
	}
}

// At most 200 header fields (431 beyond), counted as the header is read.
func TestHeaderFieldCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newWireOrigin()
	head := "GET http://" + o.addr + "/f HTTP/1.1\r\nHost: " + o.addr + "\r\n"
	fields := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-%d: 1\r\n", i)
		}
		return b.String()
	}
	// 100,000 tiny fields (well under the 1 MiB header limit).
	res, closed := e.rawExchange(head + strings.Repeat("a:\r\n", 100_000) + "\r\n")
	wantAnswer(t, res, 431, proxyStatus("http_request_error", "more than 200 header fields"), false)
	if !closed {
		t.Error("connection kept")
	}
	res, _ = e.rawExchange(head + fields(200) + "\r\n")
	wantAnswer(t, res, 431, proxyStatus("http_request_error", "more than 200 header fields"), false)
	if n := o.reqs.Load(); n != 0 {
		t.Errorf("the origin got %d requests", n)
	}
	// 200 fields, Host and Connection included, pass.
	res, _ = e.rawExchange(head + fields(198) + "Connection: close\r\n\r\n")
	if res.resp == nil || res.resp.StatusCode != 200 {
		t.Fatalf("200 fields: %v, want 200", res)
	}
	if n := o.reqs.Load(); n != 1 {
		t.Errorf("the origin got %d requests, want 1", n)
	}
}

// Trailer fields that may not be trailers (RFC 9110 §6.5.1), and every
// hop-by-hop one, never reach the origin; others do.
func TestForbiddenTrailersDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newWireOrigin()
	res, _ := e.rawExchange("POST http://" + o.addr + "/t HTTP/1.1\r\nHost: " + o.addr +
		"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Host\r\nConnection: close, X-Secret\r\n\r\n" +
		"5\r\nhello\r\n0\r\n" +
		"X-Checksum: abc\r\n" +
		"Content-Length: 5\r\n" +
		"Host: evil.example\r\n" +
		"Transfer-Encoding: chunked\r\n" +
		"Proxy-Authorization: Basic c2VjcmV0\r\n" +
		"Authorization: Bearer stolen\r\n" +
		"Cookie: a=b\r\n" +
		"X-Secret: hop\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Content-Type: text/evil\r\n" +
		"\r\n")
	wantStatus(t, res, 200)
	w := o.wire()
	if !strings.Contains(w, "hello") || !strings.Contains(w, "X-Checksum: abc\r\n") {
		t.Errorf("the origin did not get the body and the allowed trailer: %q", w)
	}
	for _, bad := range []string{"evil.example", "c2VjcmV0", "stolen", "a=b", "X-Secret", "hop\r\n", "timeout=5", "text/evil",
		"Content-Length: 5", "Transfer-Encoding: chunked\r\nTransfer"} {
		if strings.Contains(w, bad) {
			t.Errorf("the origin got %q: %q", bad, w)
		}
	}
	// Once: the body is chunked, so Transfer-Encoding appears in the header only.
	if n := strings.Count(strings.ToLower(w), "transfer-encoding"); n != 1 {
		t.Errorf("Transfer-Encoding %d times at the origin, want once (the header): %q", n, w)
	}
}
