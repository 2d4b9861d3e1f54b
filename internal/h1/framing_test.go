package h1_test

// Framing, header limits, trailers and the watch of a waiting request with
// a body (issue 26), over real sockets: raw clients write exact bytes.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// wantRefused reads one response and checks it is the server's own
// refusal: status, Proxy-Status naming http_request_error with details,
// a close, and nothing after it.
func (c *rawConn) wantRefused(t *testing.T, status int, details string) {
	t.Helper()
	resp, body := c.response(t, "GET")
	if resp.StatusCode != status || !resp.Close {
		t.Errorf("status %d, close %v: want %d and a close (body %q)", resp.StatusCode, resp.Close, status, body)
	}
	want := `proxyd; error=http_request_error; details="` + details
	if ps := resp.Header.Get("Proxy-Status"); !strings.HasPrefix(ps, want) {
		t.Errorf("Proxy-Status %q, want it to start with %q", ps, want)
	}
	if !strings.HasPrefix(body, fmt.Sprint(status)) {
		t.Errorf("body %q: want a short text naming %d", body, status)
	}
	// The reason phrase, which clients print, names the error too.
	if reason := strings.TrimPrefix(resp.Status, fmt.Sprint(status)+" "); !strings.HasPrefix(reason, "http_request_error: "+details[:min(len(details), 40)]) {
		t.Errorf("reason phrase %q, want http_request_error and the details", reason)
	}
	if !c.closed(t) {
		t.Error("connection kept after a refusal")
	}
}

// Requests whose framing is ambiguous, with whitespace before a colon, or
// with too many fields, are refused and their connection closed: the bytes
// after them (a smuggled request) never reach the handler. Also when the
// request comes pipelined behind a good one, its header already buffered.
func TestFramingRefused(t *testing.T) {
	var paths atomic.Value
	paths.Store("")
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		paths.Store(paths.Load().(string) + r.URL.Path + " ")
		io.WriteString(w, "ok")
	})
	smuggled := "GET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"
	body := "0\r\n\r\n" + smuggled
	many := strings.Repeat("a:\r\n", 100_000) // 400 kB, within MaxHeaderBytes
	for _, tc := range []struct {
		name, req string
		status    int
		details   string
	}{
		{"CL and TE", fmt.Sprintf("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n", len(body)) + body,
			400, "both Content-Length and Transfer-Encoding"},
		{"TE and CL, any case", fmt.Sprintf("POST /a HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: %d\r\n\r\n", len(body)) + body,
			400, "both Content-Length and Transfer-Encoding"},
		{"TE in HTTP/1.0", "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
			400, "Transfer-Encoding in an HTTP/1.0 request"},
		{"space before a colon", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggled,
			400, "whitespace between a field name and its colon"},
		{"space before Host's colon", "GET /a HTTP/1.1\r\nHost : x\r\n\r\n", 400, "whitespace between a field name and its colon"},
		{"100,000 fields", "GET /a HTTP/1.1\r\nHost: x\r\n" + many + "\r\n", 431, "more than 200 header fields"},
		{"201 fields", "GET /a HTTP/1.1\r\n" + strings.Repeat("X-A: 1\r\n", 200) + "Host: x\r\n\r\n", 431, "more than 200 header fields"},
		{"pipelined CL and TE", "GET /first HTTP/1.1\r\nHost: x\r\n\r\n" +
			fmt.Sprintf("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n", len(body)) + body,
			400, "both Content-Length and Transfer-Encoding"},
		{"pipelined 201 fields", "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\n" + strings.Repeat("a:\r\n", 200) + "Host: x\r\n\r\n",
			431, "more than 200 header fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths.Store("")
			c := dial(t, s.addr)
			c.send(t, tc.req)
			if strings.HasPrefix(tc.req, "GET /first ") {
				if _, body := c.response(t, "GET"); body != "ok" {
					t.Fatalf("the first request: %q", body)
				}
			}
			c.wantRefused(t, tc.status, tc.details)
			if p := paths.Load().(string); strings.Contains(p, "/a") || strings.Contains(p, "SMUGGLED") {
				t.Errorf("the handler served %s", p)
			}
		})
	}
	// 200 fields pass.
	c := dial(t, s.addr)
	c.send(t, "GET /two-hundred HTTP/1.1\r\n"+strings.Repeat("X-A: 1\r\n", 199)+"Host: x\r\n\r\n")
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("200 fields: %d %q", resp.StatusCode, body)
	}
}

// Every request the server can read gets an answer: a target that
// http.ReadRequest refuses (its error is a *url.Error, which is a
// net.Error too) is answered 400, not met with a silent close.
func TestMalformedTargetsGetAnAnswer(t *testing.T) {
	var calls atomic.Int64
	s := start(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
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
			c := dial(t, s.addr)
			c.send(t, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
			c.wantRefused(t, 400, "parse ")
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler ran %d times", n)
	}
}

// Trailer fields that may not be trailers (RFC 9110 §6.5.1), hop-by-hop
// ones (the fixed list and those Connection names) and invalid names are
// dropped from a request's trailers before the handler sees them; others
// pass.
func TestRequestTrailersFiltered(t *testing.T) {
	got := make(chan http.Header, 1)
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || string(b) != "hello" {
			t.Errorf("body %q, %v", b, err)
		}
		got <- r.Trailer.Clone()
	})
	c := dial(t, s.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Host, X-Secret\r\nConnection: X-Secret\r\n\r\n"+
		"5\r\nhello\r\n0\r\n"+
		"X-Checksum: abc\r\n"+
		"Host: evil.example\r\n"+
		"Content-Length: 5\r\n"+
		"Transfer-Encoding: chunked\r\n"+
		"Proxy-Authorization: Basic c2VjcmV0\r\n"+
		"Authorization: Bearer stolen\r\n"+
		"X-Secret: hop\r\n"+
		"Te: trailers\r\n"+
		"X-Forwarded-For: 10.0.0.1\r\n"+
		"Content-Type: text/evil\r\n"+
		"X-Late : spaced\r\n"+
		"Grpc-Status: 0\r\n"+
		"\r\n")
	if resp, _ := c.response(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tr := <-got
	want := http.Header{"X-Checksum": {"abc"}, "Grpc-Status": {"0"}}
	if fmt.Sprint(tr) != fmt.Sprint(want) {
		t.Errorf("trailers %v, want %v", tr, want)
	}
}

