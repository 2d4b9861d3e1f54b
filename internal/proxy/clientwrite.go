package proxy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// client_write_timeout (docs/configuration.md) on the HTTP/2 streams of
// intercepted tunnels. The h1 server bounds its own writes
// (h1.Server.WriteStallTimeout); x/net/http2's server cannot: a client
// that stops reading stops granting flow-control window (RFC 9113 §5.2),
// and the handler's Write then waits for window, not for the socket, for
// ever. http2.Server's WriteByteTimeout only covers a socket that takes
// nothing (it closes the whole connection then), so it is set too, but the
// stream needs a write deadline of its own: when it passes, the server
// resets the stream and the blocked Write returns.

// h2StallWriter is the ResponseWriter of an HTTP/2 request from an
// intercepted tunnel: before a write or flush it makes sure the stream's
// write deadline is at least the timeout away, moving it (to 1.25 times
// the timeout) only when it is nearer, so that the server's goroutine is
// asked once per quarter timeout at most. A Write or Flush that fails
// once the deadline has passed fails with h1.ErrWriteTimeout, so that the
// proxy tells it from a client that reset the stream. A single Write
// that waits longer than the timeout, even while the client reads some
// of it, ends the stream too: the server cannot resume a reset stream.
type h2StallWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController // on the server's ResponseWriter
	timeout  func() time.Duration     // Handler.ClientWriteTimeout
	deadline time.Time                // the stream's write deadline; zero: none
}

var (
	_ http.Flusher                              = (*h2StallWriter)(nil)
	_ interface{ FlushError() error }           = (*h2StallWriter)(nil)
	_ interface{ Unwrap() http.ResponseWriter } = (*h2StallWriter)(nil)
)

// stallBounded wraps the ResponseWriter of an HTTP/2 request.
func stallBounded(w http.ResponseWriter, timeout func() time.Duration) *h2StallWriter {
	return &h2StallWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (w *h2StallWriter) Write(p []byte) (int, error) {
	d := w.renew()
	n, err := w.ResponseWriter.Write(p)
	return n, w.check(d, err)
}

// FlushError is what http.ResponseController.Flush calls.
func (w *h2StallWriter) FlushError() error {
	d := w.renew()
	return w.check(d, w.rc.Flush())
}

func (w *h2StallWriter) Flush() { _ = w.FlushError() }

// Unwrap gives http.ResponseController the server's ResponseWriter.
func (w *h2StallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// renew moves the stream's write deadline when needed and returns the
// timeout in force (0: none).
func (w *h2StallWriter) renew() time.Duration {
	d := w.timeout()
	if d <= 0 {
		if !w.deadline.IsZero() {
			w.deadline = time.Time{}
			_ = w.rc.SetWriteDeadline(time.Time{}) // turned off by a reload
		}
		return 0
	}
	now := time.Now()
	if left := w.deadline.Sub(now); left < d || left > d+d/4 {
		w.deadline = now.Add(d + d/4)
		_ = w.rc.SetWriteDeadline(w.deadline)
	}
	return d
}

func (w *h2StallWriter) check(d time.Duration, err error) error {
	if err == nil || d <= 0 || time.Now().Before(w.deadline) {
		return err
	}
	return fmt.Errorf("%w: a write waited on the client for over %v: %w", h1.ErrWriteTimeout, d, err)
}
