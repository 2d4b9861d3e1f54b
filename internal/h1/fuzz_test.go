package h1_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// FuzzResponseFraming drives the response writer with arbitrary sequences
// of writes and flushes, with or without a declared Content-Length and
// trailers, for GET and HEAD over HTTP/1.1 and HTTP/1.0, and checks that
// net/http's client parser reads back exactly what the handler wrote, and
// that a kept connection carries a second request (the framing ended
// where it should). Trailers reach a client only in a chunked body: not
// with a declared Content-Length, not to HEAD, not over HTTP/1.0 (as with
// net/http).
//
//	go test -run=^$ -fuzz=FuzzResponseFraming -fuzztime=60s ./internal/h1
func FuzzResponseFraming(f *testing.F) {
	f.Add([]byte{3, 0, 200, 1, 10}, false, false, false, false)
	f.Add([]byte{255, 255, 255, 1, 255, 0}, true, false, false, false)
	f.Add([]byte{10, 1, 20}, false, true, false, false)
	f.Add([]byte{0}, false, false, true, false)
	f.Add([]byte{50, 50}, false, false, false, true)
	f.Add([]byte{}, true, true, true, true)

	// The handler's script travels in the request's query.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := newFuzzServer()
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	f.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	f.Fuzz(func(t *testing.T, script []byte, declare, trailer, head, http10 bool) {
		if len(script) > 64 {
			script = script[:64]
		}
		want := expectedBody(script)
		method, proto := "GET", "HTTP/1.1"
		if head {
			method = "HEAD"
		}
		if http10 {
			proto = "HTTP/1.0"
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitLimit))
		br := bufio.NewReader(c)
		q := fmt.Sprintf("/?s=%x&d=%t&t=%t", script, declare, trailer)
		req := fmt.Sprintf("%s %s %s\r\nHost: x\r\n", method, q, proto)
		if http10 {
			req += "Connection: keep-alive\r\n"
		}
		for round := range 2 {
			if _, err := io.WriteString(c, req+"\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("round %d: reading the response: %v", round, err)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("round %d: reading the body: %v", round, err)
			}
			if head {
				want = nil
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d: body of %d bytes, want %d", round, len(got), len(want))
			}
			if trailer && !declare && !head && !http10 && resp.Trailer.Get("X-Check") != strconv.Itoa(len(want)) {
				t.Fatalf("round %d: trailer %v, want X-Check: %d", round, resp.Trailer, len(want))
			}
			if resp.Close {
				return // framed by the close: nothing more on this connection
			}
		}
	})
}

// expectedBody is what the script writes: each byte b is a write of b*37
// bytes (b == 1 flushes instead).
func expectedBody(script []byte) []byte {
	var out []byte
	for i, b := range script {
		if b == 1 {
			continue
		}
		out = append(out, bytes.Repeat([]byte{byte('a' + i%26)}, int(b)*37)...)
	}
	return out
}

func newFuzzServer() *h1.Server {
	return &h1.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var script []byte
		fmt.Sscanf(q.Get("s"), "%x", &script) //nolint:errcheck // an empty script is fine
		body := expectedBody(script)
		if q.Get("d") == "true" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		if q.Get("t") == "true" {
			w.Header().Set("Trailer", "X-Check")
		}
		for i, b := range script {
			if b == 1 {
				w.(http.Flusher).Flush()
				continue
			}
			w.Write(bytes.Repeat([]byte{byte('a' + i%26)}, int(b)*37)) //nolint:errcheck // checked by the client
		}
		if q.Get("t") == "true" {
			w.Header().Set("X-Check", strconv.Itoa(len(body)))
		}
	})}
}
