package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proxyd/proxyd/internal/headers"
)

// Defaults for a zero Server.
const (
	DefaultMaxHeaderBytes = 1 << 20
	// DefaultWatchAfter is how long a request may run before the server
	// starts watching its connection for the client going away.
	DefaultWatchAfter = 10 * time.Millisecond
	// maxPostHandlerRead is how much of an unread request body is
	// discarded after the handler to keep the connection; beyond it, the
	// connection is closed (net/http uses the same figure).
	maxPostHandlerRead = 256 << 10
	bufSize            = 4 << 10
	// maxReadAhead is how much of a waiting request's body (beyond what
	// the bufio.Reader holds) the watch reads ahead and keeps; see
	// connReader. It is memory per waiting request (a full queue of
	// 10,000 holds at most 160 MiB); what is beyond it stays in the
	// kernel, where peerClosed sees the client leave.
	maxReadAhead = 16 << 10
	// peerPollEvery is how often the watch asks the kernel whether the
	// client has closed, once maxReadAhead is full.
	peerPollEvery = 100 * time.Millisecond
	// lingerTime and lingerBytes bound the wait for a refused client to
	// stop sending (drainBeforeClose).
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 2 << 20
)

// ErrServerClosed is returned by Serve after Shutdown or Close. It is
// net/http's, so that callers treat both servers alike.
var ErrServerClosed = http.ErrServerClosed

// Server serves HTTP/1.x on the listeners given to Serve. Its exported
// fields must not change once Serve has been called.
type Server struct {
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request's header, from its first
	// byte. 0 means no bound.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection. 0 means ReadHeaderTimeout; both 0 mean no bound.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header. 0 means 1 MiB.
	MaxHeaderBytes int
	// MaxHeaderFields bounds the number of a request's header fields
	// (431 beyond), counted as the header is read, before it is parsed.
	// 0 means DefaultMaxHeaderFields (200).
	MaxHeaderFields int
	// WatchAfter is how long a request runs before its connection is
	// watched for the client going away (which cancels the request's
	// context). Watching costs a read and a wake-up per request, so
	// requests that finish sooner skip it. 0 means DefaultWatchAfter; a
	// negative value means at once, as net/http does.
	WatchAfter time.Duration
	// ErrorLog receives accept errors and handler panics. nil means the
	// log package's standard logger.
	ErrorLog *log.Logger
	// WriteStallTimeout, when set, returns how long a write to a client
	// may make no progress (the client reads nothing) before it fails
	// with ErrWriteTimeout and the connection is cut (write.go); 0 means
	// no bound. It is asked as writes happen, so its answer may change
	// while serving (a reload). nil means no bound.
	WriteStallTimeout func() time.Duration

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    atomic.Bool // Shutdown or Close was called
}

// Serve accepts connections on ln and serves each on its own goroutine.
// It returns ErrServerClosed after Shutdown or Close, else the accept
// error. ln is closed on return.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln, true) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.track(ln, false)
	defer ln.Close()
	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("h1: accept error: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := s.newConn(rwc)
		if !s.trackConn(c, true) {
			rwc.Close()
			continue
		}
		go c.serve()
	}
}

// ServeConn serves HTTP/1.x on rwc, a connection accepted elsewhere (a
// decrypted CONNECT tunnel), on the calling goroutine until it closes.
// Shutdown and Close reach it like the connections of Serve.
func (s *Server) ServeConn(rwc net.Conn) {
	c := s.newConn(rwc)
	if !s.trackConn(c, true) {
		rwc.Close()
		return
	}
	c.serve()
}

func (s *Server) track(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.listeners, ln)
		return true
	}
	if s.closed.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closed.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

// Shutdown stops accepting, closes idle connections, and waits until the
// busy ones have finished their request and closed, or ctx ends (its error
// is returned). Hijacked connections are not waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			wait = min(2*wait, 100*time.Millisecond)
			t.Reset(wait)
		}
	}
}

// Close stops accepting and closes every connection at once, busy or
// not. Hijacked connections are not closed.
func (s *Server) Close() error {
	s.closeListeners()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.rwc.Close()
		delete(s.conns, c)
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
}

// closeIdle closes the connections waiting for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.Load() == stateIdle {
			c.rwc.Close()
			delete(s.conns, c)
		}
	}
	return len(s.conns) == 0
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

