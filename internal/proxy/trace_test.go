package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/tracing"
	"github.com/proxyd/proxyd/internal/tracing/otlptest"
)

// traceRig is a proxy's tracing, exported over OTLP/HTTP to an in-process
// receiver that decodes the real protobuf.
type traceRig struct {
	rc *otlptest.Receiver
	tr *tracing.Tracing
}

// traced returns the rig and the setup option that traces the proxy's
// requests to it (tracing.sample_ratio ratio).
func traced(t *testing.T, ratio float64) (*traceRig, func(*setup)) {
	t.Helper()
	g := &traceRig{rc: otlptest.NewHTTP(t)}
	var err error
	g.tr, err = tracing.New(config.Tracing{OTLPEndpoint: g.rc.Endpoint, OTLPProtocol: config.TracingHTTPProtobuf, SampleRatio: ratio}, tracing.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.tr.Shutdown(context.Background()) })
	return g, func(s *setup) { s.tracer = g.tr.Provider() }
}

// spans flushes the batcher (call it once every Record awaited is in:
// a request's span ends before its Record is observed) and returns what
// the receiver got, by trace id.
func (g *traceRig) spans(t *testing.T) map[string][]otlptest.Span {
	t.Helper()
	if err := g.tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return g.rc.Traces()
}

// one returns the one span of name among spans.
func one(t *testing.T, spans []otlptest.Span, name string) otlptest.Span {
	t.Helper()
	var found []otlptest.Span
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q, want 1; spans: %s", len(found), name, names(spans))
	}
	return found[0]
}

func named(spans []otlptest.Span, name string) []otlptest.Span {
	var out []otlptest.Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func names(spans []otlptest.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "[%s %s parent=%s %v] ", s.Name, s.SpanID, s.ParentID, s.Attrs)
	}
	return b.String()
}

// wantAttrs checks some attributes of s.
func wantAttrs(t *testing.T, s otlptest.Span, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got, ok := s.Attrs[k]; !ok || got != v {
			t.Errorf("span %q: %s = %#v, want %#v (all: %v)", s.Name, k, got, v, s.Attrs)
		}
	}
}

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00f067aa0ba902b7"
)

