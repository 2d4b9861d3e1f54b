package h1_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// stallTimeout sets the server's WriteStallTimeout to d (start option).
func stallTimeout(d time.Duration) func(*h1.Server) {
	return func(s *h1.Server) { s.WriteStallTimeout = func() time.Duration { return d } }
}

// bigBody answers n bytes, written 32 KiB at a time (as the proxy copies a
// body), and sends the first write error, or nil, on done.
func bigBody(n int, done chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(n))
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				done <- err
				return
			}
			n -= k
		}
		done <- nil
	}
}

func recvErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// A client that asks for a body larger than the socket buffers and reads
// nothing: the handler's write fails with ErrWriteTimeout once the
// response has made no progress for the timeout (not before), and the
// connection is reset.
func TestWriteStallTimeoutCutsClientThatDoesNotRead(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	done := make(chan error, 1)
	s := start(t, bigBody(64<<20, done), stallTimeout(timeout))
	c := dial(t, s.addr)
	sent := time.Now()
	c.send(t, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	err := recvErr(t, done, "the handler's write to fail")
	if !errors.Is(err, h1.ErrWriteTimeout) {
		t.Fatalf("handler's write: %v, want ErrWriteTimeout", err)
	}
	if took := time.Since(sent); took < timeout {
		t.Errorf("cut after %v, before the %v timeout", took, timeout)
	}
	// Reset, not closed: the client sees ECONNRESET, never the end of a
	// body (what it has not read is dropped).
	_, err = io.Copy(io.Discard, c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read: %v, want ECONNRESET", err)
	}
}

// WriteStallTimeout answering 0 means no bound: the same handler stays
// blocked until the client goes away.
func TestWriteStallTimeoutZeroIsUnbounded(t *testing.T) {
	t.Parallel()
	done := make(chan error, 1)
	s := start(t, bigBody(64<<20, done), stallTimeout(0))
	c := dial(t, s.addr)
	c.send(t, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-done:
		t.Fatalf("handler returned (%v) while its client was still connected", err)
	case <-time.After(time.Second): // five times the timeout of the test above
	}
	c.Close()
	if err := recvErr(t, done, "the handler's write to fail"); err == nil || errors.Is(err, h1.ErrWriteTimeout) {
		t.Fatalf("handler's write after the client left: %v, want a connection error", err)
	}
}
