package proxy

import (
	"net/url"
	"sort"
	"strings"

	"github.com/proxyd/proxyd/internal/config"
)

// route is a compiled gateway route (docs/configuration.md, "Gateway mode:
// `routes`"; docs/shaping.md, "4. Gateway routes").
type route struct {
	prefix   string // decoded, as configured
	upstream *url.URL
	strip    bool
}

// compileRoutes parses validated routes, longest prefix first.
func compileRoutes(rs []config.Route) ([]route, error) {
	out := make([]route, 0, len(rs))
	for _, r := range rs {
		u, err := url.Parse(r.Upstream)
		if err != nil {
			return nil, err
		}
		out = append(out, route{prefix: r.Prefix, upstream: u, strip: r.StripPrefix})
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].prefix) > len(out[j].prefix) })
	return out, nil
}

// matchRoute finds the route with the longest prefix matching escaped (a
// request's escaped path), and how many bytes of escaped that prefix
// spans.
//
// A prefix (configured decoded: "/a b") matches the decoded path, but
// segment by segment as the client wrote it: "/a%20b/users" matches "/a b",
// while an encoded slash is not a segment boundary, so "/x%2F..%2Fadmin"
// does not match "/x". A prefix matches at a path-segment boundary: "/x"
// matches "/x" and "/x/…", not "/xy" (a prefix ending in "/" matches
// whatever follows it).
func matchRoute(routes []route, escaped string) (*route, int) {
	for i := range routes {
		p := routes[i].prefix
		n, ok := escapedPrefixLen(escaped, p)
		if !ok {
			continue
		}
		if n == len(escaped) || strings.HasSuffix(p, "/") || escaped[n] == '/' {
			return &routes[i], n
		}
	}
	return nil, 0
}

// escapedPrefixLen reports whether escaped begins with an escaping of
// prefix, and its length in escaped. Each "/" of prefix must be a literal
// "/" of escaped: an encoded "%2F" is data, not a separator.
func escapedPrefixLen(escaped, prefix string) (int, bool) {
	i := 0
	for j := 0; j < len(prefix); j++ {
		if i >= len(escaped) {
			return 0, false
		}
		c, n := escaped[i], 1
		if c == '%' {
			if i+2 >= len(escaped) || !ishex(escaped[i+1]) || !ishex(escaped[i+2]) {
				return 0, false
			}
			c, n = unhex(escaped[i+1])<<4|unhex(escaped[i+2]), 3
			if c == '/' {
				return 0, false
			}
		}
		if c != prefix[j] {
			return 0, false
		}
		i += n
	}
	return i, true
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// hasDotSegment reports whether the decoded path has a "." or ".."
// segment. A gateway must not forward one: the upstream (or anything
// between) may resolve it (RFC 3986 §5.2.4) and reach a path outside the
// route's prefix. The decoded path is checked, so that "%2e%2e" and
// "..%2F" count too.
func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// target builds the upstream URL for an origin-form request whose escaped
// path matched rt over its first n bytes (matchRoute): the upstream's own
// path, then the request path (without the prefix when strip_prefix),
// then the request's raw query. The path keeps the client's escaping (an
// encoded "/" stays "%2F").
func (rt *route) target(escaped string, n int, rawQuery string) *url.URL {
	path := escaped
	if rt.strip {
		path = escaped[n:]
	}
	u := *rt.upstream
	out := joinPath(rt.upstream.EscapedPath(), path)
	if p, err := url.PathUnescape(out); err == nil {
		u.Path, u.RawPath = p, out
	} else {
		u.Path, u.RawPath = out, ""
	}
	u.RawQuery = rawQuery
	u.Fragment = ""
	return &u
}

func joinPath(base, rest string) string {
	switch {
	case rest == "":
		if base == "" {
			return "/"
		}
		return base
	case base == "":
		if !strings.HasPrefix(rest, "/") {
			return "/" + rest
		}
		return rest
	}
	return strings.TrimSuffix(base, "/") + "/" + strings.TrimPrefix(rest, "/")
}
