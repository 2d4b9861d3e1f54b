package proxy_test

import (
	"bufio"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/testprovider"
)

// Token quotas against a mock LLM provider (internal/testprovider) that
// enforces requests and tokens per window as OpenAI documents it: over
// plain http and inside an intercepted HTTPS tunnel, JSON and streamed
// answers.

// providerEnv is a proxy with a hosts rule for 127.0.0.1 holding quotas
// (tokens ones priced with the given cost), in front of handle served
// over http, or over https reached through an intercepted tunnel; client
// is the client to use.
func providerEnv(t *testing.T, tunnel bool, handle http.HandlerFunc, quotas []config.Quota, opts ...func(*setup)) (e *env, o *origin, client *http.Client) {
	t.Helper()
	opts = append([]func(*setup){func(s *setup) {
		s.cfg.Hosts = []config.HostRule{{Match: "127.0.0.1", Quotas: quotas}}
	}}, opts...)
	if tunnel {
		e = newEnv(t, append(opts, intercepting("127.0.0.1"))...)
		o = e.newTLSOrigin(handle)
		e.trustOrigin(o)
		return e, o, e.interceptClient(false)
	}
	e = newEnv(t, opts...)
	return e, e.newOrigin(handle), e.client
}

func tokensPer(limit int, per time.Duration) config.Quota {
	return config.Quota{Limit: limit, Per: per, Unit: config.QuotaTokens}
}

// The usage an answer reports replaces the estimate in the quota: a JSON
// answer's and a streamed one's (OpenAI's final usage chunk), also
// compressed with gzip (as the OpenAI and Anthropic SDKs ask for) and
// deflate; a streamed answer without usage, and one in an encoding proxyd
// cannot decode (br), keep the estimate.
func TestCostCorrectsQuota(t *testing.T) {
	t.Parallel()
	for _, tunnel := range []bool{false, true} {
		t.Run(fmt.Sprintf("intercepted=%v", tunnel), func(t *testing.T) {
			t.Parallel()
			prov := testprovider.New(testprovider.Config{})
			handle := func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/br":
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Content-Encoding", "br")
					_, _ = w.Write([]byte("\x0b\x02\x80not really brotli"))
					return
				case "/v1/chat/completions":
					if enc := r.URL.Query().Get("encoding"); enc != "" {
						compressed(t, enc, prov.ServeHTTP)(w, r)
						return
					}
				}
				prov.ServeHTTP(w, r)
			}
			e, o, client := providerEnv(t, tunnel, handle, []config.Quota{tokensPer(1_000_000, time.Hour)})
			want := 0
			noUsage := strings.Replace(chatBody(800, 300, 40, true), `"include_usage":true`, `"include_usage":false`, 1)
			for _, tt := range []struct {
				name, query      string
				body             string
				estimate, actual int64
				reported         bool
			}{
				{"json", "", chatBody(400, 500, 20, false), 100 + 500, 100 + 20, true},
				{"stream", "", chatBody(800, 300, 40, true), 200 + 300, 200 + 40, true},
				{"stream without usage", "", noUsage, 200 + 300, 0, false},
				{"gzip json", "?encoding=gzip", chatBody(400, 500, 30, false), 100 + 500, 100 + 30, true},
				{"gzip stream", "?encoding=gzip", chatBody(1200, 300, 50, true), 300 + 300, 300 + 50, true},
				{"deflate json", "?encoding=deflate", chatBody(400, 500, 60, false), 100 + 500, 100 + 60, true},
				{"gzip stream without usage", "?encoding=gzip", noUsage, 200 + 300, 0, false},
			} {
				r := e.req(http.MethodPost, o.URL+"/v1/chat/completions"+tt.query, strings.NewReader(tt.body))
				res := roundTrip(client, r)
				wantStatus(t, res, http.StatusOK)
				rec := e.record(idOf(r))
				if rec.CostEstimate != tt.estimate || rec.CostReported != tt.reported || rec.CostActual != tt.actual {
					t.Errorf("%s: cost %d, actual %d (reported %v); want %d, %d (%v)", tt.name, rec.CostEstimate, rec.CostActual, rec.CostReported, tt.estimate, tt.actual, tt.reported)
				}
				if tt.reported {
					want += int(tt.actual)
				} else {
					want += int(tt.estimate)
				}
				if u := e.tokensUsed(); u != want {
					t.Errorf("%s: tokens used %d, want %d", tt.name, u, want)
				}
			}
			r := e.req(http.MethodGet, o.URL+"/br", nil, "X-Proxy-Cost", "300")
			wantStatus(t, roundTrip(client, r), http.StatusOK)
			if rec := e.record(idOf(r)); rec.CostReported {
				t.Errorf("a br answer's usage was read: %d", rec.CostActual)
			}
			if u := e.tokensUsed(); u != want+300 {
				t.Errorf("br: tokens used %d, want %d (its price)", u, want+300)
			}
			if n := e.logs.FilterMessage("response usage not read: the estimate stays").FilterField(zap.String("request_id", idOf(r))).Len(); n != 1 {
				t.Errorf("%d debug lines for the br answer's usage, want 1", n)
			}
			// The access log line carries both.
			var found bool
			for _, l := range e.logs.FilterMessage("request").All() {
				m := l.ContextMap()
				if m["cost_estimate"] == int64(100+500) && m["cost_actual"] == int64(100+20) {
					found = true
				}
			}
			if !found {
				t.Error("no access-log line with cost_estimate 600 and cost_actual 120")
			}
		})
	}
}

