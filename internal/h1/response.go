package h1

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// response is the http.ResponseWriter of one request. It also implements
// http.Flusher (and FlushError, for http.ResponseController),
// http.Hijacker, and WatchClient.
//
// Framing follows net/http's server: a declared Content-Length is used; a
// body that ends within 4 KiB before any flush gets a Content-Length; any
// other body is chunked for HTTP/1.1 clients and delimited by the close of
// the connection for HTTP/1.0 ones. Trailers follow net/http's rules (the
// names announced in "Trailer", and keys with http.TrailerPrefix), except
// that a field that may not be a trailer is neither sent nor announced
// (trailerAllowed).
type response struct {
	conn   *conn
	req    *http.Request
	header http.Header

	status        int
	wroteHeader   bool // the status is decided
	sent          bool // the status line and header are in the buffer
	hijacked      bool
	closeAfter    bool // close the connection after this response
	bodyAllowed   bool
	chunked       bool
	contentLength int64 // declared, or -1
	written       int64 // body bytes accepted
	trailers      []string
	named         []string // the fields the handler's Connection names
	failed        error    // a write to the client failed
	reason        string   // the final status line's reason phrase (SetReason); "" = the standard one
}

func (w *response) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header, 8)
	}
	return w.header
}

// AdoptHeader makes h the response's header, before the header is sent:
// a proxy hands over the header map it read from the upstream instead of
// copying it key by key. Fields already set on the response stay, ahead
// of h's values for the same name (as if h had been added to them). It
// reports whether it did; h is the response's from then on, and the
// caller must not use it otherwise.
func (w *response) AdoptHeader(h http.Header) bool {
	if w.sent || w.hijacked || w.wroteHeader || h == nil {
		return false
	}
	for k, vv := range w.header {
		h[k] = append(vv[:len(vv):len(vv)], h[k]...)
	}
	w.header = h
	return true
}

func (w *response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("h1: invalid WriteHeader code %d", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An interim response goes out at once; the final one follows.
		w.writeStatus(code, "")
		w.header.WriteSubset(w.conn.bw, nil) //nolint:errcheck // bw errors surface at Flush
		w.conn.bw.WriteString("\r\n")
		if err := w.conn.bw.Flush(); err != nil {
			w.fail(err)
		}
		return
	}
	w.wroteHeader = true
	w.status = code
	w.bodyAllowed = w.req.Method != http.MethodHead && code != http.StatusNoContent && code != http.StatusNotModified && code >= 200
	if cl := w.header.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			delete(w.header, "Content-Length")
		}
	}
	// The fields the handler's Connection names are hop-by-hop: never
	// trailers (send replaces Connection with the server's own).
	w.named = connectionNamed(w.header)
	if vv := w.header["Trailer"]; len(vv) > 0 {
		// Announced trailers that may not be trailers are not sent, nor
		// announced (see trailerAllowed).
		dropped := false
		for _, v := range vv {
			for name := range strings.SplitSeq(v, ",") {
				switch name = textproto.TrimString(name); {
				case name == "":
				case trailerAllowed(name, w.named):
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(name))
				default:
					dropped = true
				}
			}
		}
		if dropped && len(w.trailers) == 0 {
			delete(w.header, "Trailer")
		} else if dropped {
			w.header["Trailer"] = []string{strings.Join(w.trailers, ", ")}
		}
	}
	if hasToken(w.header["Connection"], "close") {
		w.closeAfter = true
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.failed != nil {
		return 0, w.failed
	}
	var tooLong bool
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		p, tooLong = p[:w.contentLength-w.written], true
	}
	if !w.sent {
		if w.contentLength < 0 && len(w.conn.pending)+len(p) <= bufSize {
			w.conn.pending = append(w.conn.pending, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		w.send(false)
	}
	n, err := w.writeBody(p)
	w.written += int64(n)
	if err == nil && tooLong {
		err = http.ErrContentLength
	}
	return n, err
}

// FlushError sends the header and what is buffered to the client.
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.send(false)
	}
	if w.failed != nil {
		return w.failed
	}
	if err := w.conn.bw.Flush(); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

func (w *response) Flush() { _ = w.FlushError() }

// SetReason makes reason the reason phrase of the final response's status
// line instead of the status code's standard text: the proxy's own
// answers carry their error and its details there, which is what clients
// print (docs/operations.md, "Proxy-Status errors"). It must be called
// before the header is sent. A byte that a reason-phrase may not carry
// (RFC 9112 §4: HTAB, SP, VCHAR, obs-text; no CR or LF) becomes '?', and
// so does any byte beyond ASCII (clients decode the phrase as Latin-1 or
// not at all); an empty reason keeps the standard text. HTTP/2 has no
// reason phrase: a handler that may run under either server checks for
// the method.
func (w *response) SetReason(reason string) {
	if w.sent || w.hijacked {
		return
	}
	b := []byte(reason)
	for i, c := range b {
		if c != '\t' && (c < 0x20 || c > 0x7e) {
			b[i] = '?'
		}
	}
	w.reason = string(b)
}

// WatchClient starts watching the connection for the client going away
// now, rather than once the request has run for Server.WatchAfter: a
// handler about to wait a long time (in a queue) calls it, so that a client
// that leaves ends the request's context at once.
func (w *response) WatchClient() {
	if !w.hijacked {
		w.conn.cr.watch()
	}
}