// One trace per request: the server span continues the client's
// traceparent (or starts a trace), the queue wait and the upstream
// attempt are its children, and the upstream gets a traceparent of the
// same trace whose parent is the attempt span.
func TestTraceSpans(t *testing.T) {
	t.Parallel()
	g, opt := traced(t, 1)
	e := newEnv(t, opt)
	o := e.newOrigin(nil)
	_, id1 := e.get(o.URL+"/one?key=secret", "Traceparent", "00-"+clientTrace+"-"+clientParent+"-01", "X-Priority", "1")
	_, id2 := e.get(o.URL + "/two")
	rec1 := e.wantRecord(id1, outcome.Forwarded, 200)
	e.wantRecord(id2, outcome.Forwarded, 200)
	traces := g.spans(t)
	if len(traces) != 2 {
		t.Fatalf("%d traces, want one per request: %v", len(traces), traces)
	}

	spans := traces[clientTrace]
	if len(spans) != 3 {
		t.Fatalf("the client's trace has %d spans, want 3: %s", len(spans), names(spans))
	}
	srv := one(t, spans, "proxyd GET")
	q := one(t, spans, "proxyd queue")
	att := one(t, spans, "GET")
	if srv.ParentID != clientParent || srv.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server span: parent %s kind %v, want the client's %s, server", srv.ParentID, srv.Kind, clientParent)
	}
	wantAttrs(t, srv, map[string]any{
		"http.request.method": "GET", "http.response.status_code": int64(200), "proxyd.priority": int64(1),
		"proxyd.outcome": "forwarded", "proxyd.retries": int64(0), "proxyd.request_id": id1,
		"url.full": o.URL + "/one", "server.address": "127.0.0.1", "network.protocol.version": "1.1",
		"proxyd.queue_wait": rec1.QueueWait.Seconds(),
	})
	if q.ParentID != srv.SpanID || att.ParentID != srv.SpanID {
		t.Errorf("queue span parent %s, attempt span parent %s; want the server span %s", q.ParentID, att.ParentID, srv.SpanID)
	}
	wantAttrs(t, q, map[string]any{"proxyd.priority": int64(1), "proxyd.kind": "http"})
	if att.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("attempt span kind %v, want client", att.Kind)
	}
	wantAttrs(t, att, map[string]any{"http.request.method": "GET", "url.full": o.URL + "/one", "http.response.status_code": int64(200)})
	if _, ok := att.Attrs["http.request.resend_count"]; ok {
		t.Errorf("first attempt has http.request.resend_count")
	}
	if q.Start.Before(srv.Start) || att.Start.Before(q.End) || att.End.After(srv.End) {
		t.Errorf("spans out of order: server %v–%v, queue %v–%v, attempt %v–%v", srv.Start, srv.End, q.Start, q.End, att.Start, att.End)
	}
	if got, want := o.got("/one").Header.Get("Traceparent"), "00-"+clientTrace+"-"+att.SpanID+"-01"; got != want {
		t.Errorf("upstream got traceparent %q, want %q (the attempt span's)", got, want)
	}

	// The request without a traceparent starts its own trace.
	for tid, spans := range traces {
		if tid == clientTrace {
			continue
		}
		srv := one(t, spans, "proxyd GET")
		att := one(t, spans, "GET")
		one(t, spans, "proxyd queue")
		if srv.ParentID != "" || srv.Attrs["proxyd.request_id"] != id2 {
			t.Errorf("second request's server span %+v: want a root for %s", srv, id2)
		}
		if got, want := o.got("/two").Header.Get("Traceparent"), "00-"+tid+"-"+att.SpanID+"-01"; got != want {
			t.Errorf("upstream got traceparent %q, want %q", got, want)
		}
	}

	// The access log line names the trace.
	var logged string
	for _, l := range e.logs.FilterMessage("request").All() {
		if l.ContextMap()["request_id"] == id1 {
			logged, _ = l.ContextMap()["trace_id"].(string)
		}
	}
	if logged != clientTrace {
		t.Errorf("access log trace_id %q, want %q", logged, clientTrace)
	}
}

// A retry is a second attempt span (http.request.resend_count 1) after a
// second queue span; each attempt sends its own traceparent upstream.
func TestTraceRetry(t *testing.T) {
	t.Parallel()
	g, opt := traced(t, 1)
	e := newEnv(t, opt, func(s *setup) {
		s.cfg.Upstream.Retry.Attempts = 1
		s.cfg.Upstream.Retry.On = []string{"503"}
		s.cfg.Upstream.Retry.BackoffBase = time.Millisecond
		s.cfg.Upstream.Retry.BackoffMax = time.Millisecond
	})
	var calls atomic.Int32
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	_, id := e.get(o.URL+"/r", "Traceparent", "00-"+clientTrace+"-"+clientParent+"-01")
	if r := e.wantRecord(id, outcome.Forwarded, 200); r.Retries != 1 {
		t.Fatalf("Record retries %d, want 1", r.Retries)
	}
	spans := g.spans(t)[clientTrace]
	srv := one(t, spans, "proxyd GET")
	wantAttrs(t, srv, map[string]any{"proxyd.retries": int64(1), "http.response.status_code": int64(200)})
	atts, qs := named(spans, "GET"), named(spans, "proxyd queue")
	if len(atts) != 2 || len(qs) != 2 {
		t.Fatalf("%d attempt and %d queue spans, want 2 and 2: %s", len(atts), len(qs), names(spans))
	}
	wantAttrs(t, atts[0], map[string]any{"http.response.status_code": int64(503), "error.type": "503"})
	if atts[0].Status != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("first attempt status %v, want error", atts[0].Status)
	}
	wantAttrs(t, atts[1], map[string]any{"http.response.status_code": int64(200), "http.request.resend_count": int64(1)})
	if atts[1].Start.Before(qs[1].End) || qs[1].Start.Before(atts[0].End) {
		t.Errorf("want attempt, queue, attempt in order: %s", names(spans))
	}
	hits := o.seen()
	if len(hits) != 2 {
		t.Fatalf("upstream got %d requests, want 2", len(hits))
	}
	for i, h := range hits {
		if got, want := h.Header.Get("Traceparent"), "00-"+clientTrace+"-"+atts[i].SpanID+"-01"; got != want {
			t.Errorf("attempt %d: upstream got traceparent %q, want %q", i, got, want)
		}
	}
}

