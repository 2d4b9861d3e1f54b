package egress

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

// fakeHost is the host's address list as a test changes it, and how many
// times the Guard looked it up.
type fakeHost struct {
	mu      sync.Mutex
	addrs   []netip.Addr
	err     error
	lookups int
}

func (h *fakeHost) lookup() ([]netip.Addr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lookups++
	return slices.Clone(h.addrs), h.err
}

func (h *fakeHost) set(err error, addrs ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err, h.addrs = err, nil
	for _, a := range addrs {
		h.addrs = append(h.addrs, netip.MustParseAddr(a))
	}
}

func (h *fakeHost) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lookups
}

// The host's addresses are judged at dial time, not as they were at
// start: an address added later is proxyd's on its listeners' ports at
// once; an address missing from the last answer is looked up again before
// a dial to a listener's port is let through; dials to other ports never
// look; a lookup that fails refuses.
func TestSelfAddressesLookedUpAtDialTime(t *testing.T) {
	g := guard(t, config.Egress{Allow: []string{"0.0.0.0/0", "::/0"}, ConnectPorts: []int{}})
	host := &fakeHost{}
	host.set(nil, "203.0.113.5")
	listeners := []net.Addr{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, &net.TCPAddr{IP: net.IPv6unspecified, Port: 9090}}
	if err := g.SetSelfLookup(listeners, host.lookup); err != nil {
		t.Fatal(err)
	}
	if n := host.count(); n != 1 {
		t.Fatalf("%d lookups at SetSelfLookup, want 1", n)
	}
	dial := func(address string) *Denial { return controlDenial(t, g, false, "x.example:1", address) }
	wantLookups := func(what string, n int) {
		t.Helper()
		if got := host.count(); got != n {
			t.Errorf("%s: %d lookups in all, want %d", what, got, n)
		}
	}

	// Not (yet) the host's: allowed, after a fresh look.
	if d := dial("198.51.100.7:9090"); d != nil {
		t.Errorf("198.51.100.7:9090 before it is the host's: %+v", d)
	}
	wantLookups("a miss on a listener's port", 2)
	// Other ports: no lookup, whatever the address.
	for _, a := range []string{"198.51.100.7:443", "203.0.113.5:9091", "[2001:db8::7]:80"} {
		if d := dial(a); d != nil {
			t.Errorf("%s: %+v, want allowed", a, d)
		}
	}
	wantLookups("dials to other ports", 2)
	// Loopback, unspecified and addresses of the last answer: no lookup.
	for _, a := range []string{"127.0.0.1:8080", "[::]:9090", "203.0.113.5:8080", "[::ffff:203.0.113.5]:9090"} {
		wantDenied(t, "dial "+a, dial(a), ReasonSelf, "is proxyd itself")
	}
	wantLookups("known addresses", 2)

	// Added after start: refused on the next dial, in every form, at dial
	// time and before admission.
	host.set(nil, "203.0.113.5", "198.51.100.7", "2001:db8::7", "fe80::7%lo")
	for _, a := range []string{"198.51.100.7:9090", "[::ffff:198.51.100.7]:8080", "[2001:db8::7]:9090", "[fe80::7%eth0]:8080"} {
		for _, trusted := range []bool{false, true} {
			d := controlDenial(t, g, trusted, "innocent.example:80", a)
			wantDenied(t, "dial "+a, d, ReasonSelf, "is proxyd itself")
			if d != nil && !d.Address {
				t.Errorf("dial %s: self refusal without Address", a)
			}
		}
	}
	for _, connect := range []bool{false, true} {
		wantDenied(t, "CheckTarget 198.51.100.7:9090", g.CheckTarget("198.51.100.7", 9090, connect), ReasonSelf, "198.51.100.7:9090 is proxyd itself")
	}
	wantLookups("the first dial after the change", 3)

	// A lookup that fails refuses what it cannot judge, and only that.
	host.set(errors.New("netlink: no buffer space"))
	wantDenied(t, "dial while the lookup fails", dial("192.0.2.9:8080"), ReasonSelf, "cannot tell whether 192.0.2.9:8080 is proxyd itself: listing the host's addresses: netlink: no buffer space")
	if d := dial("192.0.2.9:443"); d != nil {
		t.Errorf("another port while the lookup fails: %+v", d)
	}
	host.set(nil, "203.0.113.5")
	if d := dial("192.0.2.9:8080"); d != nil {
		t.Errorf("192.0.2.9:8080 once the lookup works: %+v", d)
	}
	// A removed address is refused until a lookup sees it gone (the miss
	// above was that lookup).
	if d := dial("198.51.100.7:9090"); d != nil {
		t.Errorf("198.51.100.7:9090 after it was removed: %+v", d)
	}

	// SetSelfLookup fails, and changes nothing, when the first lookup does.
	host.set(errors.New("boom"))
	if err := g.SetSelfLookup(listeners[:1], host.lookup); err == nil {
		t.Error("SetSelfLookup with a failing lookup: no error")
	}
	wantDenied(t, "9090 after a failed SetSelfLookup", dial("[::1]:9090"), ReasonSelf, "is proxyd itself")
}
