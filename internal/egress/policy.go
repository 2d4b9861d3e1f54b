package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/proxyd/proxyd/internal/config"
)

// Denial is a destination refused by the egress policy.
type Denial struct {
	// Reason is one of the Reason constants (a bounded metric label).
	Reason string
	// Address is set when an address was refused (Proxy-Status
	// destination_ip_prohibited); a host, port or egress.deny entry is
	// refused with http_request_denied.
	Address bool
	// Details says what was refused and why, for the client and the log:
	// "10.0.0.7 is private (10.0.0.0/8)".
	Details string
}

func (d *Denial) Error() string { return "egress policy: " + d.Details }

// Policy is a compiled egress configuration. It is immutable; build it
// with New.
type Policy struct {
	allow, deny []config.EgressEntry
	ports       []int // nil: any port
}

// New compiles cfg, which should have passed config.Validate; an invalid
// entry is still reported, naming its key.
func New(cfg config.Egress) (*Policy, error) {
	p := &Policy{}
	var errs []error
	parse := func(key string, list []string) []config.EgressEntry {
		out := make([]config.EgressEntry, 0, len(list))
		for i, s := range list {
			e, err := config.ParseEgressEntry(s)
			if err != nil {
				errs = append(errs, &config.FieldError{Key: fmt.Sprintf("%s[%d]", key, i), Err: err})
				continue
			}
			out = append(out, e)
		}
		return out
	}
	p.allow = parse("egress.allow", cfg.Allow)
	p.deny = parse("egress.deny", cfg.Deny)
	if len(cfg.ConnectPorts) > 0 {
		p.ports = slices.Clone(cfg.ConnectPorts)
	}
	return p, errors.Join(errs...)
}

// decide judges host (a name, or "" when the target was an address) and
// the address a on port, rules 2 to 5 of the package doc.
func (p *Policy) decide(host string, a netip.Addr, port int) *Denial {
	for _, e := range p.deny {
		if (host != "" && e.MatchHost(host, port)) || (a.IsValid() && e.MatchAddr(a, port)) {
			return &Denial{Reason: ReasonDeny, Details: describe(host, a, port) + " matches egress.deny entry " + e.String()}
		}
	}
	for _, e := range p.allow {
		if (host != "" && e.MatchHost(host, port)) || (a.IsValid() && e.MatchAddr(a, port)) {
			return nil
		}
	}
	if !a.IsValid() {
		return nil
	}
	if rg := defaultDeniedRange(a); rg != nil {
		return &Denial{Reason: rg.reason, Address: true, Details: fmt.Sprintf("%s is %s (%s)", a, rg.name, rg.prefix)}
	}
	if v4, ok := nat64Embedded(a); ok {
		if rg := defaultDeniedRange(v4); rg != nil {
			return &Denial{Reason: rg.reason, Address: true, Details: fmt.Sprintf("%s is NAT64 for %s, %s (%s)", a, v4, rg.name, rg.prefix)}
		}
	}
	return nil
}

// nat64Prefix is the NAT64 well-known prefix (RFC 6052): a NAT64 gateway
// forwards 64:ff9b::a.b.c.d to the IPv4 address a.b.c.d, so that address
// is judged too.
var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