func (s *Server) maxHeaderFields() int {
	if s.MaxHeaderFields > 0 {
		return s.MaxHeaderFields
	}
	return DefaultMaxHeaderFields
}

func (s *Server) watchAfter() time.Duration {
	switch {
	case s.WatchAfter == 0:
		return DefaultWatchAfter
	case s.WatchAfter < 0:
		return 0
	}
	return s.WatchAfter
}

// Connection states, for Shutdown.
const (
	stateIdle int32 = iota // waiting for a request's first byte
	stateActive
	stateHijacked
)

// conn is one client connection. Its goroutine reads a request, runs the
// handler, finishes the response, and loops while the connection may be
// kept.
type conn struct {
	srv    *Server
	rwc    net.Conn
	remote string
	state  atomic.Int32
	cr     *connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	watch  *time.Timer // starts the watch on a long request
	// pending holds a response body until it is known whether it fits
	// (then it gets a Content-Length) or not (then it is chunked).
	pending []byte
	scratch [64]byte
	cw      clientWriter // what bw writes to (write.go)
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc, remote: rwc.RemoteAddr().String()}
	c.cr = &connReader{conn: c, remain: maxInt64}
	c.cr.cond = sync.NewCond(&c.cr.mu)
	c.br = bufio.NewReaderSize(c.cr, bufSize)
	c.cw.c = c
	c.bw = bufio.NewWriterSize(&c.cw, bufSize)
	return c
}

const maxInt64 = 1<<63 - 1

func (c *conn) idleTimeout() time.Duration {
	if c.srv.IdleTimeout > 0 {
		return c.srv.IdleTimeout
	}
	return c.srv.ReadHeaderTimeout
}

func (c *conn) serve() {
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.logf("h1: panic serving %v: %v\n%s", c.remote, err, buf)
		}
		if c.state.Load() != stateHijacked {
			c.rwc.Close()
			c.srv.trackConn(c, false)
		}
		if c.watch != nil {
			c.watch.Stop()
		}
		c.cr.stopPoll()
	}()
	for {
		if !c.next() {
			return
		}
	}
}

// next serves one request and reports whether the connection is kept.
func (c *conn) next() bool {
	c.state.Store(stateIdle)
	if c.srv.closed.Load() {
		return false
	}
	if d := c.idleTimeout(); d > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(d))
	}
	maxHeader := c.srv.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	c.cr.setLimit(int64(maxHeader) + bufSize) // bufio reads ahead
	c.cr.startScan(c.srv.maxHeaderFields())
	if _, err := c.br.Peek(1); err != nil {
		return false
	}
	c.state.Store(stateActive)
	if d := c.srv.ReadHeaderTimeout; d > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(d))
	}
	req, err := http.ReadRequest(c.br)
	hitLimit := c.cr.hitLimit()
	scan, readErr := c.cr.endScan()
	c.cr.setLimit(maxInt64)
	// ReadRequest may succeed past the cap when the fields beyond it were
	// in the bufio.Reader already (a pipelined request).
	if err != nil || scan.tooMany {
		switch {
		case hitLimit:
			c.reject(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		case scan.tooMany:
			c.reject(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("more than %d header fields", scan.max))
		case readErr != nil:
			// The client went away or timed out: nobody to answer. (Not
			// any net.Error: a *url.Error from parsing the target is one
			// too, and a request that was read gets its answer.)
		default:
			c.reject(http.StatusBadRequest, err.Error())
		}
		return false
	}
	if c.srv.ReadHeaderTimeout > 0 || c.idleTimeout() > 0 {
		c.rwc.SetReadDeadline(time.Time{})
	}
	if status, why := check(req, &scan); status != 0 {
		c.reject(status, why)
		return false
	}
	return c.handle(req)
}

