package proxy

// OpenTelemetry tracing of the request path (docs/operations.md,
// "Tracing"). Every hook is a no-op when h.tr is nil (tracing off), which
// is one pointer test on the request path: no span, no context, no
// header. With tracing on, per request:
//
//   - a server span "proxyd <METHOD>", continuing the client's W3C
//     traceparent (W3C Trace Context §3.2), ended when the request is
//     answered (a tunnel: when it closes);
//   - a child "proxyd queue" span per admission (a retry waits again);
//   - a client span per upstream attempt (named by the method, as the
//     HTTP semantic conventions name client spans), whose context goes
//     upstream in traceparent, replacing the client's; a retry is a second
//     attempt span with http.request.resend_count; a CONNECT's dial is a
//     "proxyd dial" client span.
//
// Requests read from an intercepted tunnel are traced like plain ones,
// each from its own traceparent (the CONNECT's span does not parent them:
// a tunnel may carry unrelated requests for hours).

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

// tracerName is the instrumentation scope of proxyd's spans.
const tracerName = "github.com/proxyd/proxyd/internal/proxy"

// Span attributes proxyd adds to the HTTP semantic conventions' ones.
const (
	attrPriority  = attribute.Key("proxyd.priority")
	attrOutcome   = attribute.Key("proxyd.outcome")
	attrHostsRule = attribute.Key("proxyd.hosts_rule")
	attrClient    = attribute.Key("proxyd.client")
	attrRetries   = attribute.Key("proxyd.retries")
	attrQueueWait = attribute.Key("proxyd.queue_wait")
	attrRequestID = attribute.Key("proxyd.request_id")
	attrTunnel    = attribute.Key("proxyd.tunnel")
	attrKind      = attribute.Key("proxyd.kind")
)

// HTTP semantic conventions (v1.26 and later) used here.
const (
	attrMethod      = attribute.Key("http.request.method")
	attrStatus      = attribute.Key("http.response.status_code")
	attrResend      = attribute.Key("http.request.resend_count")
	attrURLFull     = attribute.Key("url.full")
	attrServerAddr  = attribute.Key("server.address")
	attrServerPort  = attribute.Key("server.port")
	attrClientAddr  = attribute.Key("client.address")
	attrProtoVer    = attribute.Key("network.protocol.version")
	attrErrorType   = attribute.Key("error.type")
	attrUserAgent   = attribute.Key("user_agent.original")
	errorTypeOther  = "_OTHER"
	spanQueue       = "proxyd queue"
	spanDial        = "proxyd dial"
	spanServerPrefx = "proxyd "
)

// tracer is the Handler's tracing state; nil when tracing is off.
type tracer struct {
	t    trace.Tracer
	prop propagation.TraceContext
}

// newTracer returns nil (tracing off) for a nil or no-op provider.
func newTracer(tp trace.TracerProvider) *tracer {
	if tp == nil {
		return nil
	}
	if _, off := tp.(noop.TracerProvider); off {
		return nil
	}
	return &tracer{t: tp.Tracer(tracerName)}
}

// traceRequest starts the request's server span, continuing the client's
// traceparent, and returns r with the span in its context (a shallow copy:
// r itself is left as it is).
func (h *Handler) traceRequest(r *http.Request, x *exchange) *http.Request {
	if h.tr == nil {
		return r
	}
	ctx := h.tr.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, attrMethod.String(methodAttr(r.Method)), attrRequestID.String(x.rec.ID),
		attrProtoVer.String(protoVersion(r)))
	if r.Method == http.MethodConnect {
		attrs = appendHostPort(attrs, r.Host)
	} else if r.URL.IsAbs() {
		attrs = append(attrs, attrURLFull.String(urlFull(r.URL.Scheme, r.URL.Host, r.URL.EscapedPath())))
		attrs = appendHostPort(attrs, r.URL.Host)
	} else if x.ti != nil {
		// Origin-form in an intercepted tunnel: the tunnel's target.
		host := x.ti.dest.String()
		attrs = append(attrs, attrURLFull.String(urlFull("https", host, r.URL.EscapedPath())))
		attrs = appendHostPort(attrs, host)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, attrClientAddr.String(host))
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		attrs = append(attrs, attrUserAgent.String(ua))
	}
	ctx, span := h.tr.t.Start(ctx, spanServerPrefx+r.Method,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	x.span = span
	return r.WithContext(ctx)
}

