// Package proxy is proxyd's HTTP face: it turns an inbound request into a
// dispatch.Request (urgency, budget, kind), waits for a permit, forwards the
// request (internal/upstream) or opens a CONNECT tunnel, and answers every
// request exactly once: the upstream's response, or one of the proxy's own
// errors (answer.go is the one place that maps an error to a status,
// Proxy-Status, Retry-After, and the reason phrase and body that tell the
// error, its details and the setting that would change it).
//
// # A request's path
//
//  1. Loop check (Via names proxyd → 508), target resolution
//     (absolute-form, CONNECT authority-form; origin-form is gateway mode).
//  2. Urgency (priority.go; docs/configuration.md, "Priority") and the
//     caller's budget from the timeout header; a bad value of either is a
//     400 and is not forwarded.
//  3. dispatch.Acquire with the client connection's context: the request
//     waits in the queue; a client that leaves is removed at once.
//  4. Forward with a header timeout of the remaining budget (or
//     upstream.timeout), stream the body back, release the permit when the
//     body is done.
//  5. One Record per request: the access log line and the metrics.
//
// With Deps.Tracer set (and not the no-op provider), trace.go adds
// OpenTelemetry spans along the way: one server span per request
// continuing the client's traceparent, a child per admission wait, and a
// client span per upstream attempt whose context goes upstream in
// traceparent (docs/operations.md, "Tracing"). Without it, every hook is
// one nil test.
//
// The Handler is safe for concurrent use; SetPolicy swaps the priority and
// timeout settings atomically (reload).
package proxy