// check applies the rules net/http's server adds to ReadRequest's (which
// has already moved the Host field into req.Host), and proxyd's framing
// rules (docs/operations.md, "Framing and header limits") on what scan saw
// of the header before ReadRequest normalised it.
func check(req *http.Request, scan *headerScan) (int, string) {
	switch {
	case req.ProtoMajor != 1:
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version " + req.Proto
	case scan.wsName:
		// RFC 9112 §5.1: "A server MUST reject, with a response status code
		// of 400 (Bad Request), any received request message that contains
		// whitespace between a header field name and colon."
		return http.StatusBadRequest, "whitespace between a field name and its colon (RFC 9112, section 5.1)"
	case scan.sawTE && !req.ProtoAtLeast(1, 1):
		// RFC 9112 §6.1: the framing of such a message is faulty, "even if
		// a Content-Length is present".
		return http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112, section 6.1)"
	case scan.sawTE && scan.sawCL:
		// RFC 9112 §6.3: "ought to be handled as an error"; refusing it and
		// closing keeps the bytes after it from being read as a request.
		return http.StatusBadRequest, "both Content-Length and Transfer-Encoding (RFC 9112, section 6.3)"
	case req.Host == "" && req.ProtoAtLeast(1, 1):
		return http.StatusBadRequest, "missing required Host header"
	case !validHost(req.Host):
		return http.StatusBadRequest, "malformed Host header"
	}
	return 0, ""
}

// validHost reports whether h has only the bytes a Host value may carry
// (RFC 3986 reg-name, IP literals, port).
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:[]%", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// reject answers a request that never reached the handler, with
// Proxy-Status (RFC 9209) naming the reason, and the connection is closed
// after it.
func (c *conn) reject(status int, why string) {
	if len(why) > 120 {
		why = strings.ToValidUTF8(why[:120], "") + "..." // parse errors quote the offending line
	}
	// The reason phrase carries the error too, as the proxy's own answers
	// do: it is what most clients print (docs/operations.md, "Proxy-Status
	// errors"). A parse error may quote bytes a phrase may not carry.
	reason := []byte(headers.ErrorTypeHTTPRequestError + ": " + why)
	if len(reason) > 120 {
		reason = append(reason[:117], "..."...)
	}
	for i, ch := range reason {
		if ch != '\t' && (ch < 0x20 || ch > 0x7e) {
			reason[i] = '?'
		}
	}
	body := strconv.Itoa(status) + " " + http.StatusText(status) + ": " + why + "\n"
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nProxy-Status: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, reason, headers.ProxyStatus(headers.ErrorTypeHTTPRequestError, why), len(body), body)
	if c.bw.Flush() == nil {
		c.drainBeforeClose()
	}
}

// drainBeforeClose ends the connection's sending side after a refusal and
// reads what the client still sends, for at most lingerTime and
// lingerBytes: closing a socket with unread data makes the kernel send a
// reset, which can destroy the refusal before the client has read it (a
// refused request usually leaves bytes unread: a header cut at its 201st
// field, a body). net/http waits the same way (closeWriteAndWait).
func (c *conn) drainBeforeClose() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck // best effort: the close follows
	}
	c.rwc.SetReadDeadline(time.Now().Add(lingerTime)) //nolint:errcheck // as above
	io.CopyN(io.Discard, c.rwc, lingerBytes)          //nolint:errcheck // the client's EOF ends it
}

// handle runs the handler for req and finishes its response; it reports
// whether the connection is kept.
func (c *conn) handle(req *http.Request) (keep bool) {
	req.RemoteAddr = c.remote
	orig := req // the request the body reader fills the trailers of
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req = req.WithContext(ctx)

	c.pending = c.pending[:0]
	w := &response{conn: c, req: req, contentLength: -1} // header: made by Header, or adopted
	w.closeAfter = req.Close || c.srv.closed.Load()
	// A request without a body keeps http.NoBody, which handlers (and
	// transports) recognize.
	var body *requestBody
	if req.Body != http.NoBody {
		body = &requestBody{rc: req.Body, cr: c.cr, req: orig}
		if orig.Trailer != nil {
			body.named = connectionNamed(orig.Header)
		}
		req.Body = body
	}
	switch expect := req.Header.Get("Expect"); {
	case expect == "":
	case req.ProtoAtLeast(1, 1) && strings.EqualFold(expect, "100-continue"):
		if body != nil {
			body.w = w // "100 Continue" goes out on the first read
		}
		req.Header.Del("Expect")
	case req.ProtoAtLeast(1, 1):
		c.reject(http.StatusExpectationFailed, "unsupported expectation "+expect)
		return false
	}

	c.cr.begin(cancel, body == nil)
	if d := c.srv.watchAfter(); d == 0 {
		c.cr.watch()
	} else if c.watch == nil {
		c.watch = time.AfterFunc(d, c.cr.watch)
	} else {
		c.watch.Reset(d)
	}
	// A panic (http.ErrAbortHandler included) skips finishing the
	// response: the connection is closed without it, which the client
	// sees as a cut.
	c.srv.Handler.ServeHTTP(w, req)
	if c.watch != nil {
		c.watch.Stop()
	}
	c.cr.end()
	if w.hijacked {
		return false
	}
	if body != nil && body.waitsContinue() {
		// The client waits for "100 Continue" before sending the body the
		// handler did not read: it will never come.
		w.closeAfter = true
	}
	if !w.finish() {
		return false
	}
	if w.closeAfter {
		return false
	}
	// Keep the connection only if the request body can be got out of the
	// way cheaply.
	if body != nil && !body.close() {
		return false
	}
	return !c.cr.gone()
}

