package egress

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/testnetns"
)

// An address added to the host after proxyd started reaches its
// listeners bound to all interfaces; it is refused on their ports as soon
// as it exists (reason self), at dial time and before admission, trusted
// or not, whatever egress.allow says. Run in a private network namespace
// (internal/testnetns): the addresses go on its lo.
func TestSelfAddressAddedAfterStart(t *testing.T) {
	if !testnetns.Enter(t) {
		return
	}
	listen := func() *net.TCPListener {
		ln, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.(*net.TCPListener)
	}
	proxyLn, adminLn := listen(), listen()
	g := guard(t, config.Egress{Allow: []string{"0.0.0.0/0", "::/0"}, ConnectPorts: []int{}})
	// As proxyd does: the host's real interface addresses.
	if err := g.SetSelf([]net.Addr{proxyLn.Addr(), adminLn.Addr()}, nil); err != nil {
		t.Fatal(err)
	}
	addrs := []string{"10.0.0.7"}
	for _, a := range addrs {
		ap := net.JoinHostPort(a, strconv.Itoa(adminLn.Addr().(*net.TCPAddr).Port))
		if d := controlDenial(t, g, false, ap, ap); d != nil {
			t.Fatalf("dial %s before the address exists: %+v, want allowed (egress.allow 0.0.0.0/0)", ap, d)
		}
	}
	testnetns.AddAddr(t, "10.0.0.7")
	if testnetns.HasIPv6() {
		testnetns.AddAddr(t, "2001:db8::7")
		addrs = append(addrs, "2001:db8::7")
	} else {
		t.Log("the kernel has no IPv6: IPv4 only")
	}

	for _, a := range addrs {
		for _, ln := range []*net.TCPListener{proxyLn, adminLn} {
			port := ln.Addr().(*net.TCPAddr).Port
			ap := net.JoinHostPort(a, strconv.Itoa(port))
			// It is proxyd's: a dial without the guard reaches the listener.
			accepted := func() {
				t.Helper()
				c, err := net.DialTimeout("tcp", ap, 5*time.Second)
				if err != nil {
					t.Fatalf("dial %s without the guard: %v", ap, err)
				}
				defer c.Close()
				sc, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer sc.Close()
				// Accepted in order: a connection of a refused dial would
				// come first.
				if sc.RemoteAddr().String() != c.LocalAddr().String() {
					t.Errorf("%s accepted %s, not the dial without the guard (%s): a refused dial connected", ap, sc.RemoteAddr(), c.LocalAddr())
				}
			}
			accepted()

			want := ap + " is proxyd itself"
			for _, connect := range []bool{false, true} {
				wantDenied(t, "CheckTarget "+ap, g.CheckTarget(a, port, connect), ReasonSelf, want)
			}
			for _, trusted := range []bool{false, true} {
				wantDenied(t, "Control "+ap, controlDenial(t, g, trusted, "innocent.example:"+strconv.Itoa(port), ap), ReasonSelf, want)
			}
			// A real dial with the guard as its control: refused before
			// connect(2), so the listener gets nothing from it.
			d := net.Dialer{Timeout: 5 * time.Second, Control: func(network, address string, _ syscall.RawConn) error {
				return g.Control("innocent.example:"+strconv.Itoa(port), network, address)
			}}
			if c, err := d.Dial("tcp", ap); err == nil {
				c.Close()
				t.Errorf("dial %s with the guard connected", ap)
			} else if dn, ok := errors.AsType[*Denial](err); !ok || dn.Reason != ReasonSelf {
				t.Errorf("dial %s with the guard: %v, want a self refusal", ap, err)
			}
			accepted()
			// Another port of the same address is not proxyd.
			other := net.JoinHostPort(a, "1")
			if d := controlDenial(t, g, false, other, other); d != nil {
				t.Errorf("dial %s: %+v, want allowed", other, d)
			}
		}
	}
}
