package store

import "github.com/proxyd/proxyd/internal/dispatch"

// The process hands New its *dispatch.Dispatcher as a Dispatcher: this
// keeps the two in step at build time rather than where New is called.
var _ Dispatcher = (*dispatch.Dispatcher)(nil)
