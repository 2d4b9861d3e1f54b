package proxy_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/outcome"
)

// A request with a body whose client leaves while it waits in the queue is
// taken out at once and never forwarded, like one without (issue 26): the
// body was sent whole, then the connection closed. Bodies small enough for
// the server's read-ahead are seen leaving at once; larger ones, that TCP
// still holds, by the peer check (see internal/h1/doc.go).
func TestClientWithBodyLeavesWhileWaiting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body func(host string) string // the request after the request line
	}{
		{"content-length", func(host string) string {
			return "Content-Length: 5\r\n\r\nhello"
		}},
		{"chunked", func(host string) string {
			return "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
		}},
		{"beyond the read-ahead", func(host string) string {
			n := 40 << 10 // more than the 4 KiB reader plus the 16 KiB read-ahead
			return fmt.Sprintf("Content-Length: %d\r\n\r\n%s", n, strings.Repeat("b", n))
		}},
		{"expect 100-continue", func(host string) string {
			// The client waits for "100 Continue" (never sent while the request
			// waits), then gives up.
			return "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The server's timed watch never starts here: only the handler's
			// WatchClient, when the request has to wait, does.
			e := newEnv(t, full(10), func(s *setup) { s.watchAfter = time.Hour })
			o := e.newOrigin(nil)
			holdID, held := o.hold("")

			c, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			host := o.Listener.Addr().String()
			if _, err := io.WriteString(c, "POST http://"+host+"/gone HTTP/1.1\r\nHost: "+host+"\r\nX-Request-Id: gone\r\n"+tc.body(host)); err != nil {
				t.Fatal(err)
			}
			e.waitDepth(1)
			c.Close()
			// proxyd's own account: out of the queue, canceled.
			e.wantRecord("gone", outcome.Canceled, outcome.StatusClientClosed)
			e.waitDepth(0)

			o.release()
			wantStatus(t, recv(t, held, "the held response"), 200)
			next, _ := e.get(o.URL + "/next")
			wantStatus(t, next, 200)
			o.never("/gone")
			e.wantRecord(holdID, outcome.Forwarded, 200)
		})
	}
}
