package tracing

import (
	"context"
	"errors"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/tracing/otlptest"
)

func cfgOf(endpoint, protocol string, ratio float64) config.Tracing {
	return config.Tracing{OTLPEndpoint: endpoint, OTLPProtocol: protocol, SampleRatio: ratio}
}

// Off: the no-op provider, nothing started, nothing to flush.
func TestOff(t *testing.T) {
	tr, err := New(config.Default().Tracing, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Error("Enabled() with no endpoint")
	}
	if _, ok := tr.Provider().(noop.TracerProvider); !ok {
		t.Errorf("Provider() = %T, want noop.TracerProvider", tr.Provider())
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// Both protocols deliver spans to a real OTLP receiver, decoded from the
// protobuf, with proxyd's service name and version; Shutdown flushes what
// the batcher holds.
func TestExport(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		recv     func(testing.TB) *otlptest.Receiver
	}{{config.TracingHTTPProtobuf, otlptest.NewHTTP}, {config.TracingGRPC, otlptest.NewGRPC}} {
		t.Run(tc.protocol, func(t *testing.T) {
			rc := tc.recv(t)
			endpoint := rc.Endpoint
			if tc.protocol == config.TracingGRPC {
				endpoint = "http://" + endpoint // plaintext
			}
			tr, err := New(cfgOf(endpoint, tc.protocol, 1), Deps{Version: "1.2.3"})
			if err != nil {
				t.Fatal(err)
			}
			_, span := tr.Provider().Tracer("test").Start(context.Background(), "hello")
			span.End()
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := rc.Spans()
			if len(spans) != 1 || spans[0].Name != "hello" || spans[0].Service != ServiceName {
				t.Fatalf("received %+v, want one span \"hello\" of service %q", spans, ServiceName)
			}
		})
	}
}

// OTEL_SERVICE_NAME (read by the SDK) wins over proxyd's own name, and
// OTEL_EXPORTER_OTLP_ENDPOINT does not override tracing.otlp_endpoint.
func TestEnvironment(t *testing.T) {
	rc := otlptest.NewHTTP(t)
	t.Setenv("OTEL_SERVICE_NAME", "edge-proxy")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tr, err := New(cfgOf(rc.Endpoint, config.TracingHTTPProtobuf, 1), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider().Tracer("test").Start(context.Background(), "x")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if spans := rc.Spans(); len(spans) != 1 || spans[0].Service != "edge-proxy" {
		t.Fatalf("received %+v, want one span of service edge-proxy", spans)
	}
}

func TestHTTPTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://collector:4318":                   "http://collector:4318/v1/traces",
		"http://collector:4318/":                  "http://collector:4318/v1/traces",
		"https://otlp.example.com/api/v1/traces":  "https://otlp.example.com/api/v1/traces",
		"https://otlp.example.com/custom/collect": "https://otlp.example.com/custom/collect",
	} {
		if got, err := HTTPTracesURL(in); err != nil || got != want {
			t.Errorf("HTTPTracesURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// The sampler follows a client's decision and samples roots at the ratio.
func TestSampler(t *testing.T) {
	tid := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	parent := func(sampled bool) trace.SpanContext {
		c := trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}, Remote: true}
		if sampled {
			c.TraceFlags = trace.FlagsSampled
		}
		return trace.NewSpanContext(c)
	}
	for _, tc := range []struct {
		name   string
		ratio  float64
		parent *trace.SpanContext
		want   bool
	}{
		{"root ratio 0", 0, nil, false},
		{"root ratio 1", 1, nil, true},
		{"sampled parent ratio 0", 0, ptr(parent(true)), true},
		{"unsampled parent ratio 1", 1, ptr(parent(false)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sdktrace.SamplingParameters{TraceID: tid, Name: "x", ParentContext: context.Background()}
			if tc.parent != nil {
				p.ParentContext = trace.ContextWithRemoteSpanContext(context.Background(), *tc.parent)
			}
			got := Sampler(tc.ratio).ShouldSample(p).Decision == sdktrace.RecordAndSample
			if got != tc.want {
				t.Errorf("sampled = %v, want %v", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

type failingExporter struct{ calls int }

func (f *failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	f.calls++
	return errors.New("connection refused")
}
func (f *failingExporter) Shutdown(context.Context) error { return nil }

// A failing collector is logged in proxyd's log, once per exportLogEvery,
// with the count of spans dropped; the error goes no further (not to
// OpenTelemetry's global handler, which would write to stderr).
func TestExportFailureLogged(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	f := &failingExporter{}
	e := &loggingExporter{SpanExporter: f, log: zap.New(core)}
	spans := make([]sdktrace.ReadOnlySpan, 3)
	for range 3 {
		if err := e.ExportSpans(context.Background(), spans); err != nil {
			t.Fatalf("ExportSpans returned %v, want nil", err)
		}
	}
	if f.calls != 3 || logs.Len() != 1 {
		t.Fatalf("%d exports, %d log lines; want 3 and 1", f.calls, logs.Len())
	}
	if n := logs.All()[0].ContextMap()["spans"]; n != int64(3) {
		t.Errorf("first line counts %v spans, want 3", n)
	}
	e.mu.last = time.Now().Add(-exportLogEvery) // as if exportLogEvery had passed
	_ = e.ExportSpans(context.Background(), spans)
	if logs.Len() != 2 || logs.All()[1].ContextMap()["spans"] != int64(9) {
		t.Errorf("second line: %+v, want 9 spans (6 held back + 3)", logs.All())
	}
}
