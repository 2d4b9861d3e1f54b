package proxy_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/testdns"
)

// deniedAddr is the Proxy-Status of an address refusal.
func deniedAddr(details string) string { return proxyStatus("destination_ip_prohibited", details) }

// deniedReq is the Proxy-Status of a host, port or egress.deny refusal.
func deniedReq(details string) string { return proxyStatus("http_request_denied", details) }

// wantEgressDenied checks a refusal's Record: outcome denied, 403, the
// reason, and whether it was refused before admission (no token, no
// slot, no queue).
func (e *env) wantEgressDenied(id, reason string, beforeAdmission bool) {
	e.t.Helper()
	r := e.wantRecord(id, outcome.Denied, 403)
	if r.EgressDenied != reason {
		e.t.Errorf("Record %s: EgressDenied %q, want %q (err %v)", id, r.EgressDenied, reason, r.Err)
	}
	if beforeAdmission && r.Admitted {
		e.t.Errorf("Record %s: admitted, want refused before admission", id)
	}
}

// With the default policy, every default-denied range is refused for a
// literal target before admission, plain and CONNECT: a limits.rate of one
// token per 1000 s keeps its one token, and no dial is attempted.
func TestEgressDefaultDenyLiteralTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultEgress, func(s *setup) {
		s.cfg.Limits.Rate = 0.001
		s.cfg.Limits.Burst = 1
	})
	o := e.newOrigin(nil)
	u, _ := url.Parse(o.URL)
	tests := []struct {
		target, reason, details string
	}{
		{o.URL + "/a", egress.ReasonLoopback, "127.0.0.1 is loopback (127.0.0.0/8)"},
		{"http://127.9.9.9/", egress.ReasonLoopback, "127.9.9.9 is loopback (127.0.0.0/8)"},
		{"http://[::1]:" + u.Port() + "/", egress.ReasonLoopback, "::1 is loopback (::1/128)"},
		{"http://[::ffff:127.0.0.1]:" + u.Port() + "/", egress.ReasonLoopback, "127.0.0.1 is loopback (127.0.0.0/8)"},
		{"http://10.0.0.7/", egress.ReasonPrivate, "10.0.0.7 is private (10.0.0.0/8)"},
		{"http://[::ffff:10.0.0.7]/", egress.ReasonPrivate, "10.0.0.7 is private (10.0.0.0/8)"},
		{"http://172.20.1.1/", egress.ReasonPrivate, "172.20.1.1 is private (172.16.0.0/12)"},
		{"http://192.168.0.1:8080/", egress.ReasonPrivate, "192.168.0.1 is private (192.168.0.0/16)"},
		{"http://100.100.100.200/", egress.ReasonPrivate, "100.100.100.200 is shared address space (100.64.0.0/10)"},
		{"http://[fd12::1]/", egress.ReasonPrivate, "fd12::1 is private (unique local) (fc00::/7)"},
		{"http://169.254.169.254/latest/meta-data/", egress.ReasonLinkLocal, "169.254.169.254 is link-local (cloud metadata) (169.254.169.254/32)"},
		{"http://[::ffff:a9fe:a9fe]/", egress.ReasonLinkLocal, "169.254.169.254 is link-local (cloud metadata) (169.254.169.254/32)"},
		{"http://169.254.10.1/", egress.ReasonLinkLocal, "169.254.10.1 is link-local (169.254.0.0/16)"},
		{"http://[fe80::1%25eth0]/", egress.ReasonLinkLocal, "fe80::1 is link-local (fe80::/10)"},
		{"http://[fd00:ec2::254]/", egress.ReasonLinkLocal, "fd00:ec2::254 is link-local (cloud metadata) (fd00:ec2::254/128)"},
		{"http://0.0.0.0:" + u.Port() + "/", egress.ReasonSpecial, "0.0.0.0 is unspecified (0.0.0.0/32)"},
		{"http://[::]/", egress.ReasonSpecial, ":: is unspecified (::/128)"},
		{"http://224.0.0.251/", egress.ReasonSpecial, "224.0.0.251 is multicast (224.0.0.0/4)"},
		{"http://[ff02::1]/", egress.ReasonSpecial, "ff02::1 is multicast (ff00::/8)"},
		{"http://255.255.255.255/", egress.ReasonSpecial, "255.255.255.255 is broadcast (255.255.255.255/32)"},
		{"http://240.1.2.3/", egress.ReasonSpecial, "240.1.2.3 is reserved (240.0.0.0/4)"},
		{"http://[64:ff9b::a00:7]/", egress.ReasonPrivate, "64:ff9b::a00:7 is NAT64 for 10.0.0.7, private (10.0.0.0/8)"},
	}
	for _, tt := range tests {
		res, id := e.get(tt.target)
		wantAnswer(t, res, 403, deniedAddr(tt.details), false)
		e.wantEgressDenied(id, tt.reason, true)
	}
	connects := []struct{ target, reason, details string }{
		{"10.0.0.7:443", egress.ReasonPrivate, "10.0.0.7 is private (10.0.0.0/8)"},
		{"[fe80::1]:443", egress.ReasonLinkLocal, "fe80::1 is link-local (fe80::/10)"},
		{"169.254.169.254:443", egress.ReasonLinkLocal, "169.254.169.254 is link-local (cloud metadata) (169.254.169.254/32)"},
		{"127.0.0.1:443", egress.ReasonLoopback, "127.0.0.1 is loopback (127.0.0.0/8)"},
		{"localhost:443", egress.ReasonLoopback, "127.0.0.1 is loopback (127.0.0.0/8)"},
	}
	for i, tt := range connects {
		id := fmt.Sprintf("egress-connect-%d", i)
		tc, body := e.connect(tt.target, "X-Request-Id: "+id)
		wantAnswer(t, tc.result(body), 403, deniedAddr(tt.details), false)
		e.wantEgressDenied(id, tt.reason, true)
	}
	o.never("/a")
	if s := e.disp.Stats(); s.Tokens < 0.99 || s.Depth != 0 || s.InFlight != 0 || s.Tunnels != 0 {
		t.Errorf("after refusals: tokens %.3f depth %d in flight %d tunnels %d; a refusal before admission takes nothing", s.Tokens, s.Depth, s.InFlight, s.Tunnels)
	}
	// The one token is still there for an allowed destination: a public
	// name is not judged before it is dialed, so this one is admitted
	// (and then fails to resolve, with no DNS here: what matters is that
	// it took the token the refusals left).
	res, id := e.get("http://nonexistent.invalid/")
	if res.resp.StatusCode == 403 {
		t.Fatalf("a public name was refused: %v", res)
	}
	if r := e.record(id); !r.Admitted {
		t.Errorf("the first allowed request was not admitted: %+v", r)
	}
}