// compressingWriter is a ResponseWriter that compresses what the handler
// writes (gzip or deflate) and flushes the compressor when the handler
// flushes, as a server compressing an event stream does.
type compressingWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	z  interface {
		Write([]byte) (int, error)
		Flush() error
		Close() error
	}
	wrote bool
}

func newCompressingWriter(t *testing.T, w http.ResponseWriter, enc string) *compressingWriter {
	cw := &compressingWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	switch enc {
	case "gzip":
		cw.z = gzip.NewWriter(w)
	case "gzip-stored":
		// Stored blocks: as fast as a copy, for noise that would not
		// compress anyway.
		cw.z, _ = gzip.NewWriterLevel(w, gzip.NoCompression)
		enc = "gzip"
	case "deflate":
		cw.z = zlib.NewWriter(w)
	default:
		t.Errorf("unknown encoding %q", enc)
	}
	w.Header().Set("Content-Encoding", enc)
	return cw
}

func (c *compressingWriter) WriteHeader(code int) {
	c.wrote = true
	c.Header().Del("Content-Length")
	c.ResponseWriter.WriteHeader(code)
}

func (c *compressingWriter) Write(p []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return c.z.Write(p)
}

func (c *compressingWriter) FlushError() error {
	if err := c.z.Flush(); err != nil {
		return err
	}
	return c.rc.Flush()
}

// compressed wraps a handler so that its answer goes out compressed with
// enc, ended when the handler returns.
func compressed(t *testing.T, enc string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cw := newCompressingWriter(t, w, enc)
		h(cw, r)
		if !cw.wrote {
			cw.WriteHeader(http.StatusOK)
		}
		_ = cw.z.Close()
	}
}

