package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// HalfCloseTimeout is how long Splice keeps a tunnel open with one
// direction ended when the other direction carries nothing.
const HalfCloseTimeout = time.Second

// closeWriter is a connection whose write side can be shut down alone
// (*net.TCPConn, *net.UnixConn, *tls.Conn).
type closeWriter interface{ CloseWrite() error }

// Splice copies bytes both ways between client and upstream until both
// directions have ended or ctx is done, and returns the bytes copied
// client→upstream (up) and upstream→client (down).
//
// Reads from the client go through clientR, so that bytes a server already
// buffered before Hijack (the bufio.Reader of the hijacked ReadWriter) are
// not lost; nil means client itself. Writes go to client directly: flush
// the hijacked bufio.Writer (the "200 Connection established") first.
//
// When one direction reads EOF, the write side of the other connection is
// shut down (CloseWrite, where the connection has it), so a peer that waits
// for the end of the request before it answers still answers. The other
// direction then goes on for as long as it carries data, but once it has
// carried nothing for HalfCloseTimeout the tunnel ends: RFC 9110 §9.3.6
// wants a tunnel closed once either side has closed, and a peer that never
// closes its half would otherwise hold the tunnel (and its max_tunnels
// slot) forever. Read deadlines set on the connections are overwritten
// from then on.
//
// When a direction fails, or ctx is done, both connections are closed,
// which ends the other direction too.
//
// Splice closes both connections before it returns and leaves no
// goroutine running. err is nil when both directions ended (by EOF, or
// idle after the other's EOF); otherwise the first failure, or ctx's error
// (wrapping context.Canceled or context.DeadlineExceeded).
func Splice(ctx context.Context, client net.Conn, clientR io.Reader, upstream net.Conn) (up, down int64, err error) {
	return splice(ctx, client, clientR, upstream, HalfCloseTimeout)
}

// splice is Splice with the half-close timeout as an argument, for tests.
func splice(ctx context.Context, client net.Conn, clientR io.Reader, upstream net.Conn, halfClose time.Duration) (up, down int64, err error) {
	if clientR == nil {
		clientR = client
	}

	var (
		closeOnce sync.Once
		errMu     sync.Mutex
		firstErr  error
	)
	closeBoth := func() {
		closeOnce.Do(func() {
			client.Close()
			upstream.Close()
		})
	}
	// fail records the first error and closes both sides; errors after that
	// are the echo of our own Close and are dropped.
	fail := func(e error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = e
		}
		errMu.Unlock()
		closeBoth()
	}

	ctxDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(ctxDone)
		err := ctx.Err()
		if cause := context.Cause(ctx); cause != err {
			err = fmt.Errorf("%w: %w", err, cause)
		}
		fail(fmt.Errorf("upstream: tunnel: %w", err))
	})

	// One direction: src → dst. srcConn is the connection under src, whose
	// read deadline paces the lingering phase; lingering is set by the
	// other direction once it has read EOF.
	type direction struct {
		name      string
		dst       net.Conn
		src       io.Reader
		srcConn   net.Conn
		lingering atomic.Bool
	}
	toUp := &direction{name: "client→upstream", dst: upstream, src: clientR, srcConn: client}
	toClient := &direction{name: "upstream→client", dst: client, src: upstream, srcConn: upstream}

	pipe := func(d, other *direction) int64 {
		bp := getBuf()
		defer putBuf(bp)
		var total int64
		window := false // a lingering window (deadline) is open
		for {
			// io.CopyBuffer uses splice(2) between TCP connections where
			// it can; the buffer serves the other cases.
			n, err := io.CopyBuffer(d.dst, d.src, *bp)
			total += n
			switch {
			case err == nil: // EOF
				// Pass the half-close on (RFC 9293 §3.6: a closed
				// direction may still receive), then start the other
				// direction's lingering: interrupt its read at once so it
				// goes on under deadlines.
				if cw, ok := d.dst.(closeWriter); ok {
					cw.CloseWrite()
				}
				other.lingering.Store(true)
				other.srcConn.SetReadDeadline(time.Now())
				return total
			case d.lingering.Load() && errors.Is(err, os.ErrDeadlineExceeded):
				// A read that times out has moved no data, so nothing is
				// lost here. The first timeout is the interrupt; after
				// that, a whole window without data ends the direction.
				if window && n == 0 {
					return total
				}
				window = true
				d.srcConn.SetReadDeadline(time.Now().Add(halfClose))
			default:
				fail(fmt.Errorf("upstream: tunnel %s: %w", d.name, err))
				return total
			}
		}
	}

	var wg sync.WaitGroup
	wg.Go(func() { down = pipe(toClient, toUp) })
	up = pipe(toUp, toClient)
	wg.Wait()
	closeBoth()
	if !stop() {
		<-ctxDone // the AfterFunc ran or is running: wait for it to finish
	}
	errMu.Lock()
	defer errMu.Unlock()
	return up, down, firstErr
}