// Hijack hands the connection over (CONNECT tunnels). Bytes the client
// sent early are in the returned reader.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		return nil, nil, errors.New("h1: Hijack after WriteHeader")
	}
	c := w.conn
	if c.watch != nil {
		c.watch.Stop()
	}
	c.cr.end()
	if n := c.cr.pending(); n > 0 {
		// Move what the watch read into the reader the caller gets: the
		// caller reads the connection itself once that is empty.
		n += c.br.Buffered()
		if n > c.br.Size() {
			return nil, nil, errors.New("h1: Hijack with more early bytes than the reader holds")
		}
		if _, err := c.br.Peek(n); err != nil {
			return nil, nil, err
		}
	}
	w.hijacked = true
	c.state.Store(stateHijacked)
	c.srv.trackConn(c, false)
	c.rwc.SetDeadline(time.Time{}) //nolint:errcheck // best effort
	return c.rwc, bufio.NewReadWriter(c.br, c.bw), nil
}

// finish completes the response after the handler returned; it reports
// whether it all went out.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.send(true)
	}
	switch {
	case w.chunked:
		w.conn.bw.WriteString("0\r\n")
		w.writeTrailers()
		w.conn.bw.WriteString("\r\n")
	case w.bodyAllowed && w.contentLength >= 0 && w.written < w.contentLength:
		// Shorter than announced: only closing tells the client.
		w.closeAfter = true
	}
	if err := w.conn.bw.Flush(); err != nil {
		w.fail(err)
	}
	return w.failed == nil
}

func (w *response) fail(err error) {
	if w.failed == nil {
		w.failed = err
	}
	w.closeAfter = true
}

// send decides the framing and writes the status line and header, then
// what Write held back. final means the handler has returned, so the
// held-back bytes are the whole body.
func (w *response) send(final bool) {
	w.sent = true
	h := w.Header()
	delete(h, "Transfer-Encoding")
	ex := w.excluded()
	if w.conn.srv.closed.Load() {
		w.closeAfter = true // shutting down: this is the last response
	}
	switch {
	case !w.bodyAllowed:
	case w.contentLength >= 0:
	case final && len(ex) == 0:
		w.contentLength = int64(len(w.conn.pending))
		h["Content-Length"] = []string{strconv.Itoa(len(w.conn.pending))}
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the close ends the body
	}
	keepAlive10 := false
	if !w.req.ProtoAtLeast(1, 1) && !w.closeAfter {
		// ReadRequest set req.Close unless the client asked for keep-alive.
		keepAlive10 = true
	}
	switch {
	case w.closeAfter:
		h["Connection"] = []string{"close"}
	case keepAlive10:
		h["Connection"] = []string{"keep-alive"}
	}
	bw := w.conn.bw
	w.writeStatus(w.status, w.reason)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(time.Now().UTC().AppendFormat(w.conn.scratch[:0], http.TimeFormat))
		bw.WriteString("\r\n")
	}
	h.WriteSubset(bw, ex) //nolint:errcheck // bw errors surface at Flush
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	if len(w.conn.pending) > 0 {
		p := w.conn.pending
		w.conn.pending = w.conn.pending[:0]
		w.writeBody(p) //nolint:errcheck // recorded in w.failed
	}
}

// excluded is the set of keys not sent in the header: trailers, announced
// or with http.TrailerPrefix. A response with trailers is chunked.
func (w *response) excluded() map[string]bool {
	var ex map[string]bool
	add := func(k string) {
		if ex == nil {
			ex = make(map[string]bool)
		}
		ex[k] = true
	}
	for _, k := range w.trailers {
		add(k)
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(k)
		}
	}
	return ex
}

// writeStatus writes the status line; reason "" is the code's standard
// text.
func (w *response) writeStatus(code int, reason string) {
	bw := w.conn.bw
	b := append(w.conn.scratch[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if reason != "" {
		b = append(b, reason...)
	} else if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	b = append(b, "\r\n"...)
	bw.Write(b)
}

func (w *response) writeBody(p []byte) (int, error) {
	if len(p) == 0 || w.failed != nil {
		return 0, w.failed
	}
	bw := w.conn.bw
	if w.chunked {
		b := strconv.AppendInt(w.conn.scratch[:0], int64(len(p)), 16)
		b = append(b, "\r\n"...)
		bw.Write(b)
	}
	n, err := bw.Write(p)
	if err == nil && w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.fail(err)
	}
	return n, err
}

// writeTrailers writes the trailer fields of a chunked response, without
// those that may not be trailers (trailerAllowed).
func (w *response) writeTrailers() {
	var t http.Header
	add := func(k string, vv []string) {
		if t == nil {
			t = make(http.Header)
		}
		t[k] = append(t[k], vv...)
	}
	for _, k := range w.trailers {
		if vv, ok := w.header[k]; ok {
			add(k, vv)
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if trailerAllowed(name, w.named) {
				add(http.CanonicalHeaderKey(name), vv)
			}
		}
	}
	if t != nil {
		t.Write(w.conn.bw) //nolint:errcheck // bw errors surface at Flush
	}
}

// hasToken reports whether a comma-separated header lists token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(part), token) {
				return true
			}
		}
	}
	return false
}