// A name is judged by the address it resolves to, when it is dialed: a
// name that resolves to a denied address is refused (DNS rebinding), plain
// and CONNECT; one that resolves to an allowed address goes through. The
// names resolve through a DNS server on loopback that the test controls.
func TestEgressNameResolvingToDeniedAddress(t *testing.T) {
	t.Parallel()
	var dns *testdns.Server
	e := newEnv(t, func(s *setup) {
		dns = testdns.Start(t, map[string][]netip.Addr{
			"rebind.test":   {netip.MustParseAddr("10.0.0.7")},
			"metadata.test": {netip.MustParseAddr("169.254.169.254")},
			"ula.test":      {netip.MustParseAddr("fd00::7")},
			"mixed.test":    {netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("fe80::9")},
			"local.test":    {netip.MustParseAddr("127.0.0.1")},
		})
		s.fwd.Resolver = dns.Resolver()
		// A retry must not dial a refused address again.
		s.cfg.Upstream.Retry.Attempts = 3
	})
	o := e.newOrigin(nil)
	u, _ := url.Parse(o.URL)
	port := u.Port()

	tests := []struct{ name, reason, details string }{
		{"rebind.test", egress.ReasonPrivate, "10.0.0.7 is private (10.0.0.0/8)"},
		{"metadata.test", egress.ReasonLinkLocal, "169.254.169.254 is link-local (cloud metadata) (169.254.169.254/32)"},
		{"ula.test", egress.ReasonPrivate, "fd00::7 is private (unique local) (fc00::/7)"},
	}
	for _, tt := range tests {
		res, id := e.get("http://" + tt.name + ":" + port + "/x")
		wantAnswer(t, res, 403, deniedAddr(tt.details), false)
		r := e.record(id)
		if r.Outcome != outcome.Denied || r.EgressDenied != tt.reason || !r.Admitted || r.Retries != 0 {
			t.Errorf("%s: Record outcome %q reason %q admitted %v retries %d; want denied %q, admitted (names are judged when dialed), no retry", tt.name, r.Outcome, r.EgressDenied, r.Admitted, r.Retries, tt.reason)
		}
		if dns.Queries(tt.name) == 0 {
			t.Errorf("%s was never resolved", tt.name)
		}

		id = "egress-dns-connect-" + tt.name
		tc, body := e.connect(tt.name+":"+port, "X-Request-Id: "+id)
		wantAnswer(t, tc.result(body), 403, deniedAddr(tt.details), false)
		e.wantRecord(id, outcome.Denied, 403)
	}
	// Every address of a name is judged: none of mixed.test's is allowed.
	res, _ := e.get("http://mixed.test:" + port + "/x")
	wantAnswer(t, res, 403, `proxyd; error=destination_ip_prohibited; details="*`, false)

	// local.test resolves to the allowed 127.0.0.1: forwarded, to the
	// address the test DNS gave.
	res, _ = e.get("http://local.test:" + port + "/through")
	wantStatus(t, res, 200)
	if h := o.got("/through").Host; h != "local.test:"+port {
		t.Errorf("upstream saw Host %q", h)
	}
	_, echoPort, _ := net.SplitHostPort(e.echoServer())
	tc, _ := e.connect("local.test:" + echoPort)
	wantStatus(t, tc.result(""), 200)
	roundTripLine(t, tc, "through a name\n")
	tc.Close()
	o.never("/x")

	// A rebinding name: allowed while it points at 127.0.0.1, refused the
	// moment it points at 10.0.0.7. New connections only: close the pool.
	dns.Set("flip.test", netip.MustParseAddr("127.0.0.1"))
	res, _ = e.get("http://flip.test:" + port + "/flip1")
	wantStatus(t, res, 200)
	dns.Set("flip.test", netip.MustParseAddr("10.0.0.7"))
	e.fwd.Close()
	res, _ = e.get("http://flip.test:" + port + "/flip2")
	wantAnswer(t, res, 403, deniedAddr("10.0.0.7 is private (10.0.0.0/8)"), false)
	o.never("/flip2")
}

