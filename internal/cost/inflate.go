package cost

import (
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
)

// Compressed bodies (doc.go, "Compressed bodies"). An Inflater feeds a
// Meter the decoded bytes of a gzip or deflate body: Write copies the
// compressed chunk into a bounded queue and returns; a decoder goroutine,
// started at the first byte and ended with the body, inflates the queue
// into the Meter. compress/flate reads from an io.Reader and cannot stop
// at the end of a chunk and resume with the next, hence the goroutine.

// Limits of an Inflater.
const (
	// InflateBehind is how many compressed bytes the decoder may have
	// waiting: more and it gives up (ErrBehind), so that the queue is
	// bounded whatever the decoder's speed. Four of the proxy's 32 KiB
	// copy chunks.
	InflateBehind = 128 << 10
	// inflateRatio and inflateFree bound the decoded size: past the first
	// inflateFree bytes, more than inflateRatio decoded bytes per
	// compressed byte is given up (ErrInflation). JSON and event streams
	// inflate 3 to 20 times; deflate can reach 1032, a decompression bomb
	// whose decoding would cost far more than the body's copy.
	inflateRatio = 64
	inflateFree  = 1 << 20
	// inflateBuf is the decoded bytes handed to the Meter at a time.
	inflateBuf = 16 << 10
)

var (
	// ErrEncoding is NewInflater's error for a Content-Encoding it does
	// not decode: br and zstd (no decoder in Go's standard library),
	// compress, or more than one coding.
	ErrEncoding = errors.New("content encoding not decoded")
	// ErrBehind: the decoder fell more than InflateBehind compressed bytes
	// behind the body; the usage is not read.
	ErrBehind = errors.New("decoder fell behind the body")
	// ErrInflation: the body inflated more than 64 times its compressed
	// size (past its first MiB); the usage is not read.
	ErrInflation = errors.New("body inflates more than 64 times")
	// ErrPanic wraps a panic of the decoder (a bug): the usage is not read.
	ErrPanic = errors.New("decoder panic")

	errStopped = errors.New("stopped")
)

// coding is a Content-Encoding an Inflater decodes.
type coding uint8

const (
	codingGzip    coding = iota + 1 // gzip, x-gzip (RFC 9110 §8.4.1.3)
	codingDeflate                   // deflate: zlib (RFC 1950), or raw deflate (RFC 1951) as some servers send it
)

// Encoded reports whether a Content-Encoding field value names a coding
// other than identity: then the body must go through an Inflater, if it
// can be read at all.
func Encoded(contentEncoding string) bool {
	for c := range strings.SplitSeq(contentEncoding, ",") {
		if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
			return true
		}
	}
	return false
}

