package h1

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// notTrailers are the fields a trailer section may not carry, whatever the
// sender announced: RFC 9110 §6.5.1 forbids in trailers the fields needed
// to frame, route, authenticate or process a message, because a recipient
// acts on them before the content and a later copy would contradict or
// override what was decided. Every hop-by-hop field is here too: a trailer
// belongs to the message, never to one connection. The server drops them
// from the trailers it reads (before the handler, or a transport sending
// the request on, sees them) and from the trailers it writes.
var notTrailers = map[string]bool{
	// Framing (RFC 9112 §6) and hop-by-hop fields (RFC 9110 §7.6.1, and
	// the pre-RFC 7230 Proxy-Connection and Keep-Alive).
	"Content-Length":      true,
	"Transfer-Encoding":   true,
	"Trailer":             true,
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Te":                  true,
	"Upgrade":             true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	// Routing and the path the message took (RFC 9110 §7.2, §7.6).
	"Host":              true,
	"Via":               true,
	"Max-Forwards":      true,
	"Forwarded":         true,
	"X-Forwarded-For":   true,
	"X-Forwarded-Host":  true,
	"X-Forwarded-Proto": true,
	// Request modifiers: controls, conditionals, ranges, negotiation
	// (RFC 9110 §10.1, §13.1, §14.2, §12.5; RFC 9111 §5.2, §5.4).
	"Expect":              true,
	"Cache-Control":       true,
	"Pragma":              true,
	"Range":               true,
	"If-Match":            true,
	"If-None-Match":       true,
	"If-Modified-Since":   true,
	"If-Unmodified-Since": true,
	"If-Range":            true,
	"Accept":              true,
	"Accept-Charset":      true,
	"Accept-Encoding":     true,
	"Accept-Language":     true,
	// Authentication and state (RFC 9110 §11; RFC 6265).
	"Authorization":             true,
	"Www-Authenticate":          true,
	"Authentication-Info":       true,
	"Proxy-Authentication-Info": true,
	"Cookie":                    true,
	"Set-Cookie":                true,
	// Response control data (RFC 9110 §10.2; RFC 9111 §5).
	"Age":         true,
	"Date":        true,
	"Expires":     true,
	"Location":    true,
	"Retry-After": true,
	"Vary":        true,
	"Warning":     true,
	// How to process the content (RFC 9110 §8).
	"Content-Encoding": true,
	"Content-Type":     true,
	"Content-Range":    true,
}

// trailerAllowed reports whether a trailer field named k may pass: a valid
// field name (a token: "Host " with its space is not), not in notTrailers,
// and not one of named (the fields the message's Connection header names,
// hop-by-hop too).
func trailerAllowed(k string, named []string) bool {
	if !httpguts.ValidHeaderFieldName(k) { // an RFC 9110 §5.1 token
		return false
	}
	k = textproto.CanonicalMIMEHeaderKey(k)
	return !notTrailers[k] && !slices.Contains(named, k)
}

// dropTrailers deletes from t the fields trailerAllowed refuses.
func dropTrailers(t http.Header, named []string) {
	for k := range t {
		if !trailerAllowed(k, named) {
			delete(t, k)
		}
	}
}

// connectionNamed returns the canonical names that h's Connection fields
// list (RFC 9110 §7.6.1), nil when there is none.
func connectionNamed(h http.Header) []string {
	var named []string
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				named = append(named, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	return named
}
