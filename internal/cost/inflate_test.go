package cost

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
)

// compress encodes body as enc says: "gzip" (flushed every flushEvery
// bytes when > 0, as a server flushes each event of a stream, and in two
// members when members is 2), "zlib" or "raw" deflate.
func compress(t testing.TB, enc string, body []byte, flushEvery, members int) []byte {
	t.Helper()
	var b bytes.Buffer
	write := func(w interface {
		Write([]byte) (int, error)
		Flush() error
		Close() error
	}, body []byte) {
		for len(body) > 0 {
			n := len(body)
			if flushEvery > 0 {
				n = min(n, flushEvery)
			}
			if _, err := w.Write(body[:n]); err != nil {
				t.Fatal(err)
			}
			if flushEvery > 0 {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			body = body[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	switch enc {
	case "gzip":
		parts := [][]byte{body}
		if members == 2 {
			parts = [][]byte{body[:len(body)/2], body[len(body)/2:]}
		}
		for _, p := range parts {
			write(gzip.NewWriter(&b), p)
		}
	case "zlib":
		write(zlib.NewWriter(&b), body)
	case "raw":
		w, err := flate.NewWriter(&b, flate.DefaultCompression)
		if err != nil {
			t.Fatal(err)
		}
		write(w, body)
	default:
		t.Fatalf("unknown encoding %q", enc)
	}
	return b.Bytes()
}

// inflate runs a compressed body through a fresh Inflater into a Meter
// for ct, in the given chunks.
func inflate(t testing.TB, ct, ce string, chunks ...[]byte) (int64, bool, error) {
	t.Helper()
	z, err := NewInflater(ce, NewMeter(ct, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if n, err := z.Write(c); n != len(c) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(c))
		}
	}
	n, ok := z.Usage()
	return n, ok, z.Err()
}

// Compressed well-formed responses of every built-in shape, JSON and
// streamed, gzip (one member, flushed per event, two members), zlib and
// raw deflate: the exact usage, split at every byte boundary of the
// compressed body, byte by byte and in random chunks.
func FuzzInflateWellFormed(f *testing.F) {
	f.Add(uint8(0), uint8(0), "Hello, world", int64(9), int64(12), uint64(1))
	f.Add(uint8(1), uint8(1), "streamed \"text\" \u00e9", int64(100), int64(3), uint64(7))
	f.Add(uint8(3), uint8(2), "anthropic", int64(25), int64(15), uint64(2))
	f.Add(uint8(7), uint8(3), "responses", int64(1), int64(0), uint64(3))
	f.Add(uint8(5), uint8(4), "gemini", int64(5), int64(6), uint64(4))
	f.Fuzz(func(t *testing.T, shape, enc uint8, text string, in, out int64, seed uint64) {
		clamp := func(n int64) int64 { return max(0, n) % 1_000_000_001 }
		in, out = clamp(in), clamp(out)
		r := rand.New(rand.NewPCG(seed, 24))
		body, ct, want := wellFormed(t, shape%8, text, in, out, 3, 4, r)
		encs := []struct {
			name, ce string
			flush    int
			members  int
		}{
			{"gzip", "gzip", 0, 1}, {"gzip", "x-gzip", 64, 1}, {"gzip", "GZIP", 0, 2}, {"zlib", "deflate", 0, 1}, {"raw", "deflate", 48, 1},
		}
		e := encs[int(enc)%len(encs)]
		z := compress(t, e.name, body, e.flush, e.members)
		check := func(how string, chunks ...[]byte) {
			t.Helper()
			if n, ok, err := inflate(t, ct, e.ce, chunks...); n != want || !ok || err != nil {
				t.Fatalf("shape %d, %s (%s, flush %d, %d members) %s: Usage() = %d, %v (%v); want %d, true\n%s",
					shape%8, e.ce, e.name, e.flush, e.members, how, n, ok, err, want, body)
			}
		}
		check("whole", z)
		for i := range len(z) + 1 {
			check("split at "+strconv.Itoa(i), z[:i], z[i:])
		}
		bytewise := make([][]byte, len(z))
		for i := range z {
			bytewise[i] = z[i : i+1]
		}
		check("byte by byte", bytewise...)
		for range 4 {
			check("random chunks", randomChunks(r, z)...)
		}
	})
}

// Any bytes as a gzip or deflate body, in any chunks: no panic, and the
// same answer whatever the chunks.
func FuzzInflateGarbage(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0}, false, uint64(1))
	f.Add([]byte{0x78, 0x9c, 3, 0, 0, 0, 0, 1}, true, uint64(2))
	f.Add(compress(f, "gzip", []byte(`{"usage":{"total_tokens":7}}`), 0, 1)[:20], false, uint64(3))
	f.Add([]byte("not compressed at all"), true, uint64(4))
	f.Fuzz(func(t *testing.T, body []byte, deflate bool, seed uint64) {
		ce := "gzip"
		if deflate {
			ce = "deflate"
		}
		for _, ct := range []string{"application/json", "text/event-stream"} {
			wn, wok, werr := inflate(t, ct, ce, body)
			if wok && werr != nil {
				t.Fatalf("usage %d reported with error %v", wn, werr)
			}
			r := rand.New(rand.NewPCG(seed, 5))
			for range 3 {
				n, ok, err := inflate(t, ct, ce, randomChunks(r, body)...)
				if n != wn || ok != wok || (err == nil) != (werr == nil) {
					t.Fatalf("%s %q in chunks: %d, %v, %v; whole %d, %v, %v", ct, body, n, ok, err, wn, wok, werr)
				}
			}
		}
	})
}

func TestEncoded(t *testing.T) {
	for _, tt := range []struct {
		ce      string
		encoded bool
		err     string
	}{
		{"", false, `content encoding not decoded: no coding in ""`},
		{"identity", false, `content encoding not decoded: no coding in "identity"`},
		{" Identity , ", false, `content encoding not decoded: no coding in " Identity , "`},
		{"gzip", true, ""},
		{"x-gzip", true, ""},
		{"GZip", true, ""},
		{"deflate", true, ""},
		{"gzip, identity", true, ""},
		{"br", true, `content encoding not decoded: "br"`},
		{"zstd", true, `content encoding not decoded: "zstd"`},
		{"compress", true, `content encoding not decoded: "compress"`},
		{"deflate, gzip", true, `content encoding not decoded: "deflate, gzip": more than one coding`},
	} {
		if got := Encoded(tt.ce); got != tt.encoded {
			t.Errorf("Encoded(%q) = %v, want %v", tt.ce, got, tt.encoded)
		}
		_, err := NewInflater(tt.ce, NewMeter("", nil))
		got := ""
		if err != nil {
			got = err.Error()
			if !errors.Is(err, ErrEncoding) {
				t.Errorf("NewInflater(%q): %v is not ErrEncoding", tt.ce, err)
			}
		}
		if got != tt.err {
			t.Errorf("NewInflater(%q) = %q, want %q", tt.ce, got, tt.err)
		}
	}
}

// The usage is not read from a corrupt body (a bad checksum, trailing
// garbage), a decompression bomb or a body that is not compressed; a body
// cut short gives what arrived, as for an uncompressed one; nothing
// written starts no decoder.
func TestInflateGivesUp(t *testing.T) {
	usage := []byte(`{"usage":{"total_tokens":7}}`)
	good := compress(t, "gzip", usage, 0, 1)
	badSum := bytes.Clone(good)
	badSum[len(badSum)-5] ^= 0xff // the CRC-32 (RFC 1952 §2.3.1)
	stream := []byte("data: {\"usage\":{\"prompt_tokens\":3,\"total_tokens\":8}}\n\ndata: {\"choices\":[]}\n\n")
	cut := compress(t, "gzip", stream, 32, 1)
	for _, tt := range []struct {
		name, ct, ce string
		body         []byte
		want         int64
		ok           bool
		err          error
	}{
		{"good", "application/json", "gzip", good, 7, true, nil},
		{"bad checksum", "application/json", "gzip", badSum, 0, false, gzip.ErrChecksum},
		{"trailing garbage", "application/json", "gzip", append(bytes.Clone(good), "garbage!!!"...), 0, false, gzip.ErrHeader},
		{"not gzip", "application/json", "gzip", usage, 0, false, gzip.ErrHeader},
		{"bomb", "application/json", "gzip", compress(t, "gzip", make([]byte, 8<<20), 0, 1), 0, false, ErrInflation},
		{"stream cut after its usage event", "text/event-stream", "gzip", cut[:len(cut)-20], 8, true, nil},
		{"empty", "application/json", "gzip", nil, 0, false, nil},
	} {
		n, ok, err := inflate(t, tt.ct, tt.ce, tt.body)
		if n != tt.want || ok != tt.ok || !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%s: %d, %v, %v; want %d, %v, %v", tt.name, n, ok, err, tt.want, tt.ok, tt.err)
		}
	}
}