// requestBody tells the connection reader when the body has been read to
// its end (after which the connection may be watched), sends
// "100 Continue" before the first read when the client expects it, and
// drops the trailer fields that may not be trailers (trailerAllowed)
// before it reports the end: the handler, and a transport that sends the
// trailers on, see the others only. It is locked: a transport may still
// read it from its own goroutine after the handler has returned, until
// the server closes it.
type requestBody struct {
	mu    sync.Mutex
	rc    io.ReadCloser
	cr    *connReader
	req   *http.Request // ReadRequest's: the one whose Trailer the body fills
	named []string      // the fields the request's Connection names
	w     *response     // non-nil until "100 Continue" is sent
	eof   bool
	err   error // what Read returns from now on
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.w != nil {
		w := b.w
		b.w = nil
		if !w.wroteHeader && !w.hijacked {
			w.conn.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := w.conn.bw.Flush(); err != nil {
				b.err = err
				return 0, err
			}
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		if b.req.Trailer != nil {
			// net/http has merged the trailer section into this map (the
			// handler's request shares it when the trailers were
			// announced).
			dropTrailers(b.req.Trailer, b.named)
		}
		b.eof = true
		b.err = io.EOF
		b.cr.bodyDone()
	}
	return n, err
}

func (b *requestBody) waitsContinue() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w != nil
}

// Close is a no-op for the handler: the server closes the body after the
// handler with close.
func (b *requestBody) Close() error { return nil }

// close discards what is left of the body, up to maxPostHandlerRead, and
// makes later reads fail. It reports whether the body was read to its end
// (else the connection cannot carry another request).
func (b *requestBody) close() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.eof && b.w == nil && b.err == nil {
		n, err := io.CopyN(io.Discard, b.rc, maxPostHandlerRead+1)
		b.eof = err == io.EOF && n <= maxPostHandlerRead
	}
	b.err = http.ErrBodyReadAfterClose
	return b.eof
}

// connReader sits between the connection and its bufio.Reader. It limits
// how much a request header may read, scans the header as it passes
// (headerScan), and watches the connection while a request runs: a
// background read that cancels the request's context when the client goes
// away (net/http does the same, for every request).
//
// The watch must not take bytes the handler still needs. Before the
// request's body has been read it reads ahead: what the client sends (the
// rest of the body, and whatever follows) is kept in ahead, up to
// maxReadAhead, and the body's reads get it from there later. So a client
// that sent its body and left is seen at once while its request waits in
// the queue, like one without a body. When ahead is full, the watch stops
// reading and asks the kernel instead (peerClosed), at once and then every
// peerPollEvery: a FIN queued behind unread data still shows. The first
// read of the body from the connection stops the watch (a body that
// streams shows the client leaving as a failed read), and it starts again
// once the body is read. After the body (or without one) the watch reads
// at most one byte: a client that sends more is there.
type connReader struct {
	conn *conn

	mu       sync.Mutex
	cond     *sync.Cond
	remain   int64 // bytes Read may still return
	hit      bool  // remain ran out
	scanning bool  // between startScan and endScan
	scan     headerScan
	readErr  error  // the connection's last read error, while scanning
	ahead    []byte // bytes the watch read early, from aheadOff on
	aheadOff int
	byteBuf  [1]byte     // ahead's store while it needs one byte
	inRead   bool        // a background read is running
	aborted  bool        // the background read was asked to stop
	dead     bool        // the client went away
	poll     *time.Timer // the kernel check, while ahead is full
	// per request
	running   bool               // between begin and end
	bodyRead  bool               // the request body was read to its end
	streaming bool               // the body is being read from the connection
	wantSee   bool               // watch once the body is read
	cancel    context.CancelFunc // the request's context
}

