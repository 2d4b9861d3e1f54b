package proxy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/hostport"
	"github.com/proxyd/proxyd/internal/upstream"
)

// Pricing and metering (cost.go) on the request path, side by side with
// what a request costs without them.

// benchChat is an OpenAI chat request body of about size bytes.
func benchChat(size int) []byte {
	head := `{"model":"gpt-4o","messages":[{"role":"user","content":"`
	tail := `"}],"max_tokens":512}`
	return []byte(head + strings.Repeat("The quick brown fox. ", max(0, size-len(head)-len(tail))/21) + tail)
}

// rereader is a request body that can be read again.
type rereader struct{ *bytes.Reader }

func (rereader) Close() error { return nil }

// BenchmarkPrice is the pricing step before admission (exchange.price):
// a request under no priced rule (the cost header only dropped), the cost
// header, and JSON bodies of 4 KiB and 100 KiB read and estimated.
func BenchmarkPrice(b *testing.B) {
	cfg := config.Default()
	cfg.Hosts = []config.HostRule{{Match: "api.openai.com", Quotas: []config.Quota{{Limit: 1_000_000, Per: time.Minute, Unit: config.QuotaTokens}}}}
	pol, err := compilePolicy(cfg)
	if err != nil {
		b.Fatal(err)
	}
	priced := hostport.HostPort{Host: "api.openai.com", Port: 443}
	other := hostport.HostPort{Host: "api.example.com", Port: 443}
	run := func(name string, dest hostport.HostPort, hdr string, body []byte) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			req, _ := http.NewRequest(http.MethodPost, "https://"+dest.Host+"/v1/chat/completions", nil)
			if hdr != "" {
				req.Header.Set("X-Proxy-Cost", hdr)
			}
			rr := rereader{bytes.NewReader(body)}
			req.Body, req.ContentLength = rr, int64(len(body))
			var want int64 = -1
			for b.Loop() {
				rr.Reset(body)
				x := exchange{pol: pol, in: req, dest: dest}
				n, err := x.price()
				if err != nil || (want >= 0 && n != want) {
					b.Fatalf("price = %d, %v", n, err)
				}
				want = n
			}
		})
	}
	run("unpriced", other, "", benchChat(4<<10))
	run("header", priced, "1234", benchChat(4<<10))
	run("body-4KiB", priced, "", benchChat(4<<10))
	run("body-100KiB", priced, "", benchChat(100<<10))
}

// discardWriter is a ResponseWriter that throws the body away.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) FlushError() error           { return nil }

// eventReader returns one server-sent event per Read, as a stream that
// arrives event by event does.
type eventReader struct {
	events [][]byte
	i      int
}

func (r *eventReader) Read(p []byte) (int, error) {
	if r.i == len(r.events) {
		return 0, io.EOF
	}
	n := copy(p, r.events[r.i])
	r.i++
	return n, nil
}

func (r *eventReader) Close() error { return nil }

// BenchmarkMeteredCopy is a response's copy to the client
// (upstream.CopyResponse) with its body fed to a cost.Meter (meteredBody)
// and without: a stream of 200 OpenAI chunks then its usage, and a 64 KiB
// JSON answer read 32 KiB at a time; then both gzip-compressed, the
// metered copy going through a cost.Inflater (its decoder goroutine
// included: the time is until Usage has the usage).
func BenchmarkMeteredCopy(b *testing.B) {
	var events [][]byte
	for i := range 200 {
		events = append(events, fmt.Appendf(nil, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"token %d "},"finish_reason":null}],"usage":null}`+"\n\n", i))
	}
	events = append(events, []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":200,"total_tokens":210}}`+"\n\n"), []byte("data: [DONE]\n\n"))
	json := []byte(`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("lorem ipsum ", 64<<10/12) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5000,"total_tokens":5010}}`)
	// The same, gzip-compressed as a server does it: the stream flushed
	// after each event (one chunk per event), the JSON whole.
	var gzEvents [][]byte
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	for _, ev := range events {
		_, _ = zw.Write(ev)
		_ = zw.Flush()
		gzEvents = append(gzEvents, bytes.Clone(zb.Bytes()))
		zb.Reset()
	}
	_ = zw.Close()
	gzEvents[len(gzEvents)-1] = append(gzEvents[len(gzEvents)-1], zb.Bytes()...)
	zb.Reset()
	zw.Reset(&zb)
	_, _ = zw.Write(json)
	_ = zw.Close()
	gzJSON := bytes.Clone(zb.Bytes())
	pr := &priceRule{rule: "api.openai.com"}
	for _, tt := range []struct {
		name, ct, ce string
		body         func() io.ReadCloser
		want         int64
	}{
		{"sse", "text/event-stream", "", func() io.ReadCloser { return &eventReader{events: events} }, 210},
		{"json", "application/json", "", func() io.ReadCloser { return rereader{bytes.NewReader(json)} }, 5010},
		{"sse-gzip", "text/event-stream", "gzip", func() io.ReadCloser { return &eventReader{events: gzEvents} }, 210},
		{"json-gzip", "application/json", "gzip", func() io.ReadCloser { return rereader{bytes.NewReader(gzJSON)} }, 5010},
	} {
		for _, metered := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/metered=%v", tt.name, metered), func(b *testing.B) {
				b.ReportAllocs()
				w := &discardWriter{h: http.Header{}}
				hdr := http.Header{"Content-Type": {tt.ct}}
				if tt.ce != "" {
					hdr.Set("Content-Encoding", tt.ce)
				}
				for b.Loop() {
					resp := &http.Response{StatusCode: 200, Header: hdr.Clone(), Body: tt.body(), ContentLength: -1}
					x := exchange{costRule: pr, permit: nil}
					var mb *meteredBody
					if metered {
						mb = x.meterAlways(resp)
					}
					if _, err := upstream.CopyResponse(w, resp, nil); err != nil {
						b.Fatal(err)
					}
					if mb != nil {
						if n, ok := mb.m.Usage(); !ok || n != tt.want {
							b.Fatalf("usage %d %v, want %d", n, ok, tt.want)
						}
					}
					clear(w.h)
				}
			})
		}
	}
}
