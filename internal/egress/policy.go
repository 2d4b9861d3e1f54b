package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// selfSet is what reaches proxyd's own listeners: on a listener's port,
// a loopback or unspecified address, a listener's own address, or one of
// the host's addresses (local).
type selfSet struct {
	ports []uint16
	own   []netip.Addr // the listeners' own addresses, as bound
	local *localAddrs  // nil: none known (NewGuard's)
}

// SetSelf records proxyd's own listener addresses (as bound: "0.0.0.0:8080"
// or "127.0.0.1:9090"). Any destination on a listener's port whose address
// is loopback, unspecified, the listener's own address or one of the
// host's addresses is then refused. localAddrs stand for the host's
// addresses (tests); nil means the host's interface addresses
// (net.InterfaceAddrs), looked up again at dial time whenever an address
// on a listener's port is not among those last seen (SetSelfLookup).
func (g *Guard) SetSelf(listeners []net.Addr, localAddrs []netip.Addr) error {
	if localAddrs == nil {
		return g.SetSelfLookup(listeners, interfaceAddrs)
	}
	fixed := slices.Clone(localAddrs)
	return g.SetSelfLookup(listeners, func() ([]netip.Addr, error) { return fixed, nil })
}

// SetSelfLookup is SetSelf with the host's addresses listed by lookup. It
// is called once now (its error is returned, and nothing changes), then
// whenever a destination on a listener's port is neither loopback,
// unspecified, a listener's own address nor among the addresses of its
// last answer: an address added to the host after start is proxyd's as
// soon as it is added (docs/configuration.md, "Egress policy"). Dials to
// other ports never call it. Calls of lookup never overlap; dials that
// miss at the same time share one started after they missed. An error of
// lookup at dial time refuses that destination (reason self).
func (g *Guard) SetSelfLookup(listeners []net.Addr, lookup func() ([]netip.Addr, error)) error {
	s := &selfSet{local: &localAddrs{lookup: lookup}}
	for _, l := range listeners {
		ap, err := netip.ParseAddrPort(l.String())
		if err != nil {
			return fmt.Errorf("egress: listener address %q: %w", l, err)
		}
		s.ports = append(s.ports, ap.Port())
		s.own = append(s.own, ap.Addr().Unmap().WithZone(""))
	}
	if _, err := s.local.refresh(0); err != nil {
		return fmt.Errorf("egress: listing the host's addresses: %w", err)
	}
	g.self.Store(s)
	return nil
}

// interfaceAddrs lists the host's interface addresses.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, ia := range addrs {
		if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
			out = append(out, pfx.Addr())
		}
	}
	return out, nil
}

// judge refuses a:port (a unmapped, without zone) when it may reach one of
// proxyd's listeners, or when that cannot be told.
func (s *selfSet) judge(a netip.Addr, port int) *Denial {
	if !slices.Contains(s.ports, uint16(port)) {
		return nil // the hot path: not a listener's port
	}
	if a.IsLoopback() || a.IsUnspecified() || slices.Contains(s.own, a) {
		return selfDenial(a, port)
	}
	if s.local == nil {
		return nil
	}
	local, err := s.local.contains(a)
	if err != nil {
		return &Denial{Reason: ReasonSelf, Address: true, Details: fmt.Sprintf("cannot tell whether %s is proxyd itself: listing the host's addresses: %v", netip.AddrPortFrom(a, uint16(port)), err)}
	}
	if local {
		return selfDenial(a, port)
	}
	return nil
}

func selfDenial(a netip.Addr, port int) *Denial {
	return &Denial{Reason: ReasonSelf, Address: true, Details: netip.AddrPortFrom(a, uint16(port)).String() + " is proxyd itself"}
}

// localAddrs is the host's addresses as last looked up. It is never
// stale for a decision that lets a dial through: an address found in it is
// local (an address removed since stays in it until the next lookup, which
// errs on the side of refusing), and one missing from it is looked up
// afresh before it is judged not local.
type localAddrs struct {
	lookup  func() ([]netip.Addr, error)
	started atomic.Uint64 // lookups started; changed with mu held
	view    atomic.Pointer[addrView]
	mu      sync.Mutex // held while looking up
}

// addrView is the answer of one lookup.
type addrView struct {
	seq   uint64       // the lookup's number (localAddrs.started when it started)
	addrs []netip.Addr // sorted, unmapped, without zones
}

// contains reports whether a is one of the host's addresses now.
func (l *localAddrs) contains(a netip.Addr) (bool, error) {
	seen := l.started.Load() // before looking: a lookup started after this one is fresh enough
	if l.view.Load().has(a) {
		return true, nil
	}
	v, err := l.refresh(seen)
	if err != nil {
		return false, err
	}
	return v.has(a), nil
}

// refresh returns the answer of a lookup started after the seen-th one:
// one another caller has finished meanwhile, or its own.
func (l *localAddrs) refresh(seen uint64) (*addrView, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v := l.view.Load(); v != nil && v.seq > seen {
		return v, nil
	}
	seq := l.started.Add(1)
	addrs, err := l.lookup()
	if err != nil {
		return nil, err
	}
	v := &addrView{seq: seq, addrs: make([]netip.Addr, 0, len(addrs))}
	for _, a := range addrs {
		v.addrs = append(v.addrs, a.Unmap().WithZone(""))
	}
	slices.SortFunc(v.addrs, netip.Addr.Compare)
	v.addrs = slices.Compact(v.addrs)
	l.view.Store(v)
	return v, nil
}

func (v *addrView) has(a netip.Addr) bool {
	if v == nil {
		return false
	}
	_, found := slices.BinarySearchFunc(v.addrs, a, netip.Addr.Compare)
	return found
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
		if d := g.self.Load().judge(a, port); d != nil {
			return d
		}
		return p.decide("", a, port)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		// Loopback by definition (RFC 6761 §6.3): judged now, as
		// 127.0.0.1, rather than after a token and a dial.
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if d := g.self.Load().judge(lo, port); d != nil {
			d.Details = describe(host, netip.Addr{}, port) + " is proxyd itself"
			return d
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
	if d := g.self.Load().judge(a, port); d != nil {
		return d
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
