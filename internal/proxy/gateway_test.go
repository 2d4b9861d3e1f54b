package proxy

import (
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

func testRoutes(t *testing.T) []route {
	t.Helper()
	rs, err := compileRoutes([]config.Route{
		{Prefix: "/x", Upstream: "http://up/v1", StripPrefix: true},
		{Prefix: "/x/admin", Upstream: "http://up/admin-api"},
		{Prefix: "/gh/", Upstream: "https://gh", StripPrefix: true},
		{Prefix: "/a b", Upstream: "http://up", StripPrefix: true},
		{Prefix: "/keep b", Upstream: "http://up"},
		{Prefix: "/plain", Upstream: "http://up:8080"},
		{Prefix: "/s/", Upstream: "http://up/base/", StripPrefix: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestMatchRoute(t *testing.T) {
	rs := testRoutes(t)
	for _, tc := range []struct {
		escaped string
		prefix  string // "" for no match
		n       int
	}{
		{"/x", "/x", 2},
		{"/x/", "/x", 2},
		{"/x/users", "/x", 2},
		{"/xy", "", 0},                      // segment boundary
		{"/x/admin/keys", "/x/admin", 8},    // longest prefix wins
		{"/x/adminx", "/x", 2},              // ... at a segment boundary only
		{"/gh/", "/gh/", 4},                 // a prefix ending in "/"
		{"/gh/users", "/gh/", 4},            //
		{"/gh", "", 0},                      // ... does not match without it
		{"/a%20b/users", "/a b", 6},         // the prefix is decoded, the path escaped
		{"/a%20b", "/a b", 6},               //
		{"/a%20bc", "", 0},                  //
		{"/%78/users", "/x", 4},             // any escaping of the prefix
		{"/x%2F..%2Fadmin", "", 0},          // an encoded "/" is no boundary
		{"/x%2fadmin/keys", "", 0},          // ... nor a "/" of the prefix
		{"/x%2Fadmin", "", 0},               //
		{"/x%", "", 0},                      // invalid escape
		{"/x%zz", "", 0},                    //
		{"/", "", 0},                        //
		{"/plain/a%2Fb", "/plain", 6},       //
		{"/s/", "/s/", 3},                   //
		{"*", "", 0},                        // OPTIONS *
		{"/X/users", "", 0},                 // case matters
		{"/gh%2Fusers", "", 0},              // the "/" ending a prefix must be literal too
		{"/keep%20b/z", "/keep b", 9},       //
		{"/a%2520b/users", "", 0},           // "%2520" is "%20", not " "
		{"/x/admin%2Fkeys", "/x", 2},        // "/x/admin" needs a literal boundary after it
		{"/x/admin/", "/x/admin", 8},        //
		{"/x/ad%6Din/keys", "/x/admin", 10}, //
	} {
		rt, n := matchRoute(rs, tc.escaped)
		switch {
		case tc.prefix == "" && rt != nil:
			t.Errorf("matchRoute(%q) = %q, want no match", tc.escaped, rt.prefix)
		case tc.prefix != "" && rt == nil:
			t.Errorf("matchRoute(%q): no match, want %q", tc.escaped, tc.prefix)
		case rt != nil && (rt.prefix != tc.prefix || n != tc.n):
			t.Errorf("matchRoute(%q) = %q, %d; want %q, %d", tc.escaped, rt.prefix, n, tc.prefix, tc.n)
		}
	}
}

func TestRouteTarget(t *testing.T) {
	rs := testRoutes(t)
	var before []string
	for _, rt := range rs {
		before = append(before, rt.upstream.String())
	}
	for _, tc := range []struct {
		escaped, query string
		want           string // the target URL
		path           string // its decoded path
	}{
		{"/x/users", "page=2", "http://up/v1/users?page=2", "/v1/users"}, // strip, base path
		{"/x", "", "http://up/v1", "/v1"},
		{"/x/", "", "http://up/v1/", "/v1/"},
		{"/x/admin/keys", "", "http://up/admin-api/x/admin/keys", "/admin-api/x/admin/keys"}, // no strip
		{"/x/files/a%2Fb", "x=1", "http://up/v1/files/a%2Fb?x=1", "/v1/files/a/b"},           // escaping kept
		{"/%78/users", "", "http://up/v1/users", "/v1/users"},                                // the escaped prefix is stripped
		{"/a%20b/users", "", "http://up/users", "/users"},                                    // a prefix that needs escaping
		{"/a%20b", "", "http://up/", "/"},
		{"/keep%20b/z", "", "http://up/keep%20b/z", "/keep b/z"}, // no strip: kept as sent
		{"/gh/users", "", "https://gh/users", "/users"},          // prefix ending in "/"
		{"/gh/", "", "https://gh/", "/"},
		{"/plain/a/b", "q", "http://up:8080/plain/a/b?q", "/plain/a/b"}, // no base path
		{"/s/x", "", "http://up/base/x", "/base/x"},                     // base path ending in "/"
		{"/s/", "", "http://up/base/", "/base/"},
	} {
		rt, n := matchRoute(rs, tc.escaped)
		if rt == nil {
			t.Errorf("%s: no route", tc.escaped)
			continue
		}
		u := rt.target(tc.escaped, n, tc.query)
		if got := u.String(); got != tc.want || u.Path != tc.path {
			t.Errorf("%s → %q (path %q), want %q (path %q)", tc.escaped, got, u.Path, tc.want, tc.path)
		}
	}
	// The routes' own URLs are never modified.
	for i, want := range before {
		if got := rs[i].upstream.String(); got != want {
			t.Errorf("route %q: upstream changed from %q to %q", rs[i].prefix, want, got)
		}
	}
}

func TestJoinPath(t *testing.T) {
	for _, tc := range []struct{ base, rest, want string }{
		{"", "", "/"},
		{"/v1", "", "/v1"},
		{"/v1/", "", "/v1/"},
		{"", "a", "/a"},
		{"", "/a", "/a"},
		{"/v1", "a", "/v1/a"},
		{"/v1", "/a", "/v1/a"},
		{"/v1/", "/a", "/v1/a"},
		{"/v1/", "/a/", "/v1/a/"},
		{"/v%201", "/a%2Fb", "/v%201/a%2Fb"},
	} {
		if got := joinPath(tc.base, tc.rest); got != tc.want {
			t.Errorf("joinPath(%q, %q) = %q, want %q", tc.base, tc.rest, got, tc.want)
		}
	}
}

func TestHasDotSegment(t *testing.T) {
	for path, want := range map[string]bool{
		"/x/../admin": true,
		"/x/./admin":  true,
		"/..":         true,
		"/x/..":       true,
		"/.":          true,
		"/x/../":      true,
		"/x/..a":      false,
		"/x/a..":      false,
		"/x/...":      false,
		"/x/.a/b.":    false,
		"/":           false,
		"":            false,
	} {
		if got := hasDotSegment(path); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", path, got, want)
		}
	}
}
