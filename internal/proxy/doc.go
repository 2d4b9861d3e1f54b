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
// ServeHTTP makes one exchange per request (exchange.go): the inbound
// request (never modified), the writer, the policy, the outcome.Record,
// the client, the parsed destination, the deadline and the permit. Its
// methods are the steps (docs/architecture.md, "A request's path"):
//
//  1. identify: the client, and proxy authentication (407).
//  2. resolve: the target (absolute-form, CONNECT authority-form;
//     origin-form is gateway mode), its destination parsed once
//     (internal/hostport) and judged by the egress policy; a request whose
//     Via names proxyd is a loop (508), whatever its other headers say.
//  3. admission: urgency (priority.go; docs/configuration.md, "Priority")
//     and the caller's budget from the timeout header; a bad value of
//     either is a 400 and is not forwarded. Under a hosts rule with a
//     tokens quota, the price in tokens (cost.go): the cost header, or the
//     JSON body read up to cost.max_body, or cost.default. What must be
//     known before the request is queued goes here.
//  4. acquire: the request waits in the queue; a client that leaves is
//     removed at once.
//  5. forward (forward.go): one attempt, then one retry decision, until
//     an answer; respond copies the response (a priced request's body fed
//     to a cost.Meter, through a cost.Inflater when gzip or deflate, the
//     permit settled with its usage: cost.go), and the permit
//     is released when the body is done. A CONNECT opens its tunnel instead
//     (openTunnel, tunnel.go), spliced or decrypted (intercept.go).
//  6. finish: the answer of an error (answer.go), then one outcome.Record
//     per request: the access log line and the metrics.
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