func nat64Embedded(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || !nat64Prefix.Contains(a) {
		return netip.Addr{}, false
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

func describe(host string, a netip.Addr, port int) string {
	if host != "" {
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// Guard applies the live Policy and the self rule. It is safe for
// concurrent use; its zero value is not: create it with NewGuard.
type Guard struct {
	policy atomic.Pointer[Policy]
	self   atomic.Pointer[selfSet]
}

// NewGuard returns a Guard applying p.
func NewGuard(p *Policy) *Guard {
	g := &Guard{}
	g.policy.Store(p)
	g.self.Store(&selfSet{})
	return g
}

// SetPolicy swaps the policy (reload). Dials already made stay made.
func (g *Guard) SetPolicy(p *Policy) { g.policy.Store(p) }

// selfSet is what reaches proxyd's own listeners: the listeners' ports
// and the host's own addresses.
type selfSet struct {
	ports []uint16
	local []netip.Addr // the host's interface addresses and the listeners' own
}

// SetSelf records proxyd's own listener addresses (as bound: "0.0.0.0:8080"
// or "127.0.0.1:9090"). Any destination on a listener's port whose address
// is loopback, unspecified, one of the host's interface addresses or the
// listener's own address is then refused. localAddrs are the host's
// interface addresses (net.InterfaceAddrs); nil means to look them up.
func (g *Guard) SetSelf(listeners []net.Addr, localAddrs []netip.Addr) error {
	s := &selfSet{}
	if localAddrs == nil {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return fmt.Errorf("egress: listing the host's addresses: %w", err)
		}
		for _, ia := range addrs {
			if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
				localAddrs = append(localAddrs, pfx.Addr())
			}
		}
	}
	for _, a := range localAddrs {
		s.local = append(s.local, a.Unmap().WithZone(""))
	}
	for _, l := range listeners {
		ap, err := netip.ParseAddrPort(l.String())
		if err != nil {
			return fmt.Errorf("egress: listener address %q: %w", l, err)
		}
		s.ports = append(s.ports, ap.Port())
		s.local = append(s.local, ap.Addr().Unmap().WithZone(""))
	}
	g.self.Store(s)
	return nil
}

// isSelf reports whether a:port may reach one of proxyd's listeners.
func (s *selfSet) isSelf(a netip.Addr, port int) bool {
	if !slices.Contains(s.ports, uint16(port)) {
		return false
	}
	return a.IsLoopback() || a.IsUnspecified() || slices.Contains(s.local, a)
}

func selfDenial(a netip.Addr, port int) *Denial {
	return &Denial{Reason: ReasonSelf, Address: true, Details: netip.AddrPortFrom(a, uint16(port)).String() + " is proxyd itself"}
}

// CheckTarget judges a request's target before admission: host as in the
// request (a name or an IP address, without brackets), port its port or
// the scheme's default, connect whether it is a CONNECT. Names are judged
// by egress.deny here and again, with their addresses, when dialed.
func (g *Guard) CheckTarget(host string, port int, connect bool) *Denial {
	p := g.policy.Load()
	if connect && p.ports != nil && !slices.Contains(p.ports, port) && !p.allowsPort(host, port) {
		return &Denial{Reason: ReasonPort, Details: fmt.Sprintf("port %d is not in egress.connect_ports %v", port, p.ports)}
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap().WithZone("")
		if g.self.Load().isSelf(a, port) {
			return selfDenial(a, port)
		}
		return p.decide("", a, port)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		// Loopback by definition (RFC 6761 §6.3): judged now, as
		// 127.0.0.1, rather than after a token and a dial.
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if g.self.Load().isSelf(lo, port) {
			return &Denial{Reason: ReasonSelf, Address: true, Details: describe(host, netip.Addr{}, port) + " is proxyd itself"}
		}
		return p.decide(host, lo, port)
	}
	for _, e := range p.deny {
		if e.MatchHost(host, port) {
			return &Denial{Reason: ReasonDeny, Details: describe(host, netip.Addr{}, port) + " matches egress.deny entry " + e.String()}
		}
	}
	return nil
}

// allowsPort reports whether an egress.allow entry names port explicitly
// and matches host: allowing "10.0.0.5:8443" opens that port to CONNECT
// too, whatever egress.connect_ports says.
func (p *Policy) allowsPort(host string, port int) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	a, _ := netip.ParseAddr(host)
	a = a.Unmap().WithZone("")
	for _, e := range p.allow {
		if e.Port == port && ((a.IsValid() && e.MatchAddr(a, port)) || (!a.IsValid() && e.MatchHost(host, port))) {
			return true
		}
	}
	return false
}

// Control judges one connection about to be made: target is what was
// dialed ("host:port", before name resolution), address the resolved
// "ip:port" being connected. Its signature fits upstream.Config.Control.
func (g *Guard) Control(target, network, address string) error {
	return g.control(target, address, false)
}

// ControlTrusted is Control for the upstreams of gateway routes: only the
// self rule applies.
func (g *Guard) ControlTrusted(target, network, address string) error {
	return g.control(target, address, true)
}

func (g *Guard) control(target, address string, trusted bool) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Never dial what cannot be judged.
		return &Denial{Reason: ReasonSpecial, Address: true, Details: strconv.Quote(address) + " is not an IP address"}
	}
	a, port := ap.Addr().Unmap().WithZone(""), int(ap.Port())
	if g.self.Load().isSelf(a, port) {
		return selfDenial(a, port)
	}
	if trusted {
		return nil
	}
	host, _, _ := net.SplitHostPort(target)
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if _, err := netip.ParseAddr(host); err == nil {
		host = "" // an address target: judged by its address alone
	}
	if d := g.policy.Load().decide(host, a, port); d != nil {
		return d
	}
	return nil
}
