package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestWriteRequestHeadMatchesRequestWrite: the pooled client's writer
// sends exactly what Request.Write would, for the requests it handles and
// for those it hands to Request.Write.
func TestWriteRequestHeadMatchesRequestWrite(t *testing.T) {
	req := func(method, target string, h http.Header) *http.Request {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			h = http.Header{}
		}
		return &http.Request{Method: method, URL: u, Host: u.Host, Header: h, ProtoMajor: 1, ProtoMinor: 1}
	}
	tests := []struct {
		name string
		out  *http.Request
	}{
		{"get", req("GET", "http://up.example:8080/a/b?x=1&y=%20", http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}})},
		{"empty method is GET", req("", "http://up.example/", nil)},
		{"empty path", req("GET", "http://up.example", http.Header{"User-Agent": {""}})},
		{"head", req("HEAD", "http://up.example/h", nil)},
		{"post without a body sends Content-Length 0", req("POST", "http://up.example/p", http.Header{"Idempotency-Key": {"k1"}})},
		{"put", req("PUT", "http://up.example/p", nil)},
		{"delete", req("DELETE", "http://up.example/d", nil)},
		{"options", req("OPTIONS", "http://up.example/o", nil)},
		{"patch", req("PATCH", "http://up.example/p", nil)},
		{"many fields, sorted, repeated values", req("GET", "http://up.example/", http.Header{
			"Zeta": {"z"}, "Alpha": {"a1", "a2"}, "Via": {"1.1 proxyd"}, "Priority": {"u=1"}, "X-Request-Id": {"r"},
			"Accept-Encoding": {"gzip"}, "Cookie": {"a=b; c=d"}})},
		{"user agent absent gets Go's", req("GET", "http://up.example/", http.Header{"Accept": {"x"}})},
		{"user agent empty list", req("GET", "http://up.example/", http.Header{"User-Agent": {}})},
		{"values with CR, LF and spaces", req("GET", "http://up.example/", http.Header{
			"User-Agent": {" ua\r\nInjected: 1 "}, "X-A": {"\tv1 \n v2\t"}, "X-Empty": {""}})},
		{"excluded fields", req("GET", "http://up.example/", http.Header{
			"Host": {"other"}, "Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}})},
		{"invalid field name dropped", req("GET", "http://up.example/", http.Header{"Bad Name": {"x"}, "Ok": {"y"}})},
		{"host differs from URL", func() *http.Request { r := req("GET", "http://10.0.0.1:81/", nil); r.Host = "api.example"; return r }()},
		{"ipv6", req("GET", "http://[::1]:8080/v6", nil)},
		{"ipv6 zone (Request.Write removes it)", req("GET", "http://[fe80::1%25eth0]:8080/z", nil)},
		{"unicode host (Request.Write converts it)", req("GET", "http://bücher.example/", nil)},
		{"invalid host (Request.Write sends none)", func() *http.Request { r := req("GET", "http://up.example/", nil); r.Host = "a b"; return r }()},
		{"close", func() *http.Request { r := req("GET", "http://up.example/", nil); r.Close = true; return r }()},
		{"trailer", func() *http.Request {
			r := req("GET", "http://up.example/", nil)
			r.Trailer = http.Header{"X-T": nil}
			return r
		}()},
		{"opaque", func() *http.Request {
			r := req("GET", "http://up.example/", nil)
			r.URL.Opaque = "//up.example/op"
			return r
		}()},
		{"more fields than the stack array", func() *http.Request {
			h := http.Header{}
			for _, c := range "abcdefghijklmnopqrstuvwxyz0123" {
				h["X-"+strings.ToUpper(string(c))] = []string{string(c)}
			}
			return req("GET", "http://up.example/", h)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want, got bytes.Buffer
			errWant := tt.out.Write(&want)
			bw := bufio.NewWriter(&got)
			errGot := writeRequestHead(bw, tt.out)
			bw.Flush()
			if (errGot == nil) != (errWant == nil) {
				t.Fatalf("error %v, Request.Write's %v", errGot, errWant)
			}
			if got.String() != want.String() {
				t.Errorf("wrote\n%q\nRequest.Write wrote\n%q", got.String(), want.String())
			}
		})
	}
}

func TestWriteRequestHeadRefusesControlBytes(t *testing.T) {
	out := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "up.example", Path: "/a", RawQuery: "q=\x01"}, Host: "up.example", Header: http.Header{}}
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	err := writeRequestHead(bw, out)
	bw.Flush()
	if err == nil || !strings.Contains(err.Error(), "control character") {
		t.Fatalf("error %v, want Request.Write's control character error", err)
	}
	if b.Len() != 0 {
		t.Errorf("wrote %q before refusing", b.String())
	}
}

func BenchmarkWriteRequestHead(b *testing.B) {
	u, _ := url.Parse("http://up.example:8080/v1/items?page=2")
	out := &http.Request{Method: "GET", URL: u, Host: u.Host, Header: http.Header{
		"Accept": {"application/json"}, "User-Agent": {"client/1.0"}, "Via": {"1.1 proxyd"},
		"Priority": {"u=3"}, "X-Request-Id": {"abc-1"}, "Accept-Encoding": {"gzip"}}}
	bw := bufio.NewWriterSize(io.Discard, 4<<10)
	for _, bc := range []struct {
		name  string
		write func() error
	}{
		{"writeRequestHead", func() error { return writeRequestHead(bw, out) }},
		{"Request.Write", func() error { return out.Write(bw) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.write(); err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
		})
	}
}

// FuzzWriteRequestHead: for any bodiless request, the pooled client's
// writer sends byte for byte what Request.Write sends, or both refuse.
// hdr is "Name: value" lines separated by "\n" (a value may hold a CR).
func FuzzWriteRequestHead(f *testing.F) {
	f.Add("GET", "http://up.example:8080/a/b?x=1&y=%20", "", "Accept: */*\nUser-Agent: curl/8", false)
	f.Add("", "http://up.example", "", "User-Agent: ", false)
	f.Add("POST", "http://up.example/p", "", "Idempotency-Key: k1", false)
	f.Add("GET", "http://[fe80::1%25eth0]:8080/z", "", "", false)
	f.Add("GET", "http://bücher.example/", "", "", false)
	f.Add("GET", "http://up.example/", "a b", "X-A: \tv1 \r v2", true)
	f.Add("PATCH", "http://10.0.0.1:81/q?\x01", "api.example", "Host: other\nContent-Length: 5\nTransfer-Encoding: chunked\nTrailer: X\nBad Name: x", false)
	f.Fuzz(func(t *testing.T, method, target, host, hdr string, close bool) {
		u, err := url.Parse(target)
		if err != nil {
			return
		}
		h := http.Header{}
		for line := range strings.SplitSeq(hdr, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				h[k] = append(h[k], v)
			}
		}
		out := &http.Request{Method: method, URL: u, Host: u.Host, Header: h, ProtoMajor: 1, ProtoMinor: 1, Close: close}
		if host != "" {
			out.Host = host
		}
		var want, got bytes.Buffer
		errWant := out.Write(&want)
		bw := bufio.NewWriter(&got)
		errGot := writeRequestHead(bw, out)
		bw.Flush()
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("%q %q host %q %q: error %v, Request.Write's %v", method, target, host, hdr, errGot, errWant)
		}
		if errWant == nil && got.String() != want.String() {
			t.Fatalf("wrote\n%q\nRequest.Write wrote\n%q", got.String(), want.String())
		}
	})
}