// gate is a Meter's stand-in that blocks the decoder at its first write
// until opened.
type gate struct {
	entered chan struct{}
	open    chan struct{}
	once    bool
}

func (g *gate) Write(p []byte) (int, error) {
	if !g.once {
		g.once = true
		close(g.entered)
		<-g.open
	}
	return len(p), nil
}

// A decoder that falls behind gives up once more than InflateBehind
// compressed bytes wait, instead of holding them: later writes are
// dropped, Usage reports nothing and ErrBehind, and the decoder ends
// (goleak in TestMain). Writes never wait for it.
func TestInflateBehind(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	noise := make([]byte, 3*InflateBehind) // incompressible: as many compressed bytes
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	body := compress(t, "gzip", noise, 0, 1)
	z, err := NewInflater("gzip", NewMeter("application/json", nil))
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{entered: make(chan struct{}), open: make(chan struct{})}
	z.sink = g
	z.Write(body[:64<<10]) // more than flate's 32 KiB window: it has output
	<-g.entered            // the decoder is stuck in the Meter
	for off := 64 << 10; off < len(body) && !z.gaveUp.Load(); off += 32 << 10 {
		z.Write(body[off:min(off+32<<10, len(body))])
	}
	if !z.gaveUp.Load() {
		t.Fatal("the decoder was blocked and more than InflateBehind bytes were written, but it did not give up")
	}
	z.mu.Lock()
	held := len(z.mu.pending)
	z.mu.Unlock()
	if held != 0 {
		t.Errorf("%d bytes still queued after giving up", held)
	}
	close(g.open)
	if n, ok := z.Usage(); ok || !errors.Is(z.Err(), ErrBehind) {
		t.Errorf("Usage() = %d, %v, Err() = %v; want nothing, ErrBehind", n, ok, z.Err())
	}

	// A single chunk larger than the queue gives up before any decoder.
	z, _ = NewInflater("gzip", NewMeter("application/json", nil))
	z.Write(body[:InflateBehind+1])
	if n, ok := z.Usage(); ok || !errors.Is(z.Err(), ErrBehind) || z.started {
		t.Errorf("a chunk over InflateBehind: Usage() = %d, %v, Err() = %v, decoder started %v", n, ok, z.Err(), z.started)
	}
}

// Close ends a decoder waiting for more of a body that never comes (the
// client left mid-stream); a second Close and Usage after it return at
// once.
func TestInflateClose(t *testing.T) {
	stream := compress(t, "gzip", []byte("data: {\"usage\":{\"total_tokens\":8}}\n\ndata: {\"x\":1}\n\n"), 16, 1)
	z, _ := NewInflater("gzip", NewMeter("text/event-stream", nil))
	z.Write(stream[:len(stream)/2])
	z.Close()
	select {
	case <-z.done:
	default:
		t.Fatal("Close returned before the decoder ended")
	}
	z.Close()
	z.Write(stream[len(stream)/2:]) // ignored
	if n, ok := z.Usage(); z.Err() != nil || ok && n != 8 {
		t.Errorf("Usage() after Close = %d, %v (%v)", n, ok, z.Err())
	}
}
