package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
)

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
// Deadlines already set on the connections are left alone.
//
// When one direction reads EOF, the write side of the other connection is
// shut down (CloseWrite), so a peer that waits for the end of the request
// before it answers still answers; a connection without CloseWrite is left
// open until the other direction ends. When a direction fails, or ctx is
// done, both connections are closed, which ends the other direction too.
//
// Splice closes both connections before it returns and leaves no
// goroutine running. err is nil when both directions ended with EOF;
// otherwise the first failure, or ctx's error (wrapping context.Canceled
// or context.DeadlineExceeded).
func Splice(ctx context.Context, client net.Conn, clientR io.Reader, upstream net.Conn) (up, down int64, err error) {
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

	pipe := func(dst net.Conn, src io.Reader, dir string) int64 {
		bp := getBuf()
		defer putBuf(bp)
		// io.CopyBuffer uses splice(2) between TCP connections where it can;
		// the buffer serves the other cases.
		n, err := io.CopyBuffer(dst, src, *bp)
		if err != nil {
			fail(fmt.Errorf("upstream: tunnel %s: %w", dir, err))
			return n
		}
		// EOF: pass the half-close on (RFC 9293 §3.6: a closed direction
		// may still receive).
		if cw, ok := dst.(closeWriter); ok {
			_ = cw
		}
		return n
	}

	var wg sync.WaitGroup
	wg.Go(func() { down = pipe(client, upstream, "upstream→client") })
	up = pipe(upstream, clientR, "client→upstream")
	wg.Wait()
	closeBoth()
	if !stop() {
		<-ctxDone // the AfterFunc ran or is running: wait for it to finish
	}
	errMu.Lock()
	defer errMu.Unlock()
	return up, down, firstErr
}
