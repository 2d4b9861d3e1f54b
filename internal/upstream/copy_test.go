package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCopyResponseStreams proves the proxy does not buffer: the upstream
// sends a first chunk and then waits until the client has read it.
func TestCopyResponseStreams(t *testing.T) {
	const first, second = "data: first\n\n", "data: second\n\n"
	tests := []struct {
		name   string
		header http.Header
	}{
		// Unknown length: chunked, flushed because the length is unknown.
		{"unknown length", http.Header{"Content-Type": {"application/json"}}},
		// Known length: only the event-stream type makes the proxy flush;
		// without it, "first" would sit in the proxy's write buffer.
		{"event stream, known length", http.Header{
			"Content-Type":   {"text/event-stream; charset=utf-8"},
			"Content-Length": {strconv.Itoa(len(first + second))},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stall := make(chan struct{})
			gotFirst := make(chan struct{})
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				io.WriteString(w, first)
				http.NewResponseController(w).Flush()
				select {
				case <-gotFirst:
				case <-stall:
					return
				case <-r.Context().Done(): // the test failed and hung up
					return
				}
				io.WriteString(w, second)
			}, stall)
			f := newForwarder(t, Config{})
			copyErr := make(chan error, 1)
			px := newProxy(t, f, up.URL, copyErr)

			// If the proxy buffers, the first chunk (or even the status
			// line) never comes: the deadline turns that into a failure.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", px.URL, nil)
			resp, err := px.Client().Do(req)
			if err != nil {
				t.Fatalf("no response headers (buffered by the proxy?): %v", err)
			}
			defer resp.Body.Close()
			buf := make([]byte, len(first))
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != first {
				t.Fatalf("first chunk %q, %v (buffered by the proxy?)", buf, err)
			}
			close(gotFirst)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != second {
				t.Fatalf("rest %q, %v", rest, err)
			}
			if err := within(t, copyErr, 5*time.Second, "CopyResponse"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCopyResponseFlushPolicy(t *testing.T) {
	tests := []struct {
		name        string
		length      int64
		contentType string
		wantFlushes bool
	}{
		{"known length", 6, "application/json", false},
		{"known length, event stream", 6, "text/event-stream", true},
		{"unknown length", -1, "application/json", true},
		{"event stream, bad parameters", 6, "text/event-stream; =", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{
				StatusCode:    http.StatusTeapot,
				Header:        http.Header{"Content-Type": {tt.contentType}, "X-A": {"1", "2"}},
				ContentLength: tt.length,
				Body:          io.NopCloser(iotestOneByte(strings.NewReader("abcdef"))),
			}
			w := &discardWriter{h: http.Header{"X-Pre": {"p"}}}
			n, err := CopyResponse(w, resp, func(h http.Header) { h.Set("Server-Timing", "upstream;dur=1") })
			if err != nil || n != 6 {
				t.Fatalf("n %d err %v", n, err)
			}
			if w.status != http.StatusTeapot || w.h.Get("Server-Timing") == "" || len(w.h["X-A"]) != 2 || w.h.Get("X-Pre") != "p" {
				t.Errorf("status %d header %v", w.status, w.h)
			}
			// One write per byte, plus one for the status line.
			if tt.wantFlushes && w.flushes != 7 || !tt.wantFlushes && w.flushes != 0 {
				t.Errorf("%d flushes, want flushing %v", w.flushes, tt.wantFlushes)
			}
		})
	}
}

// iotestOneByte returns a reader that reads one byte at a time.
func iotestOneByte(r io.Reader) io.Reader { return oneByte{r} }

type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestCopyResponseBodyCut(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write(bytes.Repeat([]byte("a"), 100))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // drops the connection
	})
	up.Config.ErrorLog = discardLog()
	f := newForwarder(t, Config{})

	t.Run("direct", func(t *testing.T) {
		resp, err := f.RoundTrip(get(t, context.Background(), up.URL), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		n, err := CopyResponse(rec, resp, nil)
		if !errors.Is(err, ErrBodyCut) || errors.Is(err, ErrClientGone) || n != 100 {
			t.Fatalf("n %d err %v, want 100 and ErrBodyCut", n, err)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q does not wrap the read error", err)
		}
	})

	t.Run("client sees a cut stream", func(t *testing.T) {
		copyErr := make(chan error, 1)
		px := newProxy(t, f, up.URL, copyErr)
		px.Config.ErrorLog = discardLog()
		// The proxy may have sent nothing yet (its write buffer held the
		// status line and the 100 bytes): then Get fails; otherwise reading
		// the body must.
		resp, err := px.Client().Get(px.URL)
		if err == nil {
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("client read %d bytes and a clean end", len(body))
			}
		}
		if err := within(t, copyErr, 5*time.Second, "CopyResponse"); !errors.Is(err, ErrBodyCut) {
			t.Fatalf("CopyResponse: %v", err)
		}
	})
}

func TestCopyResponseClientGone(t *testing.T) {
	t.Run("write fails", func(t *testing.T) {
		resp := &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: 3, Body: io.NopCloser(strings.NewReader("abc"))}
		_, err := CopyResponse(failWriter{}, resp, nil)
		if !errors.Is(err, ErrClientGone) || errors.Is(err, ErrBodyCut) {
			t.Fatalf("err %v, want ErrClientGone", err)
		}
	})

	t.Run("caller context canceled midway", func(t *testing.T) {
		stall := make(chan struct{})
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			<-stall
		}, stall)
		f := newForwarder(t, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := f.RoundTrip(get(t, ctx, up.URL), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		w := &cancelingWriter{discardWriter: discardWriter{h: http.Header{}}, cancel: cancel}
		_, err = CopyResponse(w, resp, nil)
		if !errors.Is(err, ErrClientGone) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrBodyCut) {
			t.Fatalf("err %v, want ErrClientGone and context.Canceled", err)
		}
	})
}

