// Package egress decides which destinations the proxy may reach (SPEC §11).
//
// A Policy is compiled from config.Egress and holds the default deny set
// (loopback, private and shared, link-local, unspecified, multicast,
// broadcast and reserved ranges, IPv4 and IPv6; IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry), the operator's
// egress.allow and egress.deny entries and egress.connect_ports.
//
// A Guard holds the live Policy (swapped whole on reload) and proxyd's own
// listener addresses. It is asked twice about a request:
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
// A refusal is a *Denial: its Reason is one of a fixed set (a metric
// label), its Details say what was refused and why ("10.0.0.7 is private
// (10.0.0.0/8)").
package egress
