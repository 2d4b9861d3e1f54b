package upstream

import (
	"context"
	"iter"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// Pseudonym is the received-by name proxyd puts in Via (RFC 9110 §7.6.3)
// and looks for in IsLoop.
const Pseudonym = "proxyd"

// hopHeaders are removed from requests and responses whatever Connection
// says (RFC 9110 §7.6.1; the list is docs/clients.md's, "What proxyd
// changes on the way"). Proxy-Connection and Keep-Alive are pre-RFC 7230
// relics some clients still send. Trailer is not hop-by-hop in RFC 9110,
// but it describes the framing of this hop's message: the transport and the
// server regenerate it from the Trailer maps (see CopyResponse), so a stale
// copy must not pass.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te", // canonical form of "TE"
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// isHopByHop reports whether canonical key k is in hopHeaders.
func isHopByHop(k string) bool { return slices.Contains(hopHeaders, k) }

// connectionTokens yields the connection-options of h's Connection fields,
// trimmed, in canonical form. RFC 9110 §7.6.1: "a proxy or gateway MUST
// parse a received Connection header field before a message is forwarded
// and, for each connection-option in this field, remove any header or
// trailer field(s) from the message with the same name as the
// connection-option".
func connectionTokens(h http.Header) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, f := range h["Connection"] {
			for sf := range strings.SplitSeq(f, ",") {
				if sf = textproto.TrimString(sf); sf != "" && !yield(textproto.CanonicalMIMEHeaderKey(sf)) {
					return
				}
			}
		}
	}
}

// RemoveHopByHop deletes the hop-by-hop fields of h in place: first every
// field named in Connection, then the fixed list.
func RemoveHopByHop(h http.Header) {
	for k := range connectionTokens(h) {
		delete(h, k)
	}
	for _, k := range hopHeaders {
		delete(h, k) // keys above are canonical
	}
}

// Outbound builds the request to send upstream. It does not modify in.
//
// The result is a clone of in carrying ctx, sent to target (an absolute URL
// with the path and query already decided by the caller; its Host becomes
// the Host header), without in's hop-by-hop fields and without the fields
// named in drop (proxyd's own X-Priority, X-Proxy-Timeout; any case, but
// canonical is cheapest), with this proxy
// appended to Via. No X-Forwarded-For is added (see the package doc).
//
// The body is in.Body itself and streams; ContentLength is kept. A request
// known to have no body gets a nil Body, so the transport may retry it on a
// fresh connection when a pooled one turns out dead (golang.org/issue/16036).
// out.Trailer aliases in.Trailer: the server fills trailer values in only
// when the body reaches EOF, which is when the transport reads them; treat
// it as read-only. No filter can be applied here, before the values exist:
// the server (internal/h1) drops the fields that may not be trailers, and
// the hop-by-hop ones, before the body reports EOF (docs/operations.md,
// "Framing and header limits").
func Outbound(ctx context.Context, in *http.Request, target *url.URL, drop []string) *http.Request {
	out := in.WithContext(ctx) // a shallow copy; the header is rebuilt below
	u := *target
	out.URL = &u
	out.Host = target.Host
	out.RequestURI = "" // must be empty in client requests
	// The client's "Connection: close" is about its connection to us, not
	// ours to the upstream, which stays pooled.
	out.Close = false
	out.Trailer = in.Trailer
	out.Header = outboundHeader(in.Header, drop)
	AppendVia(out.Header, in.ProtoMajor, in.ProtoMinor)
	if _, ok := out.Header["User-Agent"]; !ok {
		// An empty User-Agent stops the transport from sending its own
		// "Go-http-client/1.1" where the client sent none.
		out.Header["User-Agent"] = []string{""}
	}
	if in.ContentLength == 0 && (in.Body == nil || in.Body == http.NoBody) {
		out.Body = nil
		out.GetBody = nil
	}
	return out
}