func (cr *connReader) setLimit(n int64) {
	cr.mu.Lock()
	cr.remain, cr.hit = n, false
	cr.mu.Unlock()
}

func (cr *connReader) hitLimit() bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.hit
}

// startScan starts scanning a request's header, beginning with what the
// bufio.Reader holds already (a pipelined request).
func (cr *connReader) startScan(maxFields int) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.scan.reset(maxFields)
	cr.scanning, cr.readErr = true, nil
	if n := cr.conn.br.Buffered(); n > 0 {
		b, _ := cr.conn.br.Peek(n)
		cr.scan.feed(b) // what it cannot cut, ReadRequest parses: at most bufSize
	}
}

// endScan ends the scan and returns what it saw and the connection's read
// error, if reading the header met one.
func (cr *connReader) endScan() (headerScan, error) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.scanning = false
	return cr.scan, cr.readErr
}

func (cr *connReader) pendingLocked() int { return len(cr.ahead) - cr.aheadOff }

func (cr *connReader) pending() int {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.pendingLocked()
}

func (cr *connReader) gone() bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.dead
}

func (cr *connReader) Read(p []byte) (int, error) {
	cr.mu.Lock()
	if cr.inRead {
		// The body is read past what the bufio.Reader holds, while the
		// watch reads ahead: stop it; what it read is in ahead.
		cr.abortLocked()
	}
	if cr.running && !cr.bodyRead {
		cr.streaming = true
		cr.stopPollLocked()
	}
	if cr.scanning && cr.scan.tooMany {
		cr.mu.Unlock()
		return 0, io.EOF
	}
	if cr.remain <= 0 {
		cr.hit = true
		cr.mu.Unlock()
		return 0, io.EOF
	}
	if int64(len(p)) > cr.remain {
		p = p[:cr.remain]
	}
	var n int
	var err error
	if cr.pendingLocked() > 0 {
		n = cr.takeLocked(p)
	} else {
		cr.mu.Unlock()
		n, err = cr.conn.rwc.Read(p)
		cr.mu.Lock()
		if err != nil {
			cr.readErr = err
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				cr.lostLocked()
			}
		}
	}
	cr.remain -= int64(n)
	if cr.scanning {
		n = cr.scan.feed(p[:n])
	}
	cr.mu.Unlock()
	return n, err
}

// takeLocked moves bytes from ahead into p.
func (cr *connReader) takeLocked(p []byte) int {
	n := copy(p, cr.ahead[cr.aheadOff:])
	cr.aheadOff += n
	if cr.aheadOff == len(cr.ahead) {
		cr.ahead, cr.aheadOff = cr.ahead[:0], 0
		if cap(cr.ahead) > bufSize {
			cr.ahead = nil // a connection keeps no read-ahead store between bodies
		}
	}
	return n
}

// spareLocked returns where the watch may read next so that ahead holds at
// most limit bytes: nil when it is full. One byte needs no allocation (the
// watch of a request without a body); a body's read-ahead grows from
// bufSize to maxReadAhead.
func (cr *connReader) spareLocked(limit int) []byte {
	held := cr.pendingLocked()
	if held >= limit {
		return nil
	}
	if cr.aheadOff > 0 && len(cr.ahead) == cap(cr.ahead) {
		cr.ahead = cr.ahead[:copy(cr.ahead, cr.ahead[cr.aheadOff:])]
		cr.aheadOff = 0
	}
	switch {
	case cap(cr.ahead) == 0 && limit == 1:
		cr.ahead = cr.byteBuf[:0]
	case len(cr.ahead) == cap(cr.ahead), limit > 1 && cap(cr.ahead) < bufSize:
		grown := make([]byte, held, min(max(2*cap(cr.ahead), bufSize), maxReadAhead))
		copy(grown, cr.ahead[cr.aheadOff:])
		cr.ahead, cr.aheadOff = grown, 0
	}
	end := min(cap(cr.ahead), len(cr.ahead)+limit-held)
	return cr.ahead[len(cr.ahead):end]
}

// lostLocked records that the client went away and cancels its request.
func (cr *connReader) lostLocked() {
	cr.dead = true
	if cr.cancel != nil {
		cr.cancel()
	}
}

// begin starts a request; bodyRead tells whether it has no body to read.
func (cr *connReader) begin(cancel context.CancelFunc, bodyRead bool) {
	cr.mu.Lock()
	cr.running, cr.bodyRead, cr.streaming, cr.wantSee, cr.cancel = true, bodyRead, false, false, cancel
	cr.mu.Unlock()
}

