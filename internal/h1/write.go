package h1

import (
	"errors"
	"net"
	"os"
	"time"
)

// ErrWriteTimeout is wrapped by the error of a write to a client that
// made no progress for Server.WriteStallTimeout: the client does not read
// its response. The response is cut: the connection is reset after the
// handler returns.
var ErrWriteTimeout = errors.New("client write timeout")

// writeTimeoutError is the error of a write that timed out: it wraps
// ErrWriteTimeout and the connection's own error.
type writeTimeoutError struct {
	timeout time.Duration
	err     error
}

func (e *writeTimeoutError) Error() string {
	return "client write timeout: the client read nothing for " + e.timeout.String() + ": " + e.err.Error()
}

func (e *writeTimeoutError) Unwrap() []error { return []error{ErrWriteTimeout, e.err} }

// clientWriter is what a connection's bufio.Writer writes to: every byte
// for the client goes through it (responses, interim responses, the
// server's own rejections). With a WriteStallTimeout d it bounds how long
// a write may make no progress.
//
// Setting a deadline on every write would cost a call into the runtime's
// poller per write, so the deadline is only moved when it is nearer than
// d (or farther than 1.25·d, after a reload lowered d): it is set to
// now + 1.25·d, which leaves every write at least d and the poller at most
// one update per d/4 of writing. A write that times out having written
// something made progress: it gets a fresh deadline (now + d) and goes on;
// one that wrote nothing since its deadline was set fails with
// ErrWriteTimeout. So a client that reads nothing at all is cut between d
// and 2.25·d after its last read, and one that keeps reading, however
// slowly, never is. (x/net/http2's WriteByteTimeout works the same way.)
// Over TLS a write that timed out cannot be resumed (crypto/tls makes the
// error permanent), so there a write that does not finish within its
// deadline ends the response even if it made some progress.
//
// Only the connection's goroutine writes, so the fields need no lock; a
// hijacked connection is the caller's and is left alone.
type clientWriter struct {
	c        *conn
	deadline time.Time // the write deadline set on c.rwc; zero: none
}

func (w *clientWriter) Write(p []byte) (int, error) {
	c := w.c
	if c.state.Load() == stateHijacked {
		return c.rwc.Write(p)
	}
	var d time.Duration
	if f := c.srv.WriteStallTimeout; f != nil {
		d = f()
	}
	if d <= 0 {
		if !w.deadline.IsZero() {
			w.setDeadline(time.Time{}) // turned off while serving (a reload)
		}
		return c.rwc.Write(p)
	}
	now := time.Now()
	if left := w.deadline.Sub(now); left < d || left > d+d/4 {
		w.setDeadline(now.Add(d + d/4))
	}
	var n int
	for {
		m, err := c.rwc.Write(p[n:])
		n += m
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if m == 0 {
			w.reset()
			return n, &writeTimeoutError{timeout: d, err: err}
		}
		// The client read something since the deadline was set.
		w.setDeadline(time.Now().Add(d))
	}
}

func (w *clientWriter) setDeadline(t time.Time) {
	w.deadline = t
	w.c.rwc.SetWriteDeadline(t) //nolint:errcheck // a conn without deadlines has no bound
}

// reset makes closing the connection reset it (RST): the kernel then
// drops what it still holds for a client that does not read, at once,
// instead of trying to deliver it for minutes after the close.
func (w *clientWriter) reset() {
	nc := w.c.rwc
	if t, ok := nc.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		nc = t.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0) //nolint:errcheck // best effort
	}
}
