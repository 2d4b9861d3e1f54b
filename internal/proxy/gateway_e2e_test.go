package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/outcome"
)

// gatewayEnv is a proxy whose routes send /x (stripped) to an upstream's
// /v1, and "/a b" (stripped) to its root; the upstream answers with the
// request-target it got.
func gatewayEnv(t *testing.T) (*env, *origin) {
	t.Helper()
	e := newEnv(t)
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.RequestURI)
	})
	cfg := e.cfg
	cfg.Routes = []config.Route{
		{Prefix: "/x", Upstream: o.URL + "/v1", StripPrefix: true},
		{Prefix: "/a b", Upstream: o.URL, StripPrefix: true},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := e.h.SetPolicy(cfg); err != nil {
		t.Fatal(err)
	}
	return e, o
}

// A gateway path is matched and stripped on the same (escaped) path, and
// its escaping reaches the upstream as sent.
func TestGatewayPathEscaping(t *testing.T) {
	t.Parallel()
	e, _ := gatewayEnv(t)
	for _, tc := range []struct{ path, want string }{
		{"/x/users?page=2", "/v1/users?page=2"},
		{"/x/files/a%2Fb", "/v1/files/a%2Fb"},
		{"/a%20b/users", "/users"},
		{"/%78/users", "/v1/users"},
	} {
		res := e.raw("GET " + tc.path + " HTTP/1.1\r\nHost: gw\r\n\r\n")
		wantStatus(t, res, 200)
		if res.body != tc.want {
			t.Errorf("GET %s reached the upstream as %q, want %q", tc.path, res.body, tc.want)
		}
	}
	// An encoded "/" is no segment boundary: "/x%2Fadmin" is not under /x.
	res := e.raw("GET /x%2Fadmin HTTP/1.1\r\nHost: gw\r\n\r\n")
	wantAnswer(t, res, 404, proxyStatus("destination_not_found", ""), false)
}

// A gateway path with a "." or ".." segment, encoded or not, is refused:
// the upstream could resolve it to a path outside the route's prefix.
func TestGatewayDotSegments(t *testing.T) {
	t.Parallel()
	e, o := gatewayEnv(t)
	for i, path := range []string{
		"/x/../admin",
		"/x/%2e%2e/admin",
		"/x/%2E%2E/admin",
		"/x/.%2e/admin",
		"/x/./admin",
		"/x/%2e/admin",
		"/x%2F..%2Fadmin",
		"/x/a/..",
	} {
		id := "dot-" + string(rune('a'+i))
		res := e.raw("GET " + path + " HTTP/1.1\r\nHost: gw\r\nX-Request-Id: " + id + "\r\n\r\n")
		wantAnswer(t, res, 400, proxyStatus("http_request_error", "dot segment in path"), false)
		e.wantRecord(id, outcome.Denied, 400)
	}
	if ps := o.paths(); len(ps) != 0 {
		t.Errorf("the upstream got %q; nothing must have been forwarded", ps)
	}
	// Dots inside a segment are fine.
	res := e.raw("GET /x/a..b/.c HTTP/1.1\r\nHost: gw\r\n\r\n")
	wantStatus(t, res, 200)
	if !strings.HasSuffix(res.body, "/v1/a..b/.c") {
		t.Errorf("got %q", res.body)
	}
}