// proxyd's own listener is never a destination, on any address that
// reaches it, whatever egress.allow says; plain and CONNECT.
func TestEgressSelf(t *testing.T) {
	t.Parallel()
	hostAddr := netip.MustParseAddr("203.0.113.5") // stands for one of the host's interface addresses
	e := newEnv(t, func(s *setup) {
		s.cfg.Egress.Allow = []string{"0.0.0.0/0", "::/0", "localhost"}
		s.localAddrs = []netip.Addr{hostAddr}
	})
	_, port, _ := net.SplitHostPort(e.addr)
	forms := []struct{ target, shown string }{
		{"127.0.0.1", "127.0.0.1"}, {"127.0.0.2", "127.0.0.2"}, {"localhost", "localhost"}, {"[::1]", "[::1]"},
		{"0.0.0.0", "0.0.0.0"}, {"[::]", "[::]"}, {"[::ffff:127.0.0.1]", "127.0.0.1"},
		{"203.0.113.5", "203.0.113.5"}, {"[::ffff:203.0.113.5]", "203.0.113.5"},
	}
	for _, f := range forms {
		want := deniedAddr(f.shown + ":" + port + " is proxyd itself")
		res, id := e.get("http://" + f.target + ":" + port + "/api/v1/limits")
		wantAnswer(t, res, 403, want, false)
		e.wantEgressDenied(id, egress.ReasonSelf, true)

		id = "egress-self-connect-" + f.target
		tc, body := e.connect(f.target+":"+port, "X-Request-Id: "+id)
		wantAnswer(t, tc.result(body), 403, want, false)
		e.wantEgressDenied(id, egress.ReasonSelf, true)
	}
	// localhost in any case, with a trailing dot.
	tc, body := e.connect("LOCALHOST.:"+port, "X-Request-Id: egress-self-dot")
	wantAnswer(t, tc.result(body), 403, deniedAddr("localhost:"+port+" is proxyd itself"), false)
	if s := e.disp.Stats(); s.Tunnels != 0 || s.InFlight != 0 {
		t.Errorf("tunnels %d, in flight %d after self refusals", s.Tunnels, s.InFlight)
	}
}

// A name resolving to proxyd's own address is refused when dialed.
func TestEgressSelfByName(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(s *setup) {
		s.ln = ln
		dns := testdns.Start(t, map[string][]netip.Addr{"me.test": {netip.MustParseAddr("127.0.0.1")}})
		s.fwd.Resolver = dns.Resolver()
	})
	_, port, _ := net.SplitHostPort(e.addr)
	res, id := e.get("http://me.test:" + port + "/")
	wantAnswer(t, res, 403, deniedAddr("127.0.0.1:"+port+" is proxyd itself"), false)
	e.wantEgressDenied(id, egress.ReasonSelf, false)
	tc, body := e.connect("me.test:"+port, "X-Request-Id: egress-self-name")
	wantAnswer(t, tc.result(body), 403, deniedAddr("127.0.0.1:"+port+" is proxyd itself"), false)
	e.wantEgressDenied("egress-self-name", egress.ReasonSelf, false)
}