// Tracing off (the no-op provider proxyd passes then): a client's
// traceparent and tracestate pass through untouched, none is added, and
// the log names no trace.
func TestTraceOff(t *testing.T) {
	t.Parallel()
	off, err := tracing.New(config.Default().Tracing, tracing.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(s *setup) { s.tracer = off.Provider() })
	o := e.newOrigin(nil)
	tp := "00-" + clientTrace + "-" + clientParent + "-01"
	_, id1 := e.get(o.URL+"/with", "Traceparent", tp, "Tracestate", "vendor=x")
	_, id2 := e.get(o.URL + "/without")
	e.wantRecord(id1, outcome.Forwarded, 200)
	e.wantRecord(id2, outcome.Forwarded, 200)
	if h := o.got("/with").Header; h.Get("Traceparent") != tp || h.Get("Tracestate") != "vendor=x" {
		t.Errorf("upstream got traceparent %q tracestate %q, want the client's untouched", h.Get("Traceparent"), h.Get("Tracestate"))
	}
	if h := o.got("/without").Header; h.Get("Traceparent") != "" {
		t.Errorf("upstream got traceparent %q with tracing off", h.Get("Traceparent"))
	}
	for _, l := range e.logs.FilterMessage("request").All() {
		if _, ok := l.ContextMap()["trace_id"]; ok {
			t.Errorf("access log names a trace with tracing off: %v", l.ContextMap())
		}
	}
}

// tracing.sample_ratio 0: a request that starts a trace is not recorded
// (but still passes an unsampled traceparent on, as W3C Trace Context
// asks); a client's sampled traceparent is followed.
func TestTraceSampleRatio(t *testing.T) {
	t.Parallel()
	g, opt := traced(t, 0)
	e := newEnv(t, opt)
	o := e.newOrigin(nil)
	_, id1 := e.get(o.URL+"/sampled", "Traceparent", "00-"+clientTrace+"-"+clientParent+"-01")
	_, id2 := e.get(o.URL + "/root")
	e.wantRecord(id1, outcome.Forwarded, 200)
	e.wantRecord(id2, outcome.Forwarded, 200)
	traces := g.spans(t)
	if len(traces) != 1 || len(traces[clientTrace]) != 3 {
		t.Fatalf("traces %v, want only the client's sampled one, with 3 spans", traces)
	}
	if tp := o.got("/root").Header.Get("Traceparent"); !strings.HasPrefix(tp, "00-") || !strings.HasSuffix(tp, "-00") {
		t.Errorf("upstream got traceparent %q for an unsampled root, want an unsampled one", tp)
	}
}

// The queue span is the wait: a request held behind a hosts rule's only
// slot shows it, and names the rule (on the request's span too).
func TestTraceQueueWaitAndHostsRule(t *testing.T) {
	t.Parallel()
	g, opt := traced(t, 1)
	e := newEnv(t, opt, func(s *setup) {
		s.cfg.Hosts = []config.HostRule{{Match: "127.0.0.1", Concurrency: new(1)}}
	})
	o := e.newOrigin(nil)
	heldID, held := o.hold("")
	r := e.req(http.MethodGet, o.URL+"/queued", nil, "Traceparent", "00-"+clientTrace+"-"+clientParent+"-01")
	res := e.goDo(r)
	e.waitDepth(1)
	o.release()
	wantStatus(t, recv(t, res, "the queued request's answer"), 200)
	wantStatus(t, recv(t, held, "the held request's answer"), 200)
	rec := e.wantRecord(idOf(r), outcome.Forwarded, 200)
	e.wantRecord(heldID, outcome.Forwarded, 200)
	if rec.QueueWait <= 0 {
		t.Fatalf("queued request waited %v", rec.QueueWait)
	}
	spans := g.spans(t)[clientTrace]
	srv, q := one(t, spans, "proxyd GET"), one(t, spans, "proxyd queue")
	wantAttrs(t, srv, map[string]any{"proxyd.hosts_rule": "127.0.0.1", "proxyd.queue_wait": rec.QueueWait.Seconds()})
	wantAttrs(t, q, map[string]any{"proxyd.hosts_rule": "127.0.0.1"})
	if q.Duration() < rec.QueueWait {
		t.Errorf("queue span lasts %v, less than the wait %v", q.Duration(), rec.QueueWait)
	}
}

