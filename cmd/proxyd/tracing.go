package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/tracing"
)

// tracingFlushTimeout bounds the export of the spans still buffered at
// exit (after the drain): a collector that does not answer must not hold
// proxyd up for long.
const tracingFlushTimeout = 5 * time.Second

// newTracing is tracing.* for the app (docs/operations.md, "Tracing").
func newTracing(cfg config.Tracing, log *zap.Logger) (*tracing.Tracing, error) {
	return tracing.New(cfg, tracing.Deps{Logger: log.Named("tracing"), Version: currentBuild().Version})
}

// flushTraces exports the spans still buffered and stops tracing; call it
// once no request is in flight.
func (a *app) flushTraces() {
	if a.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := a.tracing.Shutdown(ctx); err != nil {
		a.log.Warn("tracing: spans not flushed at exit", zap.Error(err))
	}
}

// warnTracingRestart says that tracing.* changes only on restart.
func warnTracingRestart(log *zap.Logger, old, cur config.Tracing) {
	if old != cur {
		log.Warn("tracing.* changes only on restart")
	}
}
