//go:build unix

package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/outcome"
)

// smallSendBuffers gives the proxy's accepted connections a small send
// buffer, so that a slow client holds the proxy's writes up at once.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10) // the kernel's minimum applies
	}
	return c, err
}

// dialSmallWindow dials addr with a 4 KiB receive buffer, set before the
// connection opens (the window a client advertises can only shrink from
// there).
func dialSmallWindow(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	return c
}

// paced reads at most n bytes per tick.
type paced struct {
	r    io.Reader
	tick <-chan time.Time
	n    int
}

func (p *paced) Read(b []byte) (int, error) {
	<-p.tick
	return p.r.Read(b[:min(len(b), p.n)])
}

// A client that reads slowly but steadily (4 KiB every third of
// client_write_timeout, so that each 32 KiB the proxy writes takes it
// several timeouts) gets the whole body: progress renews the deadline.
func TestClientWriteTimeoutSparesSlowReader(t *testing.T) {
	t.Parallel()
	const (
		timeout = 300 * time.Millisecond
		size    = 64 << 10
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(s *setup) {
		s.cfg.ClientWriteTimeout = timeout
		s.ln = smallSendBuffers{ln}
	})
	o := e.newOrigin(bigAt("/big", size))
	c := dialSmallWindow(t, e.addr)
	if _, err := fmt.Fprintf(c, "GET %s/big HTTP/1.1\r\nHost: %s\r\nX-Request-Id: slow\r\n\r\n", o.URL, strings.TrimPrefix(o.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(timeout / 3)
	defer tick.Stop()
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(&paced{r: c, tick: tick.C, n: 4 << 10}), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("client read %d bytes (%v), want %d", n, err, size)
	}
	if took := time.Since(start); took < 3*timeout {
		t.Errorf("the body took %v to read: too fast to test the timeout", took)
	}
	if r := e.wantRecord("slow", outcome.Forwarded, http.StatusOK); r.ClientWriteTimeout || r.Err != nil || r.Bytes != size {
		t.Errorf("Record: ClientWriteTimeout %v, Err %v, %d bytes; want the whole body, no error", r.ClientWriteTimeout, r.Err, r.Bytes)
	}
}
