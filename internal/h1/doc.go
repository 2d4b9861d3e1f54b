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
//
// Framing, trailers, Expect: 100-continue, HTTP/1.0 keep-alive, Hijack,
// header size and time limits, graceful Shutdown follow net/http's server;
// the tests check each against a real client. HTTP/2 is not served: a
// forward proxy's clients speak HTTP/1.1 to it.
package h1
