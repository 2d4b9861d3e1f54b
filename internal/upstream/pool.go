package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The Forwarder's HTTP/1.1 client for the common case: a plain-http
// request without a body. It writes the request and reads the response on
// the caller's goroutine, over a pool of keep-alive connections, with
// net/http's own wire code (Request.Write, http.ReadResponse). That saves
// what http.Transport spends on its two goroutines per connection and the
// hand-offs between them; requests with a body (whose response may come
// before the body is sent) and https requests go through the Transport.

// idleConnTimeout is how long a pooled connection may stay unused (as
// the Transport's IdleConnTimeout).
const idleConnTimeout = 90 * time.Second

// maxResponseHeaderBytes bounds what is read of a response before its
// body, interim (1xx) responses included: http.Transport's default
// MaxResponseHeaderBytes. Without it an upstream could make us buffer an
// endless header line.
const maxResponseHeaderBytes = 10 << 20

// connPool holds idle keep-alive connections per "host:port", most
// recently used last.
type connPool struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	dialTimeout time.Duration
	maxPerHost  int
	maxIdle     int
	idleTimeout time.Duration // idleConnTimeout; tests shorten it

	// unsolicited counts the idle connections closed because the
	// upstream sent bytes on them that no request asked for.
	unsolicited atomic.Uint64

	mu    sync.Mutex
	idle  map[string][]*pconn
	nidle int
	sweep *time.Timer // armed while connections are idle
}

// pconn is one upstream connection.
type pconn struct {
	pool      *connPool
	key       string
	conn      net.Conn
	lr        io.LimitedReader // conn; limited while headers are read
	br        *bufio.Reader    // reads lr
	bw        *bufio.Writer
	idleSince time.Time
	reused    bool
	peek      *peeker // tells whether it is safe to reuse; nil: it cannot
}

// connState is what an idle connection's socket holds (peeker.idle).
type connState uint8

const (
	connUnknown connState = iota // cannot be looked at: never reused
	connIdle                     // nothing: reusable
	connUnread                   // bytes no request asked for
	connGone                     // end of stream or an error
)

// get returns an idle connection to key, or dials one. An idle connection
// is reused only when its socket holds nothing: a byte that arrived while
// no request was outstanding on it (an unsolicited response, the late body
// of a HEAD or 204) would be read as the answer to the next request, and
// one client would get another's response. Such a connection, or one the
// upstream closed, is closed here and the next one tried, as
// http.Transport's read loop closes a connection that receives anything
// while idle.
func (p *connPool) get(ctx context.Context, key string, deadline time.Time) (*pconn, error) {
	for {
		p.mu.Lock()
		l := p.idle[key]
		if len(l) == 0 {
			p.mu.Unlock()
			break
		}
		pc := l[len(l)-1]
		l[len(l)-1] = nil
		p.idle[key] = l[:len(l)-1]
		p.nidle--
		p.mu.Unlock()
		if st := pc.peek.idle(); st != connIdle {
			pc.conn.Close()
			if st == connUnread {
				p.unsolicited.Add(1)
			}
			continue
		}
		pc.reused = true
		return pc, nil
	}
	dctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	if !deadline.IsZero() {
		var c2 context.CancelFunc
		dctx, c2 = context.WithDeadline(dctx, deadline)
		defer c2()
	}
	conn, err := p.dial(dctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	pc := &pconn{pool: p, key: key, conn: conn, lr: io.LimitedReader{R: conn, N: math.MaxInt64}, bw: bufio.NewWriterSize(conn, 4<<10)}
	pc.peek = newPeeker(conn)
	pc.br = bufio.NewReaderSize(&pc.lr, 4<<10)
	return pc, nil
}

// put pools pc for reuse, or closes it when the pool is full.
func (p *connPool) put(pc *pconn) {
	pc.idleSince = time.Now()
	if pc.peek == nil {
		pc.conn.Close() // get could not tell whether it is safe to reuse
		return
	}
	p.mu.Lock()
	if len(p.idle[pc.key]) >= p.maxPerHost || p.nidle >= p.maxIdle {
		p.mu.Unlock()
		pc.conn.Close()
		return
	}
	if p.idle == nil {
		p.idle = make(map[string][]*pconn)
	}
	p.idle[pc.key] = append(p.idle[pc.key], pc)
	p.nidle++
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.idleTimeout, p.closeStale)
	}
	p.mu.Unlock()
}

// closeStale closes the connections idle for longer than idleTimeout,
// or that received something while idle (get would close those anyway;
// this closes them sooner), and re-arms itself while any stay.
func (p *connPool) closeStale() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := time.Now().Add(-p.idleTimeout)
	next := time.Duration(0)
	for key, l := range p.idle {
		keep := l[:0]
		for _, pc := range l {
			st := pc.peek.idle()
			if pc.idleSince.Before(cutoff) || st != connIdle {
				pc.conn.Close()
				p.nidle--
				if st == connUnread {
					p.unsolicited.Add(1)
				}
				continue
			}
			keep = append(keep, pc)
			if wait := pc.idleSince.Sub(cutoff); next == 0 || wait < next {
				next = wait
			}
		}
		clear(l[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = keep
		}
	}
	if p.nidle == 0 {
		p.sweep = nil
		return
	}
	p.sweep.Reset(max(next, p.idleTimeout/16))
}

// close closes the idle connections; the pool stays usable.
func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, l := range p.idle {
		for _, pc := range l {
			pc.conn.Close()
		}
		delete(p.idle, key)
	}
	p.nidle = 0
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
}

