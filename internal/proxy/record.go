package proxy

import (
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Record is what is known of one request when it ends: the access log
// line and the metrics are made from it.
type Record struct {
	ID        string
	Start     time.Time
	Method    string
	Host      string // as requested, with its port when the request had one
	Priority  int    // the request's urgency; priority.default when it was never resolved (e.g. a bad header)
	Admitted  bool   // a permit was granted (QueueWait is meaningful)
	Status    int    // sent, or StatusClientClosed
	Outcome   string
	QueueWait time.Duration
	Upstream  time.Duration // until response headers (or the tunnel's dial)
	Duration  time.Duration // whole request
	Bytes     int64         // response body bytes (tunnel: upstream → client)
	BytesIn   int64         // tunnel: client → upstream
	Err       error
	// Retries is how many times the request was sent again
	// (upstream.retry); RetryDenied is set when the retry budget refused one.
	Retries     int
	RetryDenied bool
	Pauses      int  // upstream responses (of any attempt) that paused the destination
	Cut         bool // the upstream broke off the response body (the client's stream was cut)
	// ClientWriteTimeout: the client read nothing of the response for
	// client_write_timeout, and the response was cut.
	ClientWriteTimeout bool
	// EgressDenied is the egress.Denial reason of a destination the egress
	// policy refused ("private", "self", …), else empty.
	EgressDenied string
	// Intercepted is set on a CONNECT whose tunnel was decrypted
	// (docs/tls-interception.md) and on every request read from such a
	// tunnel; Tunnel is then, on the requests, the request id of their
	// CONNECT.
	Intercepted bool
	Tunnel      string
	// HandshakeFailed: the client's TLS handshake in an intercepted tunnel
	// failed (it does not trust proxyd's CA, or pins certificates).
	HandshakeFailed bool
	// Client is who sent the request (docs/configuration.md, "Clients:
	// `auth`, `clients`, `fairness`"): the authenticated user, else the
	// source address; ClientLabel is its metric label (a clients entry's
	// name, or ClientOther). AuthFailed is AuthMissing or AuthInvalid when
	// the request was refused 407.
	Client      string
	ClientLabel string
	AuthFailed  string

	client *clientID
	wrote  bool       // the response (or tunnel) started: no error answer possible
	span   trace.Span // the request's server span (trace.go); nil: tracing off
}

// logRecord writes the access-log line (docs/metrics.md, "Access log").
func (h *Handler) logRecord(rec *Record) {
	lvl := zapcore.InfoLevel
	ce := h.log.Check(lvl, "request")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("request_id", rec.ID),
		zap.String("method", rec.Method),
		zap.String("host", rec.Host),
		zap.Int("status", rec.Status),
		zap.Int("priority", rec.Priority),
		zap.Duration("queue_wait", rec.QueueWait),
		zap.Duration("upstream_time", rec.Upstream),
		zap.Duration("duration", rec.Duration),
		zap.Int64("bytes", rec.Bytes),
		zap.String("outcome", rec.Outcome),
	}
	if rec.Retries > 0 {
		fields = append(fields, zap.Int("retries", rec.Retries))
	}
	if rec.BytesIn > 0 {
		fields = append(fields, zap.Int64("bytes_in", rec.BytesIn))
	}
	if rec.Client != "" {
		fields = append(fields, zap.String("client", rec.Client))
	}
	if rec.Intercepted {
		fields = append(fields, zap.Bool("intercepted", true))
	}
	if rec.Tunnel != "" {
		fields = append(fields, zap.String("tunnel", rec.Tunnel))
	}
	if rec.HandshakeFailed {
		fields = append(fields, zap.Bool("tls_handshake_failed", true))
	}
	if rec.EgressDenied != "" {
		fields = append(fields, zap.String("egress_denied", rec.EgressDenied))
	}
	if rec.ClientWriteTimeout {
		fields = append(fields, zap.Bool("client_write_timeout", true))
	}
	if rec.span != nil {
		if sc := rec.span.SpanContext(); sc.IsSampled() {
			fields = append(fields, zap.String("trace_id", sc.TraceID().String()))
		}
	}
	if rec.Err != nil {
		fields = append(fields, zap.Error(rec.Err))
	}
	ce.Write(fields...)
}
