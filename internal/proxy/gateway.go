package proxy

import (
	"net/url"
	"sort"
	"strings"

	"github.com/proxyd/proxyd/internal/config"
)

// route is a compiled gateway route (SPEC §2, gateway mode).
type route struct {
	prefix   string
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

// matchRoute finds the route with the longest prefix matching path (the
// decoded path). A
// prefix matches at a path-segment boundary: "/x" matches "/x" and "/x/…",
// not "/xy" (a prefix ending in "/" matches whatever follows it).
func matchRoute(routes []route, path string) *route {
	for i := range routes {
		p := routes[i].prefix
		if !strings.HasPrefix(path, p) {
			continue
		}
		if len(path) == len(p) || strings.HasSuffix(p, "/") || path[len(p)] == '/' {
			return &routes[i]
		}
	}
	return nil
}

// target builds the upstream URL for an origin-form request: the
// upstream's own path, then the request path (without the prefix when
// strip_prefix), then the request's query. The path keeps the client's
// escaping (an encoded "/" stays "%2F").
func (rt *route) target(in *url.URL) *url.URL {
	path := in.EscapedPath()
	if rt.strip {
		path = strings.TrimPrefix(path, rt.prefix)
	}
	u := *rt.upstream
	escaped := joinPath(rt.upstream.EscapedPath(), path)
	if p, err := url.PathUnescape(escaped); err == nil {
		u.Path, u.RawPath = p, escaped
	} else {
		u.Path, u.RawPath = escaped, ""
	}
	u.RawQuery = in.RawQuery
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
