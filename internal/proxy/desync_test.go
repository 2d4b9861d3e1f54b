package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
)

// TestUnsolicitedResponseNeverReachesAClient is issue 26's desync, end to
// end: an origin answers GET /poison on a keep-alive connection and then
// writes a whole response nobody asked for (or answers a HEAD and then
// sends a "body" that is a response). Each later client, on a connection
// of its own to the proxy (raw sockets, as curl would), must get the
// answer to its own request: before the fix the second client got
// "resp-to-UNSOLICITED" and the third the second's.
func TestUnsolicitedResponseNeverReachesAClient(t *testing.T) {
	const unsolicited = "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nresp-to-UNSOLICITED"
	tagged := func(path string) string {
		body := "resp-to-" + path
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	for _, first := range []struct{ method, path, reply string }{
		{"GET", "/poison", tagged("/poison")},
		{"HEAD", "/head", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(unsolicited))},
	} {
		t.Run(first.method, func(t *testing.T) {
			e := newEnv(t)
			answered := make(chan struct{})
			wrote := make(chan struct{})
			var conns atomic.Int32
			addr := e.tcpServer(func(c net.Conn) {
				nth := conns.Add(1)
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if nth == 1 && i == 0 {
						io.WriteString(c, first.reply)
						<-answered // the client has its response
						io.WriteString(c, unsolicited)
						close(wrote)
						continue
					}
					io.WriteString(c, tagged(req.URL.Path))
				}
			})
			res := e.raw(first.method + " http://" + addr + first.path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
			wantStatus(t, res, 200)
			close(answered)
			recv(t, wrote, "the unsolicited response written")
			for _, path := range []string{"/two", "/three"} {
				res := e.raw("GET http://" + addr + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
				wantStatus(t, res, 200)
				if want := "resp-to-" + path; res.body != want {
					t.Fatalf("GET %s: body %q, want %q: another request's response", path, res.body, want)
				}
			}
			if n := e.fwd.UnsolicitedResponses(); n != 1 {
				t.Errorf("UnsolicitedResponses() = %d, want 1", n)
			}
		})
	}
}
