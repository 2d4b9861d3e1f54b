// Package h1 is the HTTP/1.1 server of proxyd's proxy listener: the hot
// path, where net/http's server spends more per request than the proxy
// itself.
//
// It parses with net/http's own code (http.ReadRequest, the same parser
// and checks net/http's server uses) and runs ordinary http.Handlers, so
// the proxy handler does not know which server runs it. What it saves:
//
//   - Watching for a client that goes away costs net/http a goroutine, a
//     read and a wake-up per request. Here a request is watched once it has
//     run for Server.WatchAfter (10 ms by default), or at once when its
//     handler calls WatchClient on the ResponseWriter (the proxy does when a
//     request has to wait in its queue). A quick request never pays; a
//     request that waits in the queue or on a slow upstream is watched as
//     under net/http, and its context is canceled when its client leaves.
//   - One buffered writer per connection instead of two layers, and a
//     response header written in one pass.
//   - A custom reason phrase: SetReason on the ResponseWriter replaces the
//     status code's standard text (net/http's server always writes that).
//     The proxy's own answers carry their error, its details and the
//     setting to change there, which is what most clients print
//     (docs/operations.md, "Proxy-Status errors").
//
// Framing, trailers, Expect: 100-continue, HTTP/1.0 keep-alive, Hijack,
// header size and time limits, graceful Shutdown follow net/http's server;
// the tests check each against a real client. HTTP/2 is not served: a
// forward proxy's clients speak HTTP/1.1 to it.
//
// # Stricter than net/http
//
// A proxy must not pass on what net/http's parser tolerates, so the server
// refuses more (docs/operations.md, "Framing and header limits"). Each
// refusal is answered (400 or 431, Proxy-Status: proxyd;
// error=http_request_error with details), the connection is closed after
// it, and nothing after it on the connection is read as a request (what
// the client still sends is discarded for up to half a second first, so
// that the close does not reset the answer away):
//
//   - Content-Length with Transfer-Encoding (RFC 9112 §6.3), or
//     Transfer-Encoding in HTTP/1.0 (§6.1): http.ReadRequest resolves the
//     first by dropping Content-Length and ignores the second, which is how
//     a request is smuggled past a server that frames it the other way.
//   - Whitespace between a field name and its colon (RFC 9112 §5.1), which
//     ReadRequest keeps in the name.
//   - More than Server.MaxHeaderFields fields (200), counted as the bytes
//     arrive (headerScan, in the reader under the bufio.Reader), so that a
//     header of 100,000 tiny fields is refused before ReadRequest builds a
//     map of them. The scan also sees what ReadRequest deletes from the
//     header (the two framing fields); it starts with what the bufio.Reader
//     holds already, so a pipelined request is scanned whole too.
//   - Whatever else ReadRequest refuses, a target it cannot parse included.
//     Only a read that failed (the client left, or the header timed out)
//     goes unanswered; a parse error is not that, even when it is a
//     net.Error (*url.Error is one).
//
// Trailer fields that may not be trailers (RFC 9110 §6.5.1: framing,
// routing, request modifiers, authentication, response controls, content
// processing; the list is notTrailers) and every hop-by-hop field, fixed or
// named by Connection, are dropped: from a request's trailers before its
// body reports EOF (so neither the handler nor a transport sending them on
// sees them), and from the trailers a response writes and announces.
//
// # Watching a request that has a body
//
// A request waiting in the proxy's queue has not had its body read: the
// body goes upstream only once it is admitted. The watch must still see
// its client leave (a request whose client is gone is never forwarded),
// but must not take body bytes the handler will need. So, until the body
// is read, the watch reads ahead: it keeps what the client sends (the rest
// of the body, and beyond) in a buffer of up to 16 KiB that the body's
// reads drain first, and an EOF or reset on the way cancels the request at
// once. A body larger than that fills the buffer; the client's FIN then
// waits behind unread data, so the watch asks the kernel (TCP_INFO: the
// connection is no longer ESTABLISHED once the FIN or a reset arrived) at
// once and every 100 ms while the request waits; elsewhere than Linux, or
// on a connection that is not TCP, such a client is seen when the body is
// read. That is the limit: a client whose body is more than the kernel
// holds for the connection cannot even deliver its FIN until the body is
// read, and is seen leaving then. The first read of the body from the connection stops the watch (a body that
// streams shows a leaving client as a failed read); once the body is read
// the watch reads at most one byte, as before: a client that sends more
// (a pipelined request) is there.
//
// # A client that does not read
//
// A handler copying a large body to a client that reads nothing blocks in
// its write for ever, and the proxy holds the request's concurrency
// permit meanwhile. With Server.WriteStallTimeout set, a write that makes
// no progress for the timeout fails with ErrWriteTimeout (the handler
// returns) and the connection is reset; a write that makes progress,
// however slow, gets a new deadline (docs/configuration.md,
// client_write_timeout). The deadline is moved only when it comes nearer
// than the timeout (write.go), so a write costs a clock read, not a call
// into the poller.
package h1
