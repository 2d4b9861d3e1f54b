//go:build unix

package h1_test

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// dialSmallWindow is dial with a 4 KiB receive buffer, set before the
// connection opens (the window a client advertises can only shrink from
// there): a slow reader holds the server's writes up at once.
func dialSmallWindow(t *testing.T, addr string) *rawConn {
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
	c.SetDeadline(time.Now().Add(waitLimit))
	return &rawConn{c, bufio.NewReader(c)}
}

// smallBuffers gives accepted connections a small send buffer, so that a
// slow reader holds the server's writes up at once.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10) //nolint:errcheck // the kernel's minimum applies
	}
	return c, err
}

// paced reads at most n bytes per tick: a client that reads slowly but
// steadily.
type paced struct {
	r    io.Reader
	tick <-chan time.Time
	n    int
}

func (p *paced) Read(b []byte) (int, error) {
	<-p.tick
	return p.r.Read(b[:min(len(b), p.n)])
}

// A client that reads 4 KiB every third of the timeout is never cut, even
// though each 32 KiB write takes it several timeouts to take in: a write
// that makes progress gets a new deadline.
func TestWriteStallTimeoutSparesSlowReader(t *testing.T) {
	t.Parallel()
	const (
		timeout = 300 * time.Millisecond
		size    = 64 << 10
	)
	done := make(chan error, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &h1.Server{Handler: bigBody(size, done), ReadHeaderTimeout: waitLimit, ErrorLog: log.New(io.Discard, "", 0)}
	stallTimeout(timeout)(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(smallBuffers{ln}) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})

	c := dialSmallWindow(t, ln.Addr().String())
	c.send(t, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	tick := time.NewTicker(timeout / 3)
	defer tick.Stop()
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(&paced{r: c.Conn, tick: tick.C, n: 4 << 10}), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("client read %d bytes (%v), want %d", n, err, size)
	}
	if err := recvErr(t, done, "the handler"); err != nil {
		t.Fatalf("handler's write: %v, want none to fail", err)
	}
	// The test means something only if the body took several timeouts.
	if took := time.Since(start); took < 3*timeout {
		t.Errorf("the body took %v to read: too fast to test the timeout", took)
	}
}