type failWriter struct{}

func (failWriter) Header() http.Header       { return http.Header{} }
func (failWriter) WriteHeader(int)           {}
func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// cancelingWriter cancels the request context on its first body write,
// as a client hanging up midway would.
type cancelingWriter struct {
	discardWriter
	cancel context.CancelFunc
}

func (c *cancelingWriter) Write(p []byte) (int, error) {
	c.cancel()
	return len(p), nil
}

func TestCopyResponseTrailers(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late") // not announced
	})
	f := newForwarder(t, Config{})
	px := newProxy(t, f, up.URL, nil)
	resp, err := px.Client().Get(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("trailer X-Checksum = %q (trailers %v)", got, resp.Trailer)
	}
	if got := resp.Trailer.Get("X-Late"); got != "late" {
		t.Errorf("trailer X-Late = %q (trailers %v)", got, resp.Trailer)
	}
}

// TestCopyResponseLargeBody sends 64 MiB, generated on the fly, through a
// proxy and checks that the heap stays far below the body's size.
func TestCopyResponseLargeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: a 64 MiB transfer")
	}
	const size = 64 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	f := newForwarder(t, Config{})
	copyErr := make(chan error, 1)
	px := newProxy(t, f, up.URL, copyErr)

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64

	resp, err := px.Client().Get(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != size {
		t.Errorf("ContentLength %d", resp.ContentLength)
	}
	buf := make([]byte, 64<<10)
	var total, next int64
	for {
		n, err := resp.Body.Read(buf)
		total += int64(n)
		if total >= next {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			next += 4 << 20
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
	}
	if total != size {
		t.Fatalf("read %d bytes, want %d", total, size)
	}
	if err := within(t, copyErr, 5*time.Second, "CopyResponse"); err != nil {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(base)
	t.Logf("heap in use grew by at most %d KiB for a %d MiB body", growth>>10, size>>20)
	if growth > 8<<20 {
		t.Errorf("heap grew by %d MiB while copying %d MiB: the body is buffered", growth>>20, size>>20)
	}
}

func TestCopyBufferPooled(t *testing.T) {
	resp := func() *http.Response {
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: 3, Body: io.NopCloser(strings.NewReader("abc"))}
	}
	w := &discardWriter{h: http.Header{}}
	CopyResponse(w, resp(), nil) // warm the pool
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		clear(w.h)
		CopyResponse(w, resp(), nil)
	}
	runtime.ReadMemStats(&after)
	// The response and its reader allocate a few hundred bytes. A fresh
	// 32 KiB buffer per call would add 32 KiB; under the race detector
	// sync.Pool drops a quarter of what is put back, hence the margin.
	if perCall := (after.TotalAlloc - before.TotalAlloc) / 100; perCall > 16<<10 {
		t.Errorf("%d bytes allocated per call: copy buffer not pooled?", perCall)
	}
}

// adoptingRecorder is a ResponseWriter that takes over the header map, as
// internal/h1's does.
type adoptingRecorder struct {
	*httptest.ResponseRecorder
	adopted bool
}

func (r *adoptingRecorder) AdoptHeader(h http.Header) bool {
	for k, vv := range r.ResponseRecorder.Header() {
		h[k] = append(vv, h[k]...)
	}
	r.ResponseRecorder.HeaderMap = h
	r.adopted = true
	return true
}

// TestCopyResponseAdoptsHeader: a writer that can take over the upstream's
// header map gets it (no copy); fields set before stay, and extra still
// applies on top.
func TestCopyResponseAdoptsHeader(t *testing.T) {
	for _, preset := range []bool{false, true} {
		rec := &adoptingRecorder{ResponseRecorder: httptest.NewRecorder()}
		if preset {
			rec.Header().Set("X-Preset", "1")
		}
		upHeader := http.Header{"Content-Type": {"text/plain"}, "X-Up": {"a"}}
		resp := &http.Response{StatusCode: 201, Header: upHeader, ContentLength: 2, Body: io.NopCloser(strings.NewReader("ok"))}
		n, err := CopyResponse(rec, resp, func(h http.Header) { h.Set("X-Extra", "e") })
		if err != nil || n != 2 {
			t.Fatalf("preset %v: CopyResponse = %d, %v", preset, n, err)
		}
		if !rec.adopted {
			t.Errorf("preset %v: the header was copied, not adopted", preset)
		}
		res := rec.Result()
		for k, want := range map[string]string{"Content-Type": "text/plain", "X-Up": "a", "X-Extra": "e"} {
			if got := res.Header.Get(k); got != want {
				t.Errorf("preset %v: %s = %q, want %q (header %v)", preset, k, got, want, res.Header)
			}
		}
		if got := res.Header.Get("X-Preset"); (got == "1") != preset {
			t.Errorf("preset %v: X-Preset = %q", preset, got)
		}
		if res.StatusCode != 201 || rec.Body.String() != "ok" {
			t.Errorf("preset %v: status %d body %q", preset, res.StatusCode, rec.Body.String())
		}
	}
}