// watch starts watching the connection (the watch timer and WatchClient
// call it).
func (cr *connReader) watch() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if !cr.running {
		return
	}
	cr.wantSee = true
	cr.startLocked()
}

func (cr *connReader) bodyDone() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.bodyRead = true
	cr.stopPollLocked()
	if cr.running && cr.wantSee {
		cr.startLocked()
	}
}

// readingAheadLocked reports whether the watch is to read the body ahead.
func (cr *connReader) readingAheadLocked() bool {
	return cr.running && !cr.bodyRead && !cr.streaming
}

func (cr *connReader) startLocked() {
	if cr.inRead || cr.dead {
		return
	}
	switch {
	case cr.readingAheadLocked():
		if cr.pendingLocked() >= maxReadAhead {
			cr.checkPeerLocked()
			return
		}
	case !cr.bodyRead:
		return // the body streams: its reads see the client go
	case cr.pendingLocked() > 0 || cr.conn.br.Buffered() > 0:
		// The client sent more already: it is there.
		return
	}
	cr.inRead = true
	cr.conn.rwc.SetReadDeadline(time.Time{})
	go cr.backgroundRead()
}

// testHookBackgroundRead, set only by tests (export_test.go), is called by
// the watch's background read with the connection it reads: parked true
// just before it blocks in Read (bytes the client sends from then on are
// the watch's to read), false once it has stopped. An atomic load per read
// is all it costs when unset.
var testHookBackgroundRead atomic.Pointer[func(nc net.Conn, parked bool)]

func (cr *connReader) backgroundRead() {
	cr.mu.Lock()
	for cr.running && !cr.aborted {
		var p []byte
		if cr.readingAheadLocked() {
			if p = cr.spareLocked(maxReadAhead); p == nil {
				cr.checkPeerLocked()
				break
			}
		} else if p = cr.spareLocked(1); p == nil {
			break // a byte of what follows the body: the client is there
		}
		cr.mu.Unlock()
		if hook := testHookBackgroundRead.Load(); hook != nil {
			(*hook)(cr.conn.rwc, true)
		}
		n, err := cr.conn.rwc.Read(p)
		cr.mu.Lock()
		cr.ahead = cr.ahead[:len(cr.ahead)+n]
		if err != nil {
			if !(cr.aborted && errors.Is(err, os.ErrDeadlineExceeded)) {
				cr.lostLocked()
			}
			break
		}
	}
	cr.aborted = false
	cr.inRead = false
	cr.mu.Unlock()
	cr.cond.Broadcast()
	if hook := testHookBackgroundRead.Load(); hook != nil {
		(*hook)(cr.conn.rwc, false)
	}
}

// abortLocked stops the background read and waits for it.
func (cr *connReader) abortLocked() {
	cr.aborted = true
	cr.conn.rwc.SetReadDeadline(aLongTimeAgo)
	for cr.inRead {
		cr.cond.Wait()
	}
	cr.conn.rwc.SetReadDeadline(time.Time{})
}

// checkPeerLocked asks the kernel whether the client has closed, for a
// request whose read-ahead is full, and asks again every peerPollEvery
// while it waits so.
func (cr *connReader) checkPeerLocked() {
	closed, ok := peerClosed(cr.conn.rwc)
	switch {
	case !ok:
	case closed:
		cr.lostLocked()
	case cr.poll == nil:
		cr.poll = time.AfterFunc(peerPollEvery, cr.pollPeer)
	default:
		cr.poll.Reset(peerPollEvery)
	}
}

func (cr *connReader) pollPeer() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.readingAheadLocked() && !cr.inRead && !cr.dead && cr.pendingLocked() >= maxReadAhead {
		cr.checkPeerLocked()
	}
}

func (cr *connReader) stopPollLocked() {
	if cr.poll != nil {
		cr.poll.Stop()
	}
}

func (cr *connReader) stopPoll() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.stopPollLocked()
}

// end stops the request's watch and waits for its background read.
func (cr *connReader) end() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.running, cr.wantSee, cr.cancel = false, false, nil
	cr.stopPollLocked()
	if cr.inRead {
		cr.abortLocked()
	}
}

var aLongTimeAgo = time.Unix(1, 0)
