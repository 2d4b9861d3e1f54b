package egress

import (
	"net"
	"net/netip"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

// The per-request cost of the policy: CheckTarget runs before every
// admission, Control on every new upstream connection.
func benchGuard(b *testing.B) *Guard {
	p, err := New(config.Egress{
		Allow:        []string{"10.1.0.0/16", "*.corp.example", "api.internal:8443"},
		Deny:         []string{"*.evil.example", "8.8.4.4"},
		ConnectPorts: []int{443},
	})
	if err != nil {
		b.Fatal(err)
	}
	g := NewGuard(p)
	if err := g.SetSelf([]net.Addr{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9090}}, []netip.Addr{netip.MustParseAddr("192.0.2.10")}); err != nil {
		b.Fatal(err)
	}
	return g
}

func BenchmarkCheckTargetName(b *testing.B) {
	g := benchGuard(b)
	for b.Loop() {
		if d := g.CheckTarget("api.example.com", 443, true); d != nil {
			b.Fatal(d)
		}
	}
}

func BenchmarkCheckTargetPublicIP(b *testing.B) {
	g := benchGuard(b)
	for b.Loop() {
		if d := g.CheckTarget("93.184.216.34", 443, false); d != nil {
			b.Fatal(d)
		}
	}
}

func BenchmarkCheckTargetDenied(b *testing.B) {
	g := benchGuard(b)
	for b.Loop() {
		if d := g.CheckTarget("169.254.169.254", 80, false); d == nil {
			b.Fatal("allowed")
		}
	}
}

func BenchmarkControl(b *testing.B) {
	g := benchGuard(b)
	for b.Loop() {
		if err := g.Control("api.example.com:443", "tcp", "93.184.216.34:443"); err != nil {
			b.Fatal(err)
		}
	}
}

// A new connection to a non-local address on a port proxyd listens on
// looks the host's interface addresses up again (the self rule): the
// price of never judging from a stale list.
func BenchmarkControlListenerPortMiss(b *testing.B) {
	g := benchGuard(b)
	if err := g.SetSelf([]net.Addr{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}}, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := g.Control("api.example.com:8080", "tcp", "93.184.216.34:8080"); err != nil {
			b.Fatal(err)
		}
	}
}
