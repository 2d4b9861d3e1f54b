package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// bufSize is the copy buffer size, for bodies and tunnels.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// CopyResponse writes resp to w: the status line, resp's headers (already
// cleaned by RoundTrip), then the body, streamed through one pooled 32 KiB
// buffer. extra, if not nil, is called on w.Header() after the headers are
// copied and before WriteHeader, for the caller's Via and Server-Timing.
// Trailers the upstream announced are passed through. CopyResponse always
// closes resp.Body.
//
// The response is flushed after every write when it is an event stream
// (text/event-stream) or of unknown length, as httputil.ReverseProxy does,
// so that a response the upstream sends bit by bit reaches the client bit
// by bit; the status line is then flushed at once too.
//
// It returns the number of body bytes written and the first error: one
// wrapping ErrBodyCut when reading the upstream body failed midway (the
// caller logs it and panics with http.ErrAbortHandler, so the client sees a
// cut stream rather than a short "complete" one), or one wrapping
// ErrClientGone when writing to the client failed or the client's request
// context ended.
func CopyResponse(w http.ResponseWriter, resp *http.Response, extra func(http.Header)) (int64, error) {
	defer resp.Body.Close()

	// resp.Header is ours (RoundTrip's): a writer that can take it over
	// saves copying it. resp.Header and w.Header() are then one map.
	if a, ok := w.(HeaderAdopter); !ok || !a.AdoptHeader(resp.Header) {
		h := w.Header()
		for k, vv := range resp.Header {
			h[k] = append(h[k], vv...)
		}
	}
	h := w.Header()
	announced := len(resp.Trailer)
	if announced > 0 {
		// The Trailer field itself was removed as hop-by-hop; announce the
		// same names again so the server sends them as trailers.
		h.Add("Trailer", strings.Join(slices.Sorted(maps.Keys(resp.Trailer)), ", "))
	}
	if extra != nil {
		extra(h)
	}

	rc := http.NewResponseController(w)
	flush := flushEachWrite(resp)
	w.WriteHeader(resp.StatusCode)
	if flush {
		if err := flushTo(rc); err != nil {
			return 0, err
		}
	}

	n, err := copyBody(w, rc, resp, flush)
	if err != nil {
		return n, err
	}
	// Close now, not in the defer, so that resp.Trailer is complete.
	resp.Body.Close()
	if len(resp.Trailer) == 0 {
		return n, nil
	}
	// Force chunking when trailers came, so that net/http does not compute
	// a Content-Length for a short body and drop them.
	if err := flushTo(rc); err != nil {
		return n, err
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			h[k] = append(h[k], vv...)
		}
		return n, nil
	}
	// Trailers that were not announced go out with the TrailerPrefix.
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
	return n, nil
}

// HeaderAdopter is a ResponseWriter that can take over a header map
// (internal/h1's, checked against h1.HeaderAdopter in
// internal/proxy/contracts.go): see CopyResponse.
type HeaderAdopter interface {
	AdoptHeader(http.Header) bool
}

// flushEachWrite reports whether every write must be flushed at once.
func flushEachWrite(resp *http.Response) bool {
	if resp.ContentLength == -1 {
		return true
	}
	return isEventStream(resp.Header.Get("Content-Type"))
}

// isEventStream reports whether a Content-Type is text/event-stream, with
// any parameters, in any case (RFC 9110 §8.3.1) — without the allocations
// of mime.ParseMediaType on every response.
func isEventStream(ct string) bool {
	const want = "text/event-stream"
	if len(ct) < len(want) || !strings.EqualFold(ct[:len(want)], want) {
		return false
	}
	rest := strings.TrimLeft(ct[len(want):], " \t")
	return rest == "" || rest[0] == ';'
}

func flushTo(rc *http.ResponseController) error {
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("%w: flush: %w", ErrClientGone, err)
	}
	return nil
}

// copyBody is io.CopyBuffer with errors told apart by side, and flushing.
func copyBody(w io.Writer, rc *http.ResponseController, resp *http.Response, flush bool) (int64, error) {
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := resp.Body.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr == nil && nw != nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return n, fmt.Errorf("%w: %w", ErrClientGone, werr)
			}
			if flush {
				if err := flushTo(rc); err != nil {
					return n, err
				}
			}
		}
		switch {
		case rerr == io.EOF:
			return n, nil
		case rerr == nil:
			continue
		case clientLeft(resp):
			// The body read failed because the request context ended:
			// the client went away, the upstream did nothing wrong.
			return n, fmt.Errorf("%w: %w", ErrClientGone, rerr)
		default:
			return n, fmt.Errorf("%w: %w", ErrBodyCut, rerr)
		}
	}
}

// clientLeft reports whether the context of the request behind resp was
// canceled (the caller's context, which RoundTrip's is derived from).
func clientLeft(resp *http.Response) bool {
	return resp.Request != nil && errors.Is(resp.Request.Context().Err(), context.Canceled)
}
