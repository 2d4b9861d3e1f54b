// Package egress decides which destinations the proxy may reach
// (docs/configuration.md, "Egress policy: `egress`").
//
// A Policy is compiled from config.Egress and holds the default deny set
// (loopback, private and shared, link-local, unspecified, multicast,
// broadcast and reserved ranges, IPv4 and IPv6; IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry), the operator's
// egress.allow and egress.deny entries and egress.connect_ports.
//
// A Guard holds the live Policy (swapped whole on reload) and proxyd's own
// listeners (SetSelf). It is asked twice about a request:
//
//   - CheckTarget, before admission, with the request's target: a CONNECT
//     to a port outside egress.connect_ports, a host named by egress.deny
//     and a literal IP address that is not allowed are refused there, so
//     they take no token and wait for nothing. An egress.allow entry with
//     an explicit port ("10.0.0.5:8443") opens that port to CONNECT too.
//   - Control, as a net.Dialer's control function, with every address the
//     target's name resolved to, just before connect(2). This is the check
//     that matters: the address judged is the address dialed, so a public
//     name that resolves to a private address (DNS rebinding included) is
//     refused, and a pooled connection was judged when it was opened.
//
// The order of a decision, first that applies:
//
//  1. proxyd's own listener (any local address on a listener's port): denied,
//     whatever egress.allow says.
//  2. an egress.deny entry matching the host name or the address: denied.
//  3. an egress.allow entry matching the host name or the address: allowed.
//  4. an address in the default deny set: denied.
//  5. anything else: allowed.
//
// Trusted dials (ControlTrusted: the upstreams of gateway routes, which the
// operator chose) apply rule 1 only.
//
// # What is proxyd itself
//
// Rule 1 is judged when the dial is made, never from a snapshot taken at
// start: an address added to the host later (a new interface, a floating
// IP, a container network) reaches a listener bound to 0.0.0.0 or :: at
// once, so it must be refused at once. On a listener's port (on any
// other port rule 1 costs one scan of a two-entry slice and nothing else),
// an address is proxyd's if it is loopback, unspecified, a listener's own
// address, or one of the host's interface addresses. Those are kept as
// the answer of the last net.InterfaceAddrs; an address found there is
// refused without a look, and one that is not found is looked up again
// before the dial may go on, so the cache can only ever make a refusal,
// never let a dial through (an address removed from the host stays
// refused on proxyd's ports until the next look, which any miss makes).
// A look is not rate-limited, since a rate-limited one would let an
// address added meanwhile through; dials missing at the same time share
// one look started after they missed. A look that fails refuses the dial
// (reason self). The price is one look (tens of microseconds, a netlink
// dump on Linux) per new connection to a non-local address on a port
// proxyd listens on; connections to other ports never pay it.
//
// Checking the connected socket instead (is its remote address one of
// ours?) would judge after connect(2), when the admin listener has already
// accepted the connection, and through a seam the upstream dialer does not
// have; a listener bound to a specific address is treated like one on all
// interfaces (any local address on its port is refused), which refuses a
// little more than needed and nothing less.
//
// A refusal is a *Denial: its Reason is one of a fixed set (a metric
// label), its Details say what was refused and why ("10.0.0.7 is private
// (10.0.0.0/8)").
package egress