// parseCoding is the one coding of a Content-Encoding field value
// (codings are case-insensitive, RFC 9110 §8.4.1; identity is ignored).
func parseCoding(contentEncoding string) (coding, error) {
	var got coding
	n := 0
	for c := range strings.SplitSeq(contentEncoding, ",") {
		c = strings.TrimSpace(c)
		if c == "" || strings.EqualFold(c, "identity") {
			continue
		}
		if n++; n > 1 {
			return 0, fmt.Errorf("%w: %q: more than one coding", ErrEncoding, contentEncoding)
		}
		switch {
		case strings.EqualFold(c, "gzip"), strings.EqualFold(c, "x-gzip"):
			got = codingGzip
		case strings.EqualFold(c, "deflate"):
			got = codingDeflate
		default:
			return 0, fmt.Errorf("%w: %q", ErrEncoding, c)
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: no coding in %q", ErrEncoding, contentEncoding)
	}
	return got, nil
}

// An Inflater reads a compressed body's usage: feed it a copy of every
// chunk of the body as it was received (Write), then call Usage once the
// body ended, or Close when it is abandoned. It decodes gzip (and x-gzip,
// several members included) and deflate (zlib, or raw deflate), in a
// goroutine of its own that starts with the first byte and ends by Usage
// or Close.
//
// Write copies the chunk into a queue and returns: it never waits for the
// decoder. A decoder more than InflateBehind bytes behind, or a body that
// inflates more than 64 times, gives up (Err says why): the memory an
// Inflater holds is bounded (two queues of at most InflateBehind bytes,
// the decoder's 32 KiB window and 16 KiB buffer, pooled) and so is the
// work Usage may wait for.
//
// Write, Usage, Close and Err may be called from one goroutine at a time
// (the body's reader): an Inflater is not safe for concurrent use.
type Inflater struct {
	m      *Meter
	coding coding

	wake chan struct{} // a token when the queue changed (1-buffered)
	done chan struct{} // closed when the decoder ended

	// gaveUp is set once the queue overflowed; the decoder stops.
	gaveUp atomic.Bool

	// Writer side: the body's reader.
	started, closed bool

	mu struct {
		sync.Mutex
		pending []byte // queued, not taken by the decoder yet
		ended   bool   // no more input: Usage or Close
	}

	// Decoder side, read by the writer only after done is closed.
	sink  io.Writer // m (a test's own writer)
	in    int64     // compressed bytes the decoder read: the decoded size's bound
	batch []byte    // the decoder's slice of the queue (its backing array)
	cur   []byte    // what is left of batch
	head  []byte    // bytes given back (the deflate header sniff)
	err   error     // why the usage is not read (not ErrBehind)
}

// NewInflater returns an Inflater that feeds m the body decoded as its
// Content-Encoding field value says, or an error wrapping ErrEncoding
// when it cannot decode it (the usage is then not read).
func NewInflater(contentEncoding string, m *Meter) (*Inflater, error) {
	c, err := parseCoding(contentEncoding)
	if err != nil {
		return nil, err
	}
	return &Inflater{m: m, sink: m, coding: c, wake: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// Write queues a copy of p for the decoder, starting it with the first
// bytes. It always returns len(p), nil (see Meter.Write).
func (z *Inflater) Write(p []byte) (int, error) {
	if len(p) == 0 || z.closed || z.gaveUp.Load() {
		return len(p), nil
	}
	z.mu.Lock()
	if len(z.mu.pending)+len(p) > InflateBehind {
		// The decoder cannot keep up: give up rather than hold more.
		z.mu.pending = nil
		z.gaveUp.Store(true)
		z.mu.Unlock()
		z.signal()
		return len(p), nil
	}
	z.mu.pending = append(z.mu.pending, p...)
	z.mu.Unlock()
	if !z.started {
		z.started = true
		go z.run()
	}
	z.signal()
	return len(p), nil
}

func (z *Inflater) signal() {
	select {
	case z.wake <- struct{}{}:
	default:
	}
}

// Close ends the input: the decoder decodes what it was given (at most
// InflateBehind bytes, at most 64 times as many decoded) and ends; Close
// waits for it. Later Writes are ignored; a second Close does nothing.
func (z *Inflater) Close() {
	if !z.closed {
		z.closed = true
		z.mu.Lock()
		z.mu.ended = true
		z.mu.Unlock()
		z.signal()
	}
	if z.started {
		<-z.done
	}
}

// Usage ends the input (Close) and returns the tokens the decoded body
// reported, as Meter.Usage; nothing when the decoder gave up (Err).
func (z *Inflater) Usage() (int64, bool) {
	z.Close()
	if z.Err() != nil {
		return 0, false
	}
	return z.m.Usage()
}

// Err says why the usage was not read, after Close or Usage: ErrBehind,
// ErrInflation, the decoding error of a corrupt body (gzip.ErrChecksum,
// gzip.ErrHeader, a flate.CorruptInputError), or ErrPanic; nil when it
// was read (or the body held none). A body cut short is not an error: the
// Meter reads what arrived, as it does for an uncompressed one.
func (z *Inflater) Err() error {
	if z.gaveUp.Load() {
		return ErrBehind
	}
	return z.err
}

// inflateState is what a decoder needs, pooled: the gzip, zlib and flate
// readers (each with its 32 KiB window and tables, made on first use) and
// the buffer of decoded bytes.
type inflateState struct {
	gz  *gzip.Reader
	zl  io.ReadCloser
	fl  io.ReadCloser
	buf [inflateBuf]byte
}

var inflatePool = sync.Pool{New: func() any { return new(inflateState) }}

// run is the decoder: it inflates the queue into the Meter until the
// input ends, it gives up or the body is corrupt.
func (z *Inflater) run() {
	st := inflatePool.Get().(*inflateState)
	defer func() {
		if r := recover(); r != nil {
			z.err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
			st = nil // in an unknown state: not pooled
		}
		// Drop the queue: a pooled reader keeps its source (z) until it is
		// reset for another body.
		z.batch, z.cur, z.head = nil, nil, nil
		if st != nil {
			inflatePool.Put(st)
		}
		close(z.done)
	}()
	r, err := z.open(st)
	if err == nil {
		err = z.pump(r, st.buf[:])
	}
	switch {
	case err == nil, errors.Is(err, errStopped):
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The body ended (the Meter read what arrived) or was cut short:
		// an event or value cut short counts for nothing in the Meter.
	default:
		z.err = err
	}
}

// open returns the decoding reader over the queue.
func (z *Inflater) open(st *inflateState) (io.Reader, error) {
	src := (*inflateSource)(z)
	if z.coding == codingGzip {
		if st.gz == nil {
			gz, err := gzip.NewReader(src)
			st.gz = gz
			return gz, err
		}
		return st.gz, st.gz.Reset(src)
	}
	// deflate is zlib by RFC 9110 §8.4.1.2; some servers send raw
	// deflate. A zlib stream starts with CMF (compression method 8,
	// window at most 32 KiB) and FLG, together a multiple of 31 (RFC 1950
	// §2.2).
	b0, err := src.ReadByte()
	if err != nil {
		return nil, err
	}
	b1, err := src.ReadByte()
	if err != nil {
		return nil, err
	}
	z.head = []byte{b0, b1}
	if b0&0x0f == 8 && b0>>4 <= 7 && (uint16(b0)<<8|uint16(b1))%31 == 0 {
		if st.zl == nil {
			zl, err := zlib.NewReader(src)
			if err != nil {
				return nil, err
			}
			st.zl = zl
			return zl, nil
		}
		return st.zl, st.zl.(zlib.Resetter).Reset(src, nil)
	}
	if st.fl == nil {
		st.fl = flate.NewReader(src)
		return st.fl, nil
	}
	return st.fl, st.fl.(flate.Resetter).Reset(src, nil)
}

// pump moves decoded bytes to the Meter until r ends.
func (z *Inflater) pump(r io.Reader, buf []byte) error {
	var out int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			out += int64(n)
			// Against what the decoder read, not what was queued: the
			// same for any chunking of the body.
			if out > inflateFree && out > inflateRatio*z.in {
				return ErrInflation
			}
			_, _ = z.sink.Write(buf[:n])
		}
		if err != nil {
			return err
		}
		if z.gaveUp.Load() {
			return errStopped
		}
	}
}

// inflateSource is the decoder's side of the queue: an io.ByteReader
// too, so that flate reads it without a bufio.Reader of its own.
type inflateSource Inflater

func (s *inflateSource) Read(p []byte) (int, error) {
	z := (*Inflater)(s)
	if len(z.head) > 0 {
		n := copy(p, z.head)
		z.head = z.head[n:]
		return n, nil
	}
	if len(z.cur) == 0 {
		if err := z.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, z.cur)
	z.cur = z.cur[n:]
	z.in += int64(n)
	return n, nil
}

func (s *inflateSource) ReadByte() (byte, error) {
	z := (*Inflater)(s)
	if len(z.head) > 0 {
		c := z.head[0]
		z.head = z.head[1:]
		return c, nil
	}
	if len(z.cur) == 0 {
		if err := z.fill(); err != nil {
			return 0, err
		}
	}
	c := z.cur[0]
	z.cur = z.cur[1:]
	z.in++
	return c, nil
}

// fill takes everything queued as the decoder's next batch (the writer
// goes on with the old batch's array), waiting for it: io.EOF once the
// input ended, errStopped once given up.
func (z *Inflater) fill() error {
	for {
		if z.gaveUp.Load() {
			return errStopped
		}
		z.mu.Lock()
		if len(z.mu.pending) > 0 {
			z.batch, z.mu.pending = z.mu.pending, z.batch[:0]
			z.mu.Unlock()
			z.cur = z.batch
			return nil
		}
		ended := z.mu.ended
		z.mu.Unlock()
		if ended {
			return io.EOF
		}
		<-z.wake
	}
}
