// Package upstream is proxyd's outbound side: the pooled transport, header
// hygiene, response streaming, CONNECT tunnels and the classification of
// upstream failures. It knows nothing of queues, priorities or limits; the
// dispatcher decides when a request may go, this package only carries it.
//
// # Flow
//
// A forwarded request goes through four steps, each a separate call so the
// caller can time, log and meter them:
//
//	out := upstream.Outbound(ctx, in, target, drop) // build, never mutate in
//	resp, err := fwd.RoundTrip(out, headerTimeout)  // until response headers
//	n, err := upstream.CopyResponse(w, resp, extra) // stream the body
//	// on errors.Is(err, upstream.ErrBodyCut): log, panic(http.ErrAbortHandler)
//
// A tunnel is Dial followed by Splice.
//
// # Two clients
//
// RoundTrip sends a plain-http request without a body that may safely be
// sent twice (GET, HEAD, OPTIONS, TRACE, or one with an Idempotency-Key)
// through its own pool of HTTP/1.1 connections (pool.go): written with
// Request.Write and read with http.ReadResponse on the caller's goroutine,
// with none of the Transport's per-connection goroutines and hand-offs.
// Everything else (a body, https) goes through the http.Transport. Both
// report errors alike.
//
// The Transport watches each idle connection with a read; the pool has no
// goroutine per connection, so it looks instead: before an idle
// connection is reused (and at each idle sweep) a non-blocking MSG_PEEK on
// its socket (peek_unix.go: no read, no allocation) tells whether it holds
// anything. A byte that arrived while no request was outstanding (an
// unsolicited response, the late body of a HEAD, 204 or 304) would be read
// as the next request's response, handing one client another's answer:
// such a connection is closed and counted (UnsolicitedResponses), and so
// is one the upstream closed; the request takes another connection. A
// connection that cannot be looked at is never pooled. Bytes that arrive
// between the look and the request are read as its answer, as with any
// HTTP/1.1 client (the Transport has the same window).
// differential_test.go drives the pool and the Transport against the same
// misbehaving origins and requires the same outcome for every request.
//
// # Invariants
//
//   - The inbound request is never modified: Outbound works on a clone (as
//     httputil.ReverseProxy keeps ProxyRequest.In and Out apart). The one
//     shared piece is the body, which streams: nothing here buffers a
//     request or response body beyond one pooled 32 KiB copy buffer.
//   - Hop-by-hop headers (RFC 9110 §7.6.1) are removed in both directions:
//     first every field named in Connection, then the fixed list
//     (Connection, Proxy-Connection, Keep-Alive, Proxy-Authenticate,
//     Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade).
//     "TE: trailers" is not re-added (httputil does, for gRPC): TE is
//     removed (docs/clients.md, "What proxyd changes on the way"), and a
//     forward proxy carries gRPC inside CONNECT.
//     Upgrade being removed means protocol upgrades (WebSocket) are not
//     proxied in absolute form; clients use CONNECT for them.
//   - Every outbound request carries a Via entry naming this proxy
//     (RFC 9110 §7.6.3), and IsLoop recognises it on the way in, so a
//     request that comes back to us is caught instead of looping. The
//     entry's received-protocol is the version of the message as received
//     ("1.1 proxyd" for HTTP/1.1, "1.0 proxyd", "2 proxyd"), as §7.6.3
//     asks; the caller adds the response's entry with AppendVia.
//   - X-Forwarded-For is not added. proxyd is a forward proxy in front of
//     the caller's own services; telling third-party APIs the internal
//     address of each caller leaks topology and buys nothing. An
//     X-Forwarded-For the client sent itself is passed through untouched.
//   - The transport never consults HTTP_PROXY/HTTPS_PROXY (Proxy: nil): the
//     processes that use proxyd have those variables pointing at proxyd, so
//     honouring them here would send every request back to ourselves.
//   - Bodies are never decompressed (DisableCompression): the bytes and the
//     Content-Encoding the upstream chose reach the client unchanged.
//   - The header timeout bounds the wait for response headers only; once
//     they are in, the body streams for as long as it takes, until the
//     caller closes it or the caller's context ends.
//   - Every error wraps one of the sentinels with %w together with its
//     original cause, so the proxy maps it to a status and Proxy-Status
//     (RFC 9209) in one place. A caller that went away is reported as
//     context.Canceled, never as an upstream failure.
//   - Splice passes a half-close on (CloseWrite) so that request/response
//     protocols finish, but a tunnel with one direction ended lives on only
//     while the other carries data (HalfCloseTimeout of silence ends it):
//     RFC 9110 §9.3.6 closes a tunnel once either side has closed, and a
//     peer that never closes its half must not hold a tunnel slot forever.
//     It closes both connections before it returns and leaves no goroutine
//     behind.
//
// # Time
//
// Network timeouts here race real sockets, so they use real timers
// (time.AfterFunc, net.Dialer.Timeout) rather than an injected clock; tests
// drive them with short durations against real listeners on 127.0.0.1.
package upstream
