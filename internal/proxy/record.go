package proxy

import (
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyd/proxyd/internal/outcome"
)

// logRecord writes the access-log line (docs/metrics.md, "Access log").
func (h *Handler) logRecord(rec *outcome.Record, span trace.Span) {
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
	if rec.CostEstimate > 0 {
		fields = append(fields, zap.Int64("cost_estimate", rec.CostEstimate))
		if rec.CostReported {
			fields = append(fields, zap.Int64("cost_actual", rec.CostActual))
		}
	}
	if rec.ClientWriteTimeout {
		fields = append(fields, zap.Bool("client_write_timeout", true))
	}
	if span != nil {
		if sc := span.SpanContext(); sc.IsSampled() {
			fields = append(fields, zap.String("trace_id", sc.TraceID().String()))
		}
	}
	if rec.Err != nil {
		fields = append(fields, zap.Error(rec.Err))
	}
	ce.Write(fields...)
}