// Offered more than the provider's tokens per window, in requests of
// very different sizes, JSON and streamed, all at once: proxyd queues
// them within its quotas (set to the provider's limits) and the provider
// never answers 429; every answer's usage is counted.
func TestTokensQuotaWithProvider(t *testing.T) {
	t.Parallel()
	for _, tunnel := range []bool{false, true} {
		t.Run(fmt.Sprintf("intercepted=%v", tunnel), func(t *testing.T) {
			t.Parallel()
			const rpm, tpm = 20, 4000 // per second
			prov := testprovider.New(testprovider.Config{RPM: rpm, TPM: tpm, Period: time.Second})
			e, o, client := providerEnv(t, tunnel, prov.ServeHTTP,
				[]config.Quota{{Limit: rpm, Per: time.Second}, tokensPer(tpm, time.Second)})
			rng := rand.New(rand.NewPCG(24, 24))
			type call struct {
				body             string
				estimate, actual int64
				res              <-chan result
				id               string
			}
			var calls []*call
			var offered, used int64
			for i := range 24 {
				// Heavy-tailed: most small, a few near the limit.
				size := 200 + int(4000*rng.Float64()*rng.Float64()*rng.Float64())
				maxTokens := 20 + int(1500*rng.Float64()*rng.Float64())
				completion := maxTokens / (1 + rng.IntN(4))
				b := chatBody(size, maxTokens, completion, i%2 == 1)
				c := &call{body: b, estimate: int64(len(b)/4 + maxTokens), actual: int64(len(b)/4 + completion)}
				offered += c.estimate
				used += c.actual
				r := e.req(http.MethodPost, o.URL+"/v1/chat/completions", strings.NewReader(b))
				c.id = idOf(r)
				ch := make(chan result, 1)
				go func() { ch <- roundTrip(client, r) }()
				c.res = ch
				calls = append(calls, c)
			}
			for _, c := range calls {
				res := recv(t, c.res, "answer "+c.id)
				wantStatus(t, res, http.StatusOK)
				rec := e.record(c.id)
				if rec.CostEstimate != c.estimate || !rec.CostReported || rec.CostActual != c.actual {
					t.Errorf("%s: cost %d actual %d (%v), want %d %d", c.id, rec.CostEstimate, rec.CostActual, rec.CostReported, c.estimate, c.actual)
				}
			}
			st := prov.Stats()
			if st.Rejected != 0 {
				t.Errorf("provider answered %d 429s (%d for tokens), want none: %+v", st.Rejected, st.RejectedTokens, st)
			}
			if st.TokensUsed != used {
				t.Errorf("provider counted %d tokens used, the answers %d", st.TokensUsed, used)
			}
			t.Logf("offered %d tokens estimated (%d used) at %d per second: %d admitted by the provider, 0 refused", offered, used, tpm, st.Admitted)
			if offered < 2*tpm || used < tpm {
				t.Fatalf("offered %d (used %d): not more than the quota", offered, used)
			}
		})
	}
}

// signalClock is a fake clock that tells when something starts waiting
// on it, so that the test advances it only once the provider waits.
type signalClock struct {
	*clock.Fake
	scheduled chan time.Duration
}

func (c signalClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := c.Fake.AfterFunc(d, f)
	c.scheduled <- d
	return t
}

// flushTimes records when the handler flushed, as it asks to.
type flushTimes struct {
	http.ResponseWriter
	rc *http.ResponseController
	at chan<- time.Time
}

func (f *flushTimes) FlushError() error {
	f.at <- time.Now()
	return f.rc.Flush()
}

func (f *flushTimes) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// A streamed answer's events reach the client as the provider sends
// them while its usage is counted: the provider sends each content event
// only once the client has read the one before (it waits on a fake clock
// that the test advances after the read), so an event held back in the
// proxy would stall the test. The lag from the provider's flush to the
// client's read is measured and logged (directly and through proxyd,
// plain, intercepted, and gzip-compressed: the usage then read through
// the decoder on the side).
func TestStreamEventsNotHeldBack(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"direct", "plain", "intercepted", "gzip"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			const events = 40
			clk := signalClock{clock.NewFake(t0stream), make(chan time.Duration, 1)}
			prov := testprovider.New(testprovider.Config{Events: events, EventDelay: time.Second, Clock: clk})
			flushed := make(chan time.Time, events+8)
			handle := func(w http.ResponseWriter, r *http.Request) {
				prov.ServeHTTP(&flushTimes{ResponseWriter: w, rc: http.NewResponseController(w), at: flushed}, r)
			}
			if mode == "gzip" {
				// Compressed, flushed per event: the client (Go's, which
				// asked for gzip) decodes it; proxyd's meter too.
				handle = compressed(t, "gzip", handle)
			}
			e, o, client := providerEnv(t, mode == "intercepted", handle, []config.Quota{tokensPer(1_000_000, time.Hour)})
			if mode == "direct" {
				client = &http.Client{Timeout: 3 * waitLimit}
			}
			body := chatBody(400, 400, 400, true)
			r := e.req(http.MethodPost, o.URL+"/v1/chat/completions", strings.NewReader(body))
			resp, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var stream io.Reader = resp.Body
			if mode == "gzip" {
				if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
					t.Fatalf("Content-Encoding %q, want gzip", ce)
				}
				zr, err := gzip.NewReader(resp.Body) // the client decodes as it reads
				if err != nil {
					t.Fatal(err)
				}
				stream = zr
			}
			br := bufio.NewReader(stream)
			// readEvent reads one event (up to its blank line).
			readEvent := func() string {
				var ev strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("reading the stream after %q: %v", ev.String(), err)
					}
					if line == "\n" {
						return ev.String()
					}
					ev.WriteString(line)
				}
			}
			var lags []time.Duration
			for i := range events {
				if i > 0 {
					// The provider waits before event i: it has not sent
					// it, and the client has read event i-1.
					recv(t, clk.scheduled, "the provider waiting before event "+fmt.Sprint(i))
					clk.Advance(time.Second)
				}
				ev := readEvent()
				read := time.Now()
				sent := recv(t, flushed, "the provider's flush of event "+fmt.Sprint(i))
				if !strings.Contains(ev, `"content"`) {
					t.Fatalf("event %d: %q, want a content chunk", i, ev)
				}
				lags = append(lags, read.Sub(sent))
			}
			var rest strings.Builder
			for ev := readEvent(); ev != "data: [DONE]\n"; ev = readEvent() {
				rest.WriteString(ev)
			}
			if !strings.Contains(rest.String(), `"total_tokens":`) {
				t.Fatalf("no usage chunk at the end: %q", rest.String())
			}
			resp.Body.Close()
			slices.Sort(lags)
			t.Logf("%s: flush-to-read lag over %d events: median %v, p90 %v, max %v", mode, len(lags),
				lags[len(lags)/2], lags[len(lags)*9/10], lags[len(lags)-1])
			if mode == "direct" {
				return
			}
			rec := e.record(idOf(r))
			if want := int64(len(body)/4 + 400); !rec.CostReported || rec.CostActual != want {
				t.Errorf("usage %d (reported %v), want %d", rec.CostActual, rec.CostReported, want)
			}
			if u := e.tokensUsed(); u != int(rec.CostActual) {
				t.Errorf("tokens used %d, want %d", u, rec.CostActual)
			}
		})
	}
}

