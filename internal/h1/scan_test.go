package h1

import (
	"bytes"
	"strings"
	"testing"
)

// scanWhole is headerScan's reference: the same verdict, worked out on the
// whole input at once, line by line. passed is how many bytes the scan
// lets through.
func scanWhole(in []byte, max int) (got headerScan, passed int) {
	got.max = max
	off := 0
	for i := 0; off < len(in); i++ {
		// A line, or the start of one: a field counts from its first byte.
		line, start, whole := in[off:], off, false
		if nl := bytes.IndexByte(line, '\n'); nl >= 0 {
			line, whole = line[:nl], true
		}
		off += len(line) + 1
		if i == 0 {
			continue // the request line
		}
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			if whole {
				return got, len(in) // the end of the block
			}
			break
		}
		if line[0] == ' ' || line[0] == '\t' || line[0] == '\r' {
			continue // obs-fold, or not a field
		}
		got.fields++
		if got.fields > max {
			got.tooMany = true
			return got, start
		}
		name, _, hasColon := bytes.Cut(line, []byte(":"))
		if bytes.ContainsAny(name, " \t") {
			got.wsName = true
		}
		if hasColon {
			got.sawCL = got.sawCL || strings.EqualFold(string(name), "content-length")
			got.sawTE = got.sawTE || strings.EqualFold(string(name), "transfer-encoding")
		}
	}
	return got, len(in)
}

// scanChunks feeds in to a headerScan in pieces of the given sizes (the
// bufio.Reader's reads), as connReader does.
func scanChunks(in []byte, max int, sizes []byte) (headerScan, int) {
	var s headerScan
	s.reset(max)
	passed := 0
	for k := 0; len(in) > 0; k++ {
		n := len(in)
		if len(sizes) > 0 {
			n = min(n, int(sizes[k%len(sizes)])+1)
		}
		m := s.feed(in[:n])
		passed += m
		if m < n {
			break // the cap was reached: nothing more is read
		}
		in = in[n:]
	}
	return s, passed
}

func TestHeaderScan(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		max        int
		cl, te, ws bool
		fields     int
		tooMany    bool
	}{
		{"plain", "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nbody: x\r\n", 200, false, false, false, 2, false},
		{"CL and TE", "POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-ENCODING: chunked\r\n\r\n", 200, true, true, false, 2, false},
		{"names that only start alike", "POST / HTTP/1.1\r\nContent-Lengths: 3\r\nTransfer-Encodin: x\r\nContent-Length-X: 1\r\n\r\n", 200, false, false, false, 3, false},
		{"space before colon", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", 200, false, false, true, 1, false},
		{"tab in a name", "GET / HTTP/1.1\r\nX\tY: 1\r\n\r\n", 200, false, false, true, 1, false},
		{"space in a value is fine", "GET / HTTP/1.1\r\nX-Y: a b : c\r\n\r\n", 200, false, false, false, 1, false},
		{"obs-fold is no field", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\tc\r\n\r\n", 1, false, false, false, 1, false},
		{"bare LF lines", "GET / HTTP/1.1\nContent-Length: 1\nX: 2\n\nzz", 200, true, false, false, 2, false},
		{"at the cap", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", 2, false, false, false, 2, false},
		{"beyond the cap", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 2, false, false, false, 3, true},
		{"after the block nothing counts", "GET / HTTP/1.1\r\nA: 1\r\n\r\nTransfer-Encoding : x\r\nB: 2\r\n", 1, false, false, false, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantPassed := scanWhole([]byte(tc.in), tc.max)
			if want.sawCL != tc.cl || want.sawTE != tc.te || want.wsName != tc.ws || want.fields != tc.fields || want.tooMany != tc.tooMany {
				t.Fatalf("reference: %+v, want cl %v te %v ws %v fields %d tooMany %v", want, tc.cl, tc.te, tc.ws, tc.fields, tc.tooMany)
			}
			for _, sizes := range [][]byte{nil, {0}, {2}, {6, 0, 1}} {
				got, passed := scanChunks([]byte(tc.in), tc.max, sizes)
				if !sameVerdict(got, want) || passed != wantPassed {
					t.Errorf("chunks %v: %+v passing %d, want %+v passing %d", sizes, got, passed, want, wantPassed)
				}
			}
		})
	}
}

func sameVerdict(a, b headerScan) bool {
	return a.fields == b.fields && a.tooMany == b.tooMany && a.sawCL == b.sawCL && a.sawTE == b.sawTE && a.wsName == b.wsName
}

// FuzzHeaderScan checks the streaming scan against scanWhole for any bytes
// cut in any pieces: the verdict (fields, CL, TE, whitespace in a name)
// and where it stops must not depend on how the bytes arrive.
//
//	go test -run=^$ -fuzz=FuzzHeaderScan -fuzztime=60s ./internal/h1
func FuzzHeaderScan(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), []byte{3, 0}, uint8(200))
	f.Add([]byte("GET / HTTP/1.1\r\nHost : x\r\n y\r\n\r\n"), []byte{}, uint8(1))
	f.Add([]byte("GET / HTTP/1.1\na:\na:\na:\n\n"), []byte{0}, uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\n\rX: 1\r\n\r\r\n\r\n"), []byte{1, 5}, uint8(3))
	f.Fuzz(func(t *testing.T, in, sizes []byte, max uint8) {
		m := int(max)%8 + 1
		want, wantPassed := scanWhole(in, m)
		got, passed := scanChunks(in, m, sizes)
		if !sameVerdict(got, want) || passed != wantPassed {
			t.Fatalf("%q in pieces %v: %+v passing %d, want %+v passing %d", in, sizes, got, passed, want, wantPassed)
		}
	})
}