// The same rule for a response's trailers: neither sent nor announced.
func TestResponseTrailersFiltered(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum, Content-Length, Set-Cookie")
		w.Header().Set("Connection", "X-Hop")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
		w.Header().Set("Content-Length", "999")
		w.Header().Set("Set-Cookie", "session=stolen")
		w.Header().Set(http.TrailerPrefix+"Location", "http://evil.example/")
		w.Header().Set(http.TrailerPrefix+"X-Hop", "hop")
		w.Header().Set(http.TrailerPrefix+"Server-Timing", "db;dur=1")
	})
	c := dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(raw))), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "body" {
		t.Errorf("body %q, %v", body, err)
	}
	if !strings.Contains(head, "\r\nTrailer: X-Sum\r\n") || !strings.Contains(head, "Transfer-Encoding: chunked") {
		t.Errorf("head %q: want chunked, announcing X-Sum only", head)
	}
	want := http.Header{"X-Sum": {"42"}, "Server-Timing": {"db;dur=1"}}
	if fmt.Sprint(resp.Trailer) != fmt.Sprint(want) {
		t.Errorf("trailers %v, want %v", resp.Trailer, want)
	}
}

// A request with a body whose client sends it and leaves while the handler
// waits (in the proxy's queue) has its context canceled, as one without a
// body does: the watch reads ahead instead of waiting for the body to be
// read. Beyond the read-ahead, the kernel tells (on Linux).
func TestClientWithBodyGoneCancelsContext(t *testing.T) {
	for _, tc := range []struct{ name, req string }{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"beyond the read-ahead", fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 40<<10, strings.Repeat("b", 40<<10))},
		{"expect 100-continue", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"},
		{"body not sent yet", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ended := make(chan error, 1)
			s := start(t, func(w http.ResponseWriter, r *http.Request) {
				w.(interface{ WatchClient() }).WatchClient()
				select {
				case <-r.Context().Done():
					ended <- r.Context().Err()
				case <-time.After(waitLimit):
					ended <- errors.New("context not canceled")
				}
			}, func(s *h1.Server) { s.WatchAfter = time.Hour })
			c := dial(t, s.addr)
			c.send(t, tc.req)
			c.Close()
			if err := <-ended; !errors.Is(err, context.Canceled) {
				t.Errorf("context: %v, want canceled", err)
			}
		})
	}
}

// The read-ahead takes nothing from the handler: a body sent while the
// handler waits, larger than the read-ahead, arrives whole, and the
// pipelined request after it too. The context stays alive.
func TestReadAheadKeepsTheBody(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 12<<10) // 192 KiB
	waiting := make(chan struct{}, 2)
	proceed := make(chan struct{})
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			w.(interface{ WatchClient() }).WatchClient()
			waiting <- struct{}{}
			select {
			case <-proceed:
			case <-r.Context().Done():
				t.Errorf("context canceled: %v", r.Context().Err())
			}
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s: reading the body: %v", r.URL.Path, err)
		}
		fmt.Fprintf(w, "%s %d %t", r.URL.Path, len(b), string(b) == big || len(b) == 0)
	}, func(s *h1.Server) { s.WatchAfter = time.Hour })
	c := dial(t, s.addr)
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, fmt.Sprintf("POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%sGET /next HTTP/1.1\r\nHost: x\r\n\r\n", len(big), big))
		wrote <- err
	}()
	<-waiting
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	close(proceed)
	for _, want := range []string{fmt.Sprintf("/wait %d true", len(big)), "/next 0 true"} {
		if _, body := c.response(t, "POST"); body != want {
			t.Errorf("body %q, want %q", body, want)
		}
	}
}

// A refused client that is still sending is read from for a moment after
// the refusal (drainBeforeClose), not reset: a reset can destroy the
// answer before the client reads it, and fails the client's writes.
func TestRefusalDrainsBeforeClose(t *testing.T) {
	s := start(t, func(w http.ResponseWriter, r *http.Request) {})
	c := dial(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("a:\r\n", 300)+"\r\n")
	resp, _ := c.response(t, "GET")
	if resp.StatusCode != 431 {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	// What the client had in flight: without the drain the server's close
	// with these bytes unread resets the connection, and a write fails.
	chunk := strings.Repeat("x", 64<<10)
	for i := range 16 {
		if _, err := io.WriteString(c, chunk); err != nil {
			t.Fatalf("write %d after the refusal: %v", i, err)
		}
	}
	if !c.closed(t) {
		t.Error("connection kept")
	}
}
