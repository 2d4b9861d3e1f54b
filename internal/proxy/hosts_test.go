package proxy_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// TestHostsWildcardOverSockets: names are resolved to the loopback upstream
// by the forwarder's dial hook, so a *.suffix rule is tested for real:
// subdomains share the rule's concurrency cap of 1; the apex and another
// domain are not covered.
func TestHostsWildcardOverSockets(t *testing.T) {
	var upAddr string
	e := newEnv(t, func(s *setup) {
		s.cfg.Hosts = []config.HostRule{{Match: "*.api.test", Concurrency: ptr(1)}}
		s.fwd.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, upAddr) // every name is the test upstream
		}
	})
	o := e.newOrigin(nil)
	upAddr = strings.TrimPrefix(o.URL, "http://")
	_, port, _ := net.SplitHostPort(upAddr)
	url := func(host, path string) string { return "http://" + host + ":" + port + path }

	// A request to a.api.test holds the rule's only slot at the upstream.
	held := e.goDo(e.req(http.MethodGet, url("a.api.test", "/hold-a"), nil))
	if p := recv(t, o.held, "the held request at the upstream"); p != "/hold-a" {
		t.Fatalf("upstream holds %s", p)
	}
	// Another subdomain waits for the same rule.
	waiting := e.goDo(e.req(http.MethodGet, url("b.api.test", "/b"), nil))
	e.stats("b.api.test waiting on the rule", func(s dispatch.Stats) bool {
		return s.Depth == 1 && len(s.Hosts) == 1 && s.Hosts[0].Waiting == 1 && s.Hosts[0].InFlight == 1
	})
	// The apex and other domains are not covered: they go at once.
	for _, host := range []string{"api.test", "other.test"} {
		wantStatus(t, e.do(e.req(http.MethodGet, url(host, "/free"), nil)), 200)
	}
	o.never("/b")
	o.release()
	wantStatus(t, recv(t, held, "the held request"), 200)
	wantStatus(t, recv(t, waiting, "the waiting subdomain request"), 200)
	if got := o.got("/b"); got.Host != "b.api.test:"+port {
		t.Fatalf("upstream saw Host %q", got.Host)
	}
}