var t0stream = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// decoders counts the goroutines decoding a compressed answer's usage
// (cost.Inflater).
func decoders() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "internal/cost.(*Inflater).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// A gzip event stream whose client stops reading mid-stream (cut by
// client_write_timeout), or leaves, ends its usage decoder with the
// response: no goroutine is left behind. Not parallel: it counts the
// decoders of the whole process.
func TestCompressedStreamClientGoneNoLeak(t *testing.T) {
	for _, mode := range []string{"stops reading", "leaves"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, func(s *setup) {
				s.cfg.Hosts = []config.HostRule{{Match: "127.0.0.1", Quotas: []config.Quota{tokensPer(1_000_000, time.Hour)}}}
				s.cfg.ClientWriteTimeout = 200 * time.Millisecond
			})
			// An endless stream: its usage first, then (once the test saw
			// the decoder start) comment lines of noise, as large
			// compressed, until the proxy stops taking them.
			more := make(chan struct{})
			o := e.newOrigin(compressed(t, "gzip-stored", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				rc := http.NewResponseController(w)
				_, _ = io.WriteString(w, "event: message_start\ndata: {\"message\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n")
				if rc.Flush() != nil {
					return
				}
				<-more
				r := rand.New(rand.NewPCG(1, 2))
				noise := make([]byte, 30<<10)
				for i := range noise {
					noise[i] = byte(r.Uint32())
				}
				line := ": " + base64.StdEncoding.EncodeToString(noise) + "\n"
				for range 2048 { // at most 80 MiB
					if _, err := io.WriteString(w, line); err != nil || rc.Flush() != nil {
						return
					}
				}
			}))
			c, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			host := strings.TrimPrefix(o.URL, "http://")
			if _, err := fmt.Fprintf(c, "GET %s/stream HTTP/1.1\r\nHost: %s\r\nX-Request-Id: gz-stream\r\nAccept-Encoding: gzip\r\n\r\n", o.URL, host); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the stream's head: %v", err)
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
				t.Fatalf("Content-Encoding %q, want gzip", ce)
			}
			waitFor(t, "the usage decoder running", func() bool { return decoders() == 1 })
			close(more)
			if mode == "leaves" {
				c.Close()
			}
			rec := e.record("gz-stream")
			if rec.CostRule == "" || rec.Bytes <= 0 {
				t.Errorf("Record: rule %q, %d bytes; want a priced response cut mid-stream", rec.CostRule, rec.Bytes)
			}
			if mode == "stops reading" && !rec.ClientWriteTimeout {
				t.Errorf("Record: client write timeout %v, want the stream cut by it (err %v)", rec.ClientWriteTimeout, rec.Err)
			}
			waitFor(t, "no usage decoder left", func() bool { return decoders() == 0 })
		})
	}
}