// outboundHeader copies in without its hop-by-hop fields (RFC 9110 §7.6.1:
// the fixed list and those named in Connection) and without drop
// (any case), in one pass that skips rather than deletes. Value
// slices are shared with in but clipped, so an Add on the copy reallocates
// instead of writing into in's.
func outboundHeader(in http.Header, drop []string) http.Header {
	var named []string
	if _, ok := in["Connection"]; ok {
		named = slices.Collect(connectionTokens(in))
	}
	drop = canonicalKeys(drop)
	out := make(http.Header, len(in)+1)
	for k, vv := range in {
		if isHopByHop(k) || slices.Contains(named, k) || slices.Contains(drop, k) {
			continue
		}
		out[k] = vv[:len(vv):len(vv)]
	}
	return out
}

// canonicalKeys returns keys in canonical form: keys itself, with no
// allocation, when they are already (proxyd's drop list is canonicalised
// once, when its policy is compiled).
func canonicalKeys(keys []string) []string {
	for i, k := range keys {
		if textproto.CanonicalMIMEHeaderKey(k) != k {
			out := slices.Clone(keys)
			for j := i; j < len(out); j++ {
				out[j] = textproto.CanonicalMIMEHeaderKey(out[j])
			}
			return out
		}
	}
	return keys
}

// AppendVia adds this proxy to the Via field of h, after any entries
// already there, as one comma-separated line (RFC 9110 §7.6.3: "each
// intermediary appends its own information about how the message was
// received"). major.minor is the HTTP version of the message as received
// (inbound request, or upstream response); 1.1 when unknown.
func AppendVia(h http.Header, major, minor int) {
	v := viaEntry(major, minor)
	if prior := h["Via"]; len(prior) > 0 {
		v = strings.Join(prior, ", ") + ", " + v
	}
	h["Via"] = []string{v}
}

// viaEntry returns the received-protocol and received-by of our Via entry.
// RFC 9110 §7.6.3: the protocol-name is omitted for HTTP, and the version
// is that of the message received on this hop.
func viaEntry(major, minor int) string {
	switch {
	case major == 1 && minor == 0:
		return "1.0 " + Pseudonym
	case major == 2:
		return "2 " + Pseudonym
	case major == 3:
		return "3 " + Pseudonym
	default:
		return "1.1 " + Pseudonym
	}
}

// IsLoop reports whether a Via field in h already names this proxy as
// received-by, in any entry: "1.1 proxyd", "HTTP/1.1 proxyd",
// "1.0 a, 1.1 proxyd:8080 (comment)". The pseudonym matches
// case-insensitively, with or without a port; an occurrence inside a
// comment, or as a protocol, is not a match.
func IsLoop(h http.Header) bool {
	for _, v := range h["Via"] {
		if viaNames(v, Pseudonym) {
			return true
		}
	}
	return false
}

// viaNames reports whether one Via field line has an entry received by
// name. Grammar (RFC 9110 §7.6.3):
//
//	Via = #( received-protocol RWS received-by [ RWS comment ] )
//
// Entries are split at commas outside comments; comments nest and may hold
// quoted-pairs (RFC 9110 §5.6.5).
func viaNames(v, name string) bool {
	depth, start := 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++ // quoted-pair: skip the escaped octet
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ',' && depth == 0:
			if viaEntryNames(v[start:i], name) {
				return true
			}
			start = i + 1
		}
	}
	return viaEntryNames(v[start:], name)
}

// viaEntryNames checks one entry: "proto by [comment]".
func viaEntryNames(e, name string) bool {
	if i := strings.IndexByte(e, '('); i >= 0 {
		e = e[:i]
	}
	// received-protocol, then received-by; both are tokens without spaces.
	e = strings.TrimLeft(e, " \t")
	i := strings.IndexAny(e, " \t")
	if i < 0 {
		return false
	}
	by := strings.TrimLeft(e[i:], " \t")
	if j := strings.IndexAny(by, " \t"); j >= 0 {
		by = by[:j]
	}
	if j := strings.LastIndexByte(by, ':'); j >= 0 {
		by = by[:j] // received-by = pseudonym [ ":" port ]
	}
	return strings.EqualFold(by, name)
}