// fastPath reports whether out can go through the pooled HTTP/1.1 client:
// a plain-http request without a body that may be sent twice. The pool
// learns that the upstream closed an idle connection only when it next
// uses it, and then sends the request again on a new one; the Transport
// watches its idle connections, so the requests that must not be sent
// twice (a bodiless POST, say) go through it.
func fastPath(out *http.Request) bool {
	return out.URL.Scheme == "http" && out.URL.Host != "" && (out.Body == nil || out.Body == http.NoBody) &&
		out.ContentLength == 0 && replayable(out)
}

// roundTripH1 is RoundTrip's fast path (see fastPath). Errors are
// classified as RoundTrip's.
func (f *Forwarder) roundTripH1(out *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	parent := out.Context()
	var deadline time.Time
	if headerTimeout > 0 {
		deadline = time.Now().Add(headerTimeout)
	}
	key := canonicalAddr(out)
	for {
		pc, err := f.pool.get(parent, key, deadline)
		if err != nil {
			err = causeOf(parent, err)
			timedOut := !deadline.IsZero() && !time.Now().Before(deadline)
			return nil, classify(parent, err, timedOut, false, headerTimeout)
		}
		resp, err := pc.roundTrip(out, deadline)
		if err == nil {
			RemoveHopByHop(resp.Header)
			return resp, nil
		}
		// A pooled connection the upstream closed while it was idle: try
		// a new one, as http.Transport does, if sending twice is harmless.
		if pc.reused && closedIdle(err) && replayable(out) && parent.Err() == nil {
			continue
		}
		timedOut := !deadline.IsZero() && !time.Now().Before(deadline) && errors.Is(err, os.ErrDeadlineExceeded)
		return nil, classify(parent, causeOf(parent, err), timedOut, true, headerTimeout)
	}
}

// causeOf is err, or the reason ctx ended when it has: an I/O error that
// the cancellation caused says nothing more.
func causeOf(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// canonicalAddr is the "host:port" a request goes to.
func canonicalAddr(out *http.Request) string {
	if out.URL.Port() != "" {
		return out.URL.Host
	}
	return net.JoinHostPort(out.URL.Hostname(), "80")
}

// closedIdle reports whether err looks like the upstream having closed the
// connection before this request reached it.
func closedIdle(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// replayable is http.Transport's rule for resending a request on a new
// connection: a bodiless request with a safe method, or one that carries
// an idempotency key.
func replayable(out *http.Request) bool {
	switch out.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := out.Header["Idempotency-Key"]
	_, b := out.Header["X-Idempotency-Key"]
	return a || b
}

// roundTrip writes out and reads the response header. The response body
// gives the connection back to the pool when read to its end.
func (pc *pconn) roundTrip(out *http.Request, deadline time.Time) (*http.Response, error) {
	ctx := out.Context()
	// The header deadline first: set after the cancellation hook below, it
	// would overwrite the past deadline of a cancellation that came in
	// between, which would then wait for the header timeout.
	if !deadline.IsZero() {
		if err := pc.conn.SetDeadline(deadline); err != nil {
			pc.conn.Close()
			return nil, err
		}
	}
	// Cancellation (the client went away) aborts any read or write.
	stop := context.AfterFunc(ctx, func() { pc.conn.SetDeadline(aLongTimeAgo) }) //nolint:errcheck // best effort
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.conn.Close()
		return nil, err
	}
	if err := writeRequestHead(pc.bw, out); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	var resp *http.Response
	pc.lr.N = maxResponseHeaderBytes
	for {
		var err error
		resp, err = http.ReadResponse(pc.br, out)
		if err != nil {
			if pc.lr.N <= 0 {
				err = fmt.Errorf("upstream: response headers exceed %d bytes", maxResponseHeaderBytes)
			}
			return fail(err)
		}
		// Interim responses (100 Continue, 103 Early Hints) are not
		// forwarded, as with http.Transport; 101 is final.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	pc.lr.N = math.MaxInt64 // the body is not limited
	if !deadline.IsZero() {
		if err := pc.conn.SetDeadline(time.Time{}); err != nil {
			return fail(err)
		}
	}
	// A cancellation that came while the deadline was being cleared would
	// be lost: look again.
	if err := ctx.Err(); err != nil {
		resp.Body.Close()
		return fail(err)
	}
	// After a 101 the connection speaks another protocol (or the upstream
	// is confused: we never ask for an upgrade): never reuse it.
	reuse := !resp.Close && !out.Close && resp.StatusCode != http.StatusSwitchingProtocols
	b := &pooledBody{pc: pc, rc: resp.Body, stop: stop, reuse: reuse, ctx: ctx}
	resp.Body = b
	if b.rc == http.NoBody {
		b.release(true)
	}
	return resp, nil
}

var aLongTimeAgo = time.Unix(1, 0)

// pooledBody is a response body that returns its connection to the pool
// once read to its end, and closes it when abandoned before. Unlike the
// Transport's, it must be read and closed from one goroutine at a time
// (CopyResponse does both on the handler's).
type pooledBody struct {
	pc    *pconn
	rc    io.ReadCloser
	stop  func() bool
	reuse bool
	done  bool
	err   error // what Read returns once done
	ctx   context.Context
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.done {
		// The connection may serve another request by now.
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.release(true)
	case err != nil:
		if ctx := b.ctx; ctx.Err() != nil {
			// Cut by the cancellation (the client went away).
			err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		b.release(false)
		b.err = err
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if !b.done {
		b.release(false)
	}
	return nil
}

func (b *pooledBody) release(eof bool) {
	if b.done {
		return
	}
	b.done = true
	b.err = io.EOF
	if !eof {
		b.err = errors.New("upstream: read on a closed response body")
	}
	// stop is false once the cancellation ran: the deadline is spoiled.
	if b.stop() && eof && b.reuse && b.pc.br.Buffered() == 0 {
		b.pc.pool.put(b.pc)
		return
	}
	b.pc.conn.Close()
}