func TestEgressAllowDenyAndPorts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, defaultEgress)
	o := e.newOrigin(nil)
	echo := e.echoServer()
	_, echoPort, _ := net.SplitHostPort(echo)
	u, _ := url.Parse(o.URL)

	// CONNECT to a port outside connect_ports ([443]): refused first.
	tc, body := e.connect(echo, "X-Request-Id: egress-port")
	wantAnswer(t, tc.result(body), 403, deniedReq("port "+echoPort+" is not in egress.connect_ports [443]"), false)
	e.wantEgressDenied("egress-port", egress.ReasonPort, true)

	policy := func(allow, deny []string, ports []int) {
		t.Helper()
		p, err := egress.New(config.Egress{Allow: allow, Deny: deny, ConnectPorts: ports})
		if err != nil {
			t.Fatal(err)
		}
		e.egress.SetPolicy(p)
	}
	// An allow entry with the echo's port opens CONNECT to it.
	policy([]string{"127.0.0.1:" + echoPort}, nil, []int{443})
	tc, _ = e.connect(echo)
	wantStatus(t, tc.result(""), 200)
	roundTripLine(t, tc, "hello\n")
	tc.Close()
	// ... but not plain requests to the origin's port.
	res, id := e.get(o.URL + "/p1")
	wantAnswer(t, res, 403, deniedAddr("127.0.0.1 is loopback (127.0.0.0/8)"), false)
	e.wantEgressDenied(id, egress.ReasonLoopback, true)

	// deny wins over allow.
	policy([]string{"127.0.0.0/8"}, []string{"127.0.0.1:" + u.Port()}, nil)
	res, id = e.get(o.URL + "/p2")
	wantAnswer(t, res, 403, deniedReq("127.0.0.1:"+u.Port()+" matches egress.deny entry 127.0.0.1:"+u.Port()), false)
	e.wantEgressDenied(id, egress.ReasonDeny, true)
	// A denied host name, before admission.
	policy([]string{"127.0.0.0/8"}, []string{"*.blocked.test"}, nil)
	res, id = e.get("http://api.blocked.test/")
	wantAnswer(t, res, 403, deniedReq("api.blocked.test:80 matches egress.deny entry *.blocked.test"), false)
	e.wantEgressDenied(id, egress.ReasonDeny, true)
	// Allowed now, plain and CONNECT (connect_ports [] = any).
	res, _ = e.get(o.URL + "/p3")
	wantStatus(t, res, 200)
	tc, _ = e.connect(echo)
	wantStatus(t, tc.result(""), 200)
	tc.Close()
	o.never("/p1")
	o.never("/p2")
}

// The upstreams of routes are trusted: a gateway route to a loopback
// upstream works under the default policy, while the same upstream asked
// for as a proxy target is refused; a route that points at proxyd itself
// is refused.
func TestEgressRoutesTrusted(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, defaultEgress, func(s *setup) { s.ln = ln })
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("routed " + r.URL.Path)) })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	cfg := e.cfg
	cfg.Routes = []config.Route{
		{Prefix: "/api", Upstream: o.URL, StripPrefix: true},
		{Prefix: "/me", Upstream: "http://" + ln.Addr().String()},
		{Prefix: "/me-by-name", Upstream: "http://localhost:" + port},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := e.h.SetPolicy(cfg); err != nil {
		t.Fatal(err)
	}
	res := e.raw("GET /api/users HTTP/1.1\r\nHost: gw\r\n\r\n")
	wantStatus(t, res, 200)
	if res.body != "routed /users" {
		t.Errorf("body %q", res.body)
	}
	res, _ = e.get(o.URL + "/users")
	wantAnswer(t, res, 403, deniedAddr("127.0.0.1 is loopback (127.0.0.0/8)"), false)
	for _, path := range []string{"/me/x", "/me-by-name/x"} {
		res = e.raw("GET " + path + " HTTP/1.1\r\nHost: gw\r\n\r\n")
		wantAnswer(t, res, 403, deniedAddr(ln.Addr().String()+" is proxyd itself"), false)
	}
}
