package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
)

// Deps are the collaborators of New.
type Deps struct {
	Logger  *zap.Logger // export failures; nil: not logged
	Version string      // service.version of the traces; empty: not set
}

// Tracing is proxyd's tracer provider and what it must flush at exit.
// Create it with New; its methods are safe for concurrent use.
type Tracing struct {
	sdk      *sdktrace.TracerProvider // nil when off
	provider trace.TracerProvider
}

// ServiceName is the service.name of proxyd's spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names another.
const ServiceName = "proxyd"

// New builds the tracer provider of cfg (validated). With
// cfg.OTLPEndpoint empty, it is the no-op provider and nothing runs.
func New(cfg config.Tracing, deps Deps) (*Tracing, error) {
	if !cfg.Enabled() {
		return &Tracing{provider: noop.NewTracerProvider()}, nil
	}
	log := deps.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx := context.Background()
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tracing.otlp_endpoint: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", ServiceName)}
	if deps.Version != "" {
		attrs = append(attrs, attribute.String("service.version", deps.Version))
	}
	// Later detectors win: OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
	// over proxyd's own name.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithHost(), resource.WithFromEnv())
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	if err != nil {
		// A partial resource (e.g. a malformed OTEL_RESOURCE_ATTRIBUTES
		// entry) is still used.
		log.Warn("tracing: resource attributes", zap.Error(err))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, log: log}),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(Sampler(cfg.SampleRatio)),
	)
	return &Tracing{sdk: tp, provider: tp}, nil
}

// Sampler is proxyd's sampler: a client's sampling decision (its
// traceparent's flag) is followed; a trace that starts at proxyd is
// recorded with probability ratio.
func Sampler(ratio float64) sdktrace.Sampler {
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
}

// newExporter is the OTLP exporter of cfg.
func newExporter(ctx context.Context, cfg config.Tracing) (sdktrace.SpanExporter, error) {
	if cfg.OTLPProtocol == config.TracingGRPC {
		if strings.Contains(cfg.OTLPEndpoint, "://") {
			// http:// is plaintext, https:// TLS (otlptracegrpc).
			return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.OTLPEndpoint))
		}
		// host:port: TLS unless OTEL_EXPORTER_OTLP_INSECURE=true.
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint))
	}
	u, err := HTTPTracesURL(cfg.OTLPEndpoint)
	if err != nil {
		return nil, err
	}
	return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u))
}

// HTTPTracesURL is where http/protobuf spans are sent for
// tracing.otlp_endpoint: the URL itself when it has a path, else the URL
// with /v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT is read (the OTLP
// exporter specification).
func HTTPTracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t.sdk != nil }

// Provider is the tracer provider: the SDK's, or the no-op one when off.
func (t *Tracing) Provider() trace.TracerProvider { return t.provider }

// Shutdown ends tracing: the spans still buffered are exported, until ctx
// ends. Call it once no request is in flight (at the end of the drain);
// later spans are dropped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

// exportLogEvery bounds how often a failing collector is logged.
const exportLogEvery = 10 * time.Second

// loggingExporter logs export failures to proxyd's log (rate-limited)
// instead of OpenTelemetry's global error handler, which writes to
// stderr unformatted. The spans of a failed export are dropped either way.
type loggingExporter struct {
	sdktrace.SpanExporter
	log *zap.Logger
	mu  struct {
		sync.Mutex
		last    time.Time
		dropped int // spans dropped since the last line
	}
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	e.mu.Lock()
	e.mu.dropped += len(spans)
	now := time.Now()
	if now.Sub(e.mu.last) < exportLogEvery {
		e.mu.Unlock()
		return nil
	}
	n := e.mu.dropped
	e.mu.last, e.mu.dropped = now, 0
	e.mu.Unlock()
	e.log.Warn("tracing: export to the OTLP collector failed; spans dropped", zap.Int("spans", n), zap.Error(err))
	return nil
}