// Inside an intercepted tunnel (HTTP/1.1 and HTTP/2) the client's
// traceparent is continued and passed upstream like a plain request's; the
// CONNECT has its own span, with its queue and no upstream attempt.
func TestTraceIntercepted(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			g, opt := traced(t, 1)
			e := newEnv(t, opt, intercepting("127.0.0.1"))
			o := e.newTLSOrigin(nil)
			e.trustOrigin(o)
			c := e.interceptClient(h2)
			req, _ := http.NewRequest(http.MethodGet, o.URL+"/in", nil)
			req.Header.Set("X-Request-Id", "in")
			req.Header.Set("Traceparent", "00-"+clientTrace+"-"+clientParent+"-01")
			wantStatus(t, roundTrip(c, req), 200)
			rec := e.wantRecord("in", outcome.Forwarded, 200)
			c.Transport.(*http.Transport).CloseIdleConnections() // ends the tunnel
			waitFor(t, "the CONNECT's Record", func() bool { return len(e.recordsOf(http.MethodConnect)) == 1 })
			traces := g.spans(t)
			spans := traces[clientTrace]
			srv, att := one(t, spans, "proxyd GET"), one(t, spans, "GET")
			one(t, spans, "proxyd queue")
			if srv.ParentID != clientParent {
				t.Errorf("server span parent %s, want the client's %s", srv.ParentID, clientParent)
			}
			proto := "1.1"
			if h2 {
				proto = "2"
			}
			wantAttrs(t, srv, map[string]any{"proxyd.tunnel": rec.Tunnel, "network.protocol.version": proto})
			if got, want := o.got("/in").Header.Get("Traceparent"), "00-"+clientTrace+"-"+att.SpanID+"-01"; got != want {
				t.Errorf("upstream got traceparent %q, want %q", got, want)
			}
			if len(traces) != 2 {
				t.Fatalf("%d traces, want the request's and the CONNECT's", len(traces))
			}
			for tid, spans := range traces {
				if tid == clientTrace {
					continue
				}
				cs := one(t, spans, "proxyd CONNECT")
				wantAttrs(t, cs, map[string]any{"proxyd.outcome": "forwarded", "http.response.status_code": int64(200)})
				wantAttrs(t, one(t, spans, "proxyd queue"), map[string]any{"proxyd.kind": "tunnel"})
				if len(spans) != 2 {
					t.Errorf("CONNECT trace: %s; want the CONNECT and its queue", names(spans))
				}
			}
		})
	}
}

// A spliced CONNECT: its span lasts the tunnel, with the queue and the
// dial as children.
func TestTraceConnect(t *testing.T) {
	t.Parallel()
	g, opt := traced(t, 1)
	e := newEnv(t, opt)
	target := e.echoServer()
	tc, _ := e.connect(target, "X-Request-Id: c1", "Traceparent: 00-"+clientTrace+"-"+clientParent+"-01")
	roundTripLine(t, tc, "hello")
	tc.Close()
	e.wantRecord("c1", outcome.Forwarded, 200)
	spans := g.spans(t)[clientTrace]
	srv := one(t, spans, "proxyd CONNECT")
	dial, q := one(t, spans, "proxyd dial"), one(t, spans, "proxyd queue")
	if srv.ParentID != clientParent || dial.ParentID != srv.SpanID || q.ParentID != srv.SpanID {
		t.Errorf("want CONNECT under the client's span, dial and queue under it: %s", names(spans))
	}
	if dial.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("dial span kind %v", dial.Kind)
	}
	wantAttrs(t, srv, map[string]any{"server.address": "127.0.0.1", "http.response.status_code": int64(200)})
}
