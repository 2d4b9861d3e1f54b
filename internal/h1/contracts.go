package h1

import "net/http"

// The ResponseWriter's methods beyond http.ResponseWriter, by the
// interfaces its callers assert: a handler does not know which server runs
// it (see the package doc), so it reaches them through a type assertion,
// and the checks below keep a renamed method from turning those assertions
// silently false. internal/proxy checks its own interfaces against these
// (internal/proxy/contracts.go).

// ClientWatcher is a ResponseWriter that can start watching its connection
// for the client going away at once (response.WatchClient): the proxy
// calls it when a request has to wait in its queue.
type ClientWatcher interface{ WatchClient() }

// HeaderAdopter is a ResponseWriter that can take over a header map
// instead of copying it (response.AdoptHeader): upstream.CopyResponse
// hands it the upstream response's header.
type HeaderAdopter interface{ AdoptHeader(http.Header) bool }

// ReasonSetter is a ResponseWriter whose status line's reason phrase can
// be set (response.SetReason): the proxy's own answers carry their error
// there (docs/operations.md, "Proxy-Status errors").
type ReasonSetter interface{ SetReason(string) }

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
	_ ClientWatcher       = (*response)(nil)
	_ HeaderAdopter       = (*response)(nil)
	_ ReasonSetter        = (*response)(nil)

	// http.ResponseController's Flush asserts this one.
	_ interface{ FlushError() error } = (*response)(nil)
)
