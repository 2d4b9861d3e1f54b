package egress

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

func guard(t *testing.T, cfg config.Egress) *Guard {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return NewGuard(p)
}

// defaults is the default configuration: no allow, no deny, CONNECT to 443.
func defaults() config.Egress { return config.Default().Egress }

// wantDenied checks that d refuses with reason and that its details name
// detail.
func wantDenied(t *testing.T, what string, d *Denial, reason, detail string) {
	t.Helper()
	if d == nil {
		t.Errorf("%s: allowed, want denied (%s)", what, reason)
		return
	}
	if d.Reason != reason || !strings.Contains(d.Details, detail) {
		t.Errorf("%s: denied %q %q, want reason %q with details naming %q", what, d.Reason, d.Details, reason, detail)
	}
}

// controlDenial runs Control and returns its *Denial (nil when allowed).
func controlDenial(t *testing.T, g *Guard, trusted bool, target, address string) *Denial {
	t.Helper()
	f := g.Control
	if trusted {
		f = g.ControlTrusted
	}
	err := f(target, "tcp", address)
	if err == nil {
		return nil
	}
	var d *Denial
	if !errors.As(err, &d) {
		t.Fatalf("Control(%s, %s) = %v, not a *Denial", target, address, err)
	}
	return d
}

// Every range of the default deny set refuses its first address, its last
// address, and (for IPv4) their IPv4-mapped IPv6 forms, both before
// admission (a literal target) and at dial time.
func TestEveryDefaultRange(t *testing.T) {
	g := guard(t, defaults())
	for _, rg := range defaultDenied {
		first := rg.prefix.Masked().Addr()
		last := lastAddr(rg.prefix)
		addrs := []netip.Addr{first, last}
		if first.Is4() {
			addrs = append(addrs, netip.AddrFrom16(first.As16()), netip.AddrFrom16(last.As16()))
		}
		for _, a := range addrs {
			// The reason is the range's or, where a more specific range
			// of another reason nests inside, that one's.
			want := defaultDeniedRange(a.Unmap())
			wantDenied(t, "CheckTarget "+a.String(), g.CheckTarget(a.String(), 80, false), want.reason, want.prefix.String())
			ap := netip.AddrPortFrom(a, 80).String()
			d := controlDenial(t, g, false, ap, ap)
			wantDenied(t, "Control "+ap, d, want.reason, want.prefix.String())
			if d != nil && !d.Address {
				t.Errorf("%s: Address false: an address refusal is destination_ip_prohibited", a)
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// The ranges the default deny set must hold, by the reason label they must
// carry (docs/configuration.md, "Egress policy: `egress`").
func TestSpecRanges(t *testing.T) {
	g := guard(t, defaults())
	tests := []struct{ addr, reason, detail string }{
		{"127.0.0.1", ReasonLoopback, "127.0.0.0/8"},
		{"127.255.255.254", ReasonLoopback, "127.0.0.0/8"},
		{"::1", ReasonLoopback, "::1/128"},
		{"::ffff:127.0.0.1", ReasonLoopback, "127.0.0.0/8"},
		{"10.0.0.7", ReasonPrivate, "10.0.0.0/8"},
		{"::ffff:10.0.0.7", ReasonPrivate, "10.0.0.0/8"},
		{"::ffff:a00:7", ReasonPrivate, "10.0.0.0/8"},
		{"172.16.0.1", ReasonPrivate, "172.16.0.0/12"},
		{"172.31.255.255", ReasonPrivate, "172.16.0.0/12"},
		{"192.168.1.1", ReasonPrivate, "192.168.0.0/16"},
		{"100.64.0.1", ReasonPrivate, "100.64.0.0/10"},
		{"fc00::1", ReasonPrivate, "fc00::/7"},
		{"fd12:3456::1", ReasonPrivate, "fc00::/7"},
		{"169.254.169.254", ReasonLinkLocal, "cloud metadata"},
		{"::ffff:169.254.169.254", ReasonLinkLocal, "cloud metadata"},
		{"169.254.1.2", ReasonLinkLocal, "169.254.0.0/16"},
		{"fe80::1", ReasonLinkLocal, "fe80::/10"},
		{"fe80::1%eth0", ReasonLinkLocal, "fe80::/10"},
		{"fd00:ec2::254", ReasonLinkLocal, "cloud metadata"},
		{"0.0.0.0", ReasonSpecial, "unspecified"},
		{"::", ReasonSpecial, "unspecified"},
		{"224.0.0.1", ReasonSpecial, "multicast"},
		{"ff02::1", ReasonSpecial, "multicast"},
		{"255.255.255.255", ReasonSpecial, "broadcast"},
		{"240.0.0.1", ReasonSpecial, "reserved"},
		{"192.0.2.1", ReasonSpecial, "documentation"},
		{"2001:db8::1", ReasonSpecial, "documentation"},
		{"64:ff9b::a00:7", ReasonPrivate, "NAT64 for 10.0.0.7"},
		{"64:ff9b::7f00:1", ReasonLoopback, "NAT64 for 127.0.0.1"},
	}
	for _, tt := range tests {
		wantDenied(t, tt.addr, g.CheckTarget(tt.addr, 80, false), tt.reason, tt.detail)
	}
	// Public addresses go through, in every form.
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "::ffff:8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "172.32.0.1", "100.128.0.1", "11.0.0.1"} {
		if d := g.CheckTarget(a, 443, true); d != nil {
			t.Errorf("%s: denied %+v, want allowed", a, d)
		}
		ap := net.JoinHostPort(a, "443")
		if d := controlDenial(t, g, false, ap, ap); d != nil {
			t.Errorf("Control %s: denied %+v, want allowed", ap, d)
		}
	}
}

func TestAllowDenyPrecedence(t *testing.T) {
	g := guard(t, config.Egress{
		Allow: []string{"10.0.0.0/8", "192.168.1.0/24:443", "api.internal", "*.corp.example", "[fd00::/8]:8443"},
		Deny:  []string{"10.1.0.0/16", "bad.corp.example", "8.8.4.4", "*.evil.example:80"},
	})
	tests := []struct {
		host   string
		port   int
		reason string // "" = allowed
		detail string
	}{
		{"10.2.3.4", 80, "", ""},
		{"::ffff:10.2.3.4", 80, "", ""},
		{"10.1.2.3", 80, ReasonDeny, "egress.deny entry 10.1.0.0/16"},
		{"192.168.1.5", 443, "", ""},
		{"192.168.1.5", 80, ReasonPrivate, "192.168.0.0/16"},
		{"fd00::5", 8443, "", ""},
		{"fd00::5", 443, ReasonPrivate, "fc00::/7"},
		{"8.8.4.4", 443, ReasonDeny, "egress.deny entry 8.8.4.4"},
		{"8.8.8.8", 443, "", ""},
		{"bad.corp.example", 443, ReasonDeny, "egress.deny entry bad.corp.example"},
		{"BAD.corp.example.", 443, ReasonDeny, "egress.deny entry bad.corp.example"},
		{"x.evil.example", 80, ReasonDeny, "egress.deny entry *.evil.example:80"},
		{"x.evil.example", 443, "", ""}, // a name is judged by address at dial time
	}
	for _, tt := range tests {
		d := g.CheckTarget(tt.host, tt.port, false)
		if tt.reason == "" {
			if d != nil {
				t.Errorf("%s:%d: denied %+v, want allowed", tt.host, tt.port, d)
			}
			continue
		}
		wantDenied(t, tt.host, d, tt.reason, tt.detail)
		if d != nil && tt.reason == ReasonDeny && d.Address {
			t.Errorf("%s: an egress.deny refusal is http_request_denied, not an address refusal", tt.host)
		}
	}

	// At dial time a name is judged by its own entries and by the address
	// it resolved to.
	dials := []struct {
		target, address, reason, detail string
	}{
		{"api.internal:443", "10.9.9.9:443", "", ""},      // the name is allowed: its DNS is trusted
		{"api.internal:443", "172.16.0.1:443", "", ""},    // whatever it resolves to
		{"a.corp.example:443", "192.168.7.7:443", "", ""}, // wildcard allow
		{"corp.example:443", "192.168.7.7:443", ReasonPrivate, "192.168.7.7 is private"},
		{"bad.corp.example:443", "8.8.8.8:443", ReasonDeny, "bad.corp.example"},
		{"rebind.example:443", "10.1.0.9:443", ReasonDeny, "10.1.0.0/16"}, // deny wins over the allowed 10/8
		{"rebind.example:80", "169.254.169.254:80", ReasonLinkLocal, "169.254.169.254 is link-local (cloud metadata)"},
		{"rebind.example:80", "[::ffff:169.254.169.254]:80", ReasonLinkLocal, "cloud metadata"},
		{"public.example:443", "8.8.8.8:443", "", ""},
	}
	for _, tt := range dials {
		d := controlDenial(t, g, false, tt.target, tt.address)
		if tt.reason == "" {
			if d != nil {
				t.Errorf("dial %s as %s: denied %+v, want allowed", tt.target, tt.address, d)
			}
			continue
		}
		wantDenied(t, "dial "+tt.target+" as "+tt.address, d, tt.reason, tt.detail)
	}
}

func TestConnectPorts(t *testing.T) {
	g := guard(t, defaults()) // connect_ports [443]
	wantDenied(t, "CONNECT :8443", g.CheckTarget("api.example.com", 8443, true), ReasonPort, "port 8443 is not in egress.connect_ports [443]")
	if d := g.CheckTarget("api.example.com", 443, true); d != nil {
		t.Errorf("CONNECT :443 denied: %+v", d)
	}
	if d := g.CheckTarget("api.example.com", 8443, false); d != nil {
		t.Errorf("plain http to :8443 denied: %+v (connect_ports is for CONNECT only)", d)
	}
	// A port refusal comes before the address: no address is named.
	if d := g.CheckTarget("10.0.0.1", 22, true); d == nil || d.Reason != ReasonPort || d.Address {
		t.Errorf("CONNECT 10.0.0.1:22: %+v, want a port refusal", d)
	}

	g = guard(t, config.Egress{ConnectPorts: []int{443, 8443}, Allow: []string{"10.0.0.5:9443", "*.corp.example:7443", "10.9.0.0/16"}})
	for _, ok := range []struct {
		host string
		port int
	}{{"x.example", 8443}, {"10.0.0.5", 9443}, {"a.corp.example", 7443}, {"10.9.1.1", 443}} {
		if d := g.CheckTarget(ok.host, ok.port, true); d != nil {
			t.Errorf("CONNECT %s:%d denied: %+v", ok.host, ok.port, d)
		}
	}
	// An allow entry without a port does not open other ports.
	wantDenied(t, "CONNECT 10.9.1.1:22", g.CheckTarget("10.9.1.1", 22, true), ReasonPort, "port 22")
	wantDenied(t, "CONNECT 10.0.0.5:9444", g.CheckTarget("10.0.0.5", 9444, true), ReasonPort, "port 9444")

	g = guard(t, config.Egress{ConnectPorts: []int{}})
	if d := g.CheckTarget("x.example", 22, true); d != nil {
		t.Errorf("connect_ports [] (any): CONNECT :22 denied: %+v", d)
	}
}

// The self rule: every address that reaches one of proxyd's listeners is
// refused, whatever egress.allow says; other ports of those addresses are
// not proxyd.
func TestSelf(t *testing.T) {
	g := guard(t, config.Egress{Allow: []string{"0.0.0.0/0", "::/0", "localhost"}, ConnectPorts: []int{}})
	proxyLn := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	adminLn := &net.TCPAddr{IP: net.IPv6unspecified, Port: 9090} // bound to all interfaces
	host := []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("fe80::5%eth0")}
	if err := g.SetSelf([]net.Addr{proxyLn, adminLn}, host); err != nil {
		t.Fatal(err)
	}
	self := []struct {
		host string
		port int
	}{
		{"127.0.0.1", 8080}, {"127.0.0.2", 8080}, {"::1", 8080}, {"::ffff:127.0.0.1", 8080},
		{"0.0.0.0", 8080}, {"::", 8080}, {"localhost", 8080}, {"LocalHost.", 9090}, {"app.localhost", 9090},
		{"127.0.0.1", 9090}, {"::1", 9090}, {"0.0.0.0", 9090},
		{"203.0.113.5", 9090}, {"::ffff:203.0.113.5", 9090}, {"2001:db8::5", 9090}, {"fe80::5", 9090}, {"203.0.113.5", 8080},
	}
	for _, s := range self {
		for _, connect := range []bool{false, true} {
			wantDenied(t, "CheckTarget "+net.JoinHostPort(s.host, strconv.Itoa(s.port)), g.CheckTarget(s.host, s.port, connect), ReasonSelf, "is proxyd itself")
		}
	}
	// At dial time, trusted or not, whatever name led there.
	for _, addr := range []string{"127.0.0.1:8080", "[::1]:9090", "203.0.113.5:9090", "[::ffff:127.0.0.1]:8080", "0.0.0.0:9090"} {
		for _, trusted := range []bool{false, true} {
			d := controlDenial(t, g, trusted, "innocent.example:80", addr)
			wantDenied(t, "dial "+addr, d, ReasonSelf, "is proxyd itself")
			if d != nil && !d.Address {
				t.Errorf("dial %s: self refusal without Address", addr)
			}
		}
	}
	// Not proxyd: another port of the same addresses (allowed by 0/0), and
	// another host's address on proxyd's port.
	for _, ok := range []string{"127.0.0.1:8081", "[::1]:9091", "203.0.113.5:443", "8.8.8.8:8080", "203.0.113.6:9090"} {
		if d := controlDenial(t, g, false, ok, ok); d != nil {
			t.Errorf("dial %s: %+v, want allowed", ok, d)
		}
	}
}

// Trusted dials (route upstreams) skip every rule but self.
func TestTrusted(t *testing.T) {
	g := guard(t, config.Egress{Deny: []string{"10.0.0.9"}})
	if err := g.SetSelf([]net.Addr{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}}, []netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"10.0.0.9:8080", "127.0.0.1:3000", "169.254.169.254:80", "[::1]:3000"} {
		if d := controlDenial(t, g, true, addr, addr); d != nil {
			t.Errorf("trusted dial %s: %+v, want allowed", addr, d)
		}
		if d := controlDenial(t, g, false, addr, addr); d == nil {
			t.Errorf("untrusted dial %s allowed, want denied", addr)
		}
	}
	wantDenied(t, "trusted dial of proxyd", controlDenial(t, g, true, "localhost:8080", "127.0.0.1:8080"), ReasonSelf, "127.0.0.1:8080")
	// What cannot be judged is not dialed.
	wantDenied(t, "unparsable address", controlDenial(t, g, true, "x:1", "not-an-address"), ReasonSpecial, "not an IP address")
}

func TestSetPolicy(t *testing.T) {
	g := guard(t, defaults())
	wantDenied(t, "before", g.CheckTarget("10.0.0.1", 80, false), ReasonPrivate, "10.0.0.0/8")
	p, err := New(config.Egress{Allow: []string{"10.0.0.0/8"}, Deny: []string{"8.8.8.8"}})
	if err != nil {
		t.Fatal(err)
	}
	g.SetPolicy(p)
	if d := g.CheckTarget("10.0.0.1", 80, false); d != nil {
		t.Errorf("after allowing 10/8: %+v", d)
	}
	wantDenied(t, "after denying 8.8.8.8", g.CheckTarget("8.8.8.8", 80, false), ReasonDeny, "8.8.8.8")
	if d := g.CheckTarget("x.example", 8443, true); d != nil {
		t.Errorf("connect_ports nil after reload means any: %+v", d)
	}
}

func TestNewNamesBadEntries(t *testing.T) {
	_, err := New(config.Egress{Allow: []string{"10.0.0.0/8", "10.0.0.1/8"}, Deny: []string{"*bad"}})
	if err == nil {
		t.Fatal("New accepted bad entries")
	}
	for _, want := range []string{"egress.allow[1]", `"10.0.0.0/8"`, "egress.deny[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