// traceFinish ends the request's server span with what the record knows.
func (h *Handler) traceFinish(rec *outcome.Record, span trace.Span) {
	if span == nil {
		return
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := []attribute.KeyValue{
		attrPriority.Int(rec.Priority),
		attrOutcome.String(rec.Outcome),
		attrRetries.Int(rec.Retries),
		attrQueueWait.Float64(rec.QueueWait.Seconds()),
		attrServerAddrOf(rec),
	}
	if rec.Status > 0 {
		attrs = append(attrs, attrStatus.Int(rec.Status))
	}
	if rec.ClientLabel != "" && rec.ClientLabel != outcome.ClientOther {
		attrs = append(attrs, attrClient.String(rec.ClientLabel))
	}
	if rec.Tunnel != "" {
		attrs = append(attrs, attrTunnel.String(rec.Tunnel))
	}
	span.SetAttributes(attrs...)
	// Server spans: 5xx is an error, 4xx is the client's (the HTTP
	// semantic conventions, "Status").
	switch {
	case rec.Status >= 500:
		span.SetAttributes(attrErrorType.String(errorType(rec)))
		span.SetStatus(codes.Error, rec.Outcome)
	case rec.Cut:
		span.SetAttributes(attrErrorType.String("response_cut"))
		span.SetStatus(codes.Error, "upstream response cut")
	}
	span.End()
}

// attrServerAddrOf is the request's destination as recorded ("host:port"
// or a bare host).
func attrServerAddrOf(rec *outcome.Record) attribute.KeyValue {
	if host, _, err := net.SplitHostPort(rec.Host); err == nil {
		return attrServerAddr.String(host)
	}
	return attrServerAddr.String(rec.Host)
}

// errorType is error.type for an answer of 5xx: the outcome when the
// proxy answered, else the status code.
func errorType(rec *outcome.Record) string {
	if rec.Outcome != "" && rec.Outcome != outcome.Forwarded {
		return rec.Outcome
	}
	return strconv.Itoa(rec.Status)
}

// queueSpan times one admission for its "proxyd queue" span; the zero
// value (tracing off) does nothing.
type queueSpan struct{ start time.Time }

// traceQueue starts timing an admission (call it just before acquire).
func (h *Handler) traceQueue() queueSpan {
	if h.tr == nil {
		return queueSpan{}
	}
	return queueSpan{time.Now()}
}

// traceQueued records the admission's span, a child of ctx's span, from the
// start to now; a hosts rule that matched goes on the request's span too.
func (h *Handler) traceQueued(ctx context.Context, q queueSpan, req dispatch.Request, p *dispatch.Permit, err error) {
	if q.start.IsZero() {
		return
	}
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attrPriority.Int(req.Urgency), attrKind.String(kindName(req.Kind))}
	if rule := p.HostRule(); rule != "" {
		attrs = append(attrs, attrHostsRule.String(rule))
		parent.SetAttributes(attrHostsRule.String(rule))
	}
	_, span := h.tr.t.Start(ctx, spanQueue, trace.WithTimestamp(q.start), trace.WithAttributes(attrs...))
	if err != nil {
		span.SetAttributes(attrOutcome.String(classify(err, http.StatusServiceUnavailable).outcome))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// kindName names a dispatch.Kind for the queue span.
func kindName(k dispatch.Kind) string {
	if k == dispatch.Tunnel {
		return "tunnel"
	}
	return "http"
}

// attemptSpan is one upstream attempt's client span; nil when tracing is
// off.
type attemptSpan struct{ span trace.Span }

// traceAttempt starts the client span of attempt n (0: the first) of out
// and puts its context in out's traceparent (replacing the client's, whose
// trace it continues). With tracing off, out is left alone: a client's
// traceparent passes through untouched.
func (h *Handler) traceAttempt(ctx context.Context, out *http.Request, n int) attemptSpan {
	if h.tr == nil {
		return attemptSpan{}
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, attrMethod.String(methodAttr(out.Method)),
		attrURLFull.String(urlFull(out.URL.Scheme, out.URL.Host, out.URL.EscapedPath())))
	attrs = appendHostPort(attrs, out.URL.Host)
	if n > 0 {
		attrs = append(attrs, attrResend.Int(n))
	}
	ctx, span := h.tr.t.Start(ctx, methodAttr(out.Method), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	h.tr.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	return attemptSpan{span}
}

// end ends the attempt at its response's headers (resp nil: a dial's
// success), or its failure.
func (a attemptSpan) end(resp *http.Response, err error) {
	if a.span == nil {
		return
	}
	switch {
	case err != nil:
		a.span.SetAttributes(attrErrorType.String(upstreamErrorType(err)))
		a.span.SetStatus(codes.Error, err.Error())
	case resp == nil:
		// A dial: no response.
	default:
		a.span.SetAttributes(attrStatus.Int(resp.StatusCode))
		if resp.StatusCode >= 400 {
			// Client spans: 4xx and 5xx are errors.
			a.span.SetAttributes(attrErrorType.String(strconv.Itoa(resp.StatusCode)))
			a.span.SetStatus(codes.Error, "")
		}
	}
	a.span.End()
}

// traceDial starts the client span of a CONNECT's dial to hostport.
func (h *Handler) traceDial(ctx context.Context, hostport string) attemptSpan {
	if h.tr == nil {
		return attemptSpan{}
	}
	_, span := h.tr.t.Start(ctx, spanDial, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(appendHostPort(nil, hostport)...))
	return attemptSpan{span}
}

// upstreamErrorType is error.type of a failed attempt: the RFC 9209 error
// type it is answered with (answer.go: "connection_refused",
// "dns_error", …), else "_OTHER".
func upstreamErrorType(err error) string {
	if a := classify(err, http.StatusServiceUnavailable); a.errType != "" {
		return a.errType
	}
	return errorTypeOther
}

// appendHostPort appends server.address and server.port of hostport.
func appendHostPort(attrs []attribute.KeyValue, hostport string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return append(attrs, attrServerAddr.String(hostport))
	}
	attrs = append(attrs, attrServerAddr.String(host))
	if n, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, attrServerPort.Int(n))
	}
	return attrs
}

// urlFull is url.full without the query: query strings often carry keys,
// and the access log records no more than the host either.
func urlFull(scheme, host, path string) string {
	return scheme + "://" + host + path
}

// methodAttr is http.request.method: a known method, else "_OTHER" (the
// HTTP semantic conventions bound its values).
func methodAttr(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return errorTypeOther
}

// protoVersion is network.protocol.version: "1.1", "2", …
func protoVersion(r *http.Request) string {
	if r.ProtoMinor == 0 && r.ProtoMajor >= 2 {
		return strconv.Itoa(r.ProtoMajor)
	}
	return strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)
}
