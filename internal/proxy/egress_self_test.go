package proxy_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/testdns"
	"github.com/proxyd/proxyd/internal/testnetns"
)

// An address added to the host after proxyd started is refused on
// proxyd's own listeners as soon as it exists, whatever egress.allow
// says: with both listeners on 0.0.0.0 and egress.allow 0.0.0.0/0, a
// PATCH to the admin API at the new address through the proxy, a CONNECT
// to it and a name resolving to it are refused 403 (reason self), and the
// admin listener, which the address does reach, gets nothing. Run in a
// private network namespace (internal/testnetns): the address goes on
// its lo.
func TestEgressSelfAddressAddedAfterStart(t *testing.T) {
	if !testnetns.Enter(t) {
		return
	}
	proxyLn, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	dns := testdns.Start(t, map[string][]netip.Addr{"admin.test": {netip.MustParseAddr("10.0.0.7")}})
	e := newEnv(t, func(s *setup) {
		s.ln = proxyLn
		s.cfg.Egress.Allow = []string{"0.0.0.0/0", "::/0"}
		s.fwd.Resolver = dns.Resolver()
	})
	// The admin listener, on all interfaces too; it counts what it gets.
	var patched atomic.Int32
	admin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && r.URL.Path == "/api/v1/limits" {
			patched.Add(1)
		}
		_, _ = io.WriteString(w, "limits changed")
	}))
	admin.Listener.Close()
	if admin.Listener, err = net.Listen("tcp", "0.0.0.0:0"); err != nil {
		t.Fatal(err)
	}
	admin.Start()
	e.onTeardown(admin.Close)
	// As proxyd does (cmd/proxyd): both listeners, the host's real addresses.
	if err := e.egress.SetSelf([]net.Addr{proxyLn.Addr(), admin.Listener.Addr()}, nil); err != nil {
		t.Fatal(err)
	}
	_, adminPort, _ := net.SplitHostPort(admin.Listener.Addr().String())
	_, proxyPort, _ := net.SplitHostPort(proxyLn.Addr().String())

	testnetns.AddAddr(t, "10.0.0.7")
	adminAt := "10.0.0.7:" + adminPort
	// The new address does reach the admin listener.
	direct, _ := http.NewRequest(http.MethodPatch, "http://"+adminAt+"/api/v1/limits", strings.NewReader(`{"rate":1000}`))
	wantStatus(t, roundTrip(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, direct), 200)
	if patched.Load() != 1 {
		t.Fatalf("the admin listener got %d PATCHes directly, want 1", patched.Load())
	}

	want := deniedAddr(adminAt + " is proxyd itself")
	req := e.req(http.MethodPatch, "http://"+adminAt+"/api/v1/limits", strings.NewReader(`{"rate":1000}`))
	wantAnswer(t, e.do(req), 403, want, false)
	e.wantEgressDenied(idOf(req), egress.ReasonSelf, true)

	tc, body := e.connect(adminAt, "X-Request-Id: self-added-connect")
	wantAnswer(t, tc.result(body), 403, want, false)
	e.wantEgressDenied("self-added-connect", egress.ReasonSelf, true)

	// A name resolving to it: refused when dialed.
	req = e.req(http.MethodPatch, "http://admin.test:"+adminPort+"/api/v1/limits", strings.NewReader(`{"rate":1000}`))
	wantAnswer(t, e.do(req), 403, want, false)
	e.wantEgressDenied(idOf(req), egress.ReasonSelf, false)
	tc, body = e.connect("admin.test:"+adminPort, "X-Request-Id: self-added-connect-name")
	wantAnswer(t, tc.result(body), 403, want, false)
	e.wantEgressDenied("self-added-connect-name", egress.ReasonSelf, false)

	// The proxy's own port on it too.
	res, id := e.get("http://10.0.0.7:" + proxyPort + "/")
	wantAnswer(t, res, 403, deniedAddr("10.0.0.7:"+proxyPort+" is proxyd itself"), false)
	e.wantEgressDenied(id, egress.ReasonSelf, true)

	if n := patched.Load(); n != 1 {
		t.Errorf("the admin listener got %d PATCHes, want only the direct one", n)
	}
}
