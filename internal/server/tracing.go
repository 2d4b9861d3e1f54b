package server

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
)

// tracingFlushTimeout bounds the export of the spans still buffered at
// exit (after the drain): a collector that does not answer must not hold
// proxyd up for long.
const tracingFlushTimeout = 5 * time.Second

// flushTraces exports the spans still buffered and stops tracing; call it
// once no request is in flight.
func (s *Server) flushTraces() {
	if s.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := s.tracing.Shutdown(ctx); err != nil {
		s.log.Warn("tracing: spans not flushed at exit", zap.Error(err))
	}
}

// warnTracingRestart says that tracing.* changes only on restart.
func warnTracingRestart(log *zap.Logger, old, cur config.Tracing) {
	if old != cur {
		log.Warn("tracing.* changes only on restart")
	}
}
