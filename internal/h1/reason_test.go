package h1_test

import (
	"net/http"
	"strings"
	"testing"
)

// A handler's SetReason is the final status line's reason phrase; bytes a
// reason-phrase may not carry (RFC 9112 §4) never reach the wire, an
// interim response keeps its standard text, and the next response on the
// connection has its own.
func TestSetReason(t *testing.T) {
	t.Parallel()
	type reasoner interface{ SetReason(string) }
	s := start(t, func(w http.ResponseWriter, r *http.Request) {
		rs, ok := w.(reasoner)
		if !ok {
			t.Error("the ResponseWriter has no SetReason")
			return
		}
		switch r.URL.Path {
		case "/plain":
			rs.SetReason("queue full (see limits.queue_size)")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/dirty":
			rs.SetReason("a\r\nInjected: yes\x00\tcafé")
			w.WriteHeader(http.StatusBadGateway)
		case "/interim":
			rs.SetReason("my reason")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
		case "/late":
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			rs.SetReason("too late") // the status line is out
		}
	})
	c := dial(t, s.addr)
	for _, tc := range []struct{ path, want string }{
		{"/plain", "HTTP/1.1 503 queue full (see limits.queue_size)\r\n"},
		{"/dirty", "HTTP/1.1 502 a??Injected: yes?\tcaf??\r\n"},
		{"/interim", "HTTP/1.1 103 Early Hints\r\n"},
		{"/late", "HTTP/1.1 418 I'm a teapot\r\n"},
		{"/plain", "HTTP/1.1 503 queue full (see limits.queue_size)\r\n"},
	} {
		c.send(t, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		head := c.head(t)
		if line, _, _ := strings.Cut(head, "\n"); line+"\n" != tc.want {
			t.Errorf("%s: status line %q, want %q", tc.path, line+"\n", tc.want)
		}
		if strings.Contains(head, "\nInjected") {
			t.Errorf("%s: a CR LF in the reason became a header field: %q", tc.path, head)
		}
		switch tc.path {
		case "/interim":
			final := c.head(t)
			if !strings.HasPrefix(final, "HTTP/1.1 200 my reason\r\n") {
				t.Errorf("final response after 103: %q, want the reason set", final)
			}
		case "/late":
			// chunked body "x": read through the last chunk
			for {
				line, err := c.br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "0\r\n" {
					_, _ = c.br.ReadString('\n')
					break
				}
			}
		}
	}
}
