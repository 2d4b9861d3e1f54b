package egress

import "net/netip"

// Reasons, the values of Denial.Reason and of the reason label of
// proxyd_egress_denied_total.
const (
	ReasonLoopback  = "loopback"
	ReasonPrivate   = "private"
	ReasonLinkLocal = "link_local"
	ReasonSpecial   = "special"
	ReasonSelf      = "self"
	ReasonDeny      = "deny"
	ReasonPort      = "port"
)

// Reasons lists every reason, for metrics that pre-create series.
var Reasons = []string{ReasonLoopback, ReasonPrivate, ReasonLinkLocal, ReasonSpecial, ReasonSelf, ReasonDeny, ReasonPort}

// deniedRange is one range of the default deny set.
type deniedRange struct {
	prefix netip.Prefix
	name   string // shown in Denial.Details: "10.0.0.7 is private (10.0.0.0/8)"
	reason string
}

func r(cidr, name, reason string) deniedRange {
	return deniedRange{netip.MustParsePrefix(cidr), name, reason}
}

// defaultDenied is the default deny set (docs/configuration.md, "Egress
// policy: `egress`", whose table lists it by reason), after the IANA IPv4
// and IPv6 Special-Purpose Address Registries (RFC 6890 and updates).
// Ranges the registries mark globally reachable (6to4, Teredo, NAT64's
// well-known prefix) are not in it. More specific ranges come first so that
// the name shown is the most precise one.
var defaultDenied = []deniedRange{
	// IPv4
	r("255.255.255.255/32", "broadcast", ReasonSpecial),
	r("0.0.0.0/32", "unspecified", ReasonSpecial),
	r("0.0.0.0/8", "\"this network\"", ReasonSpecial),
	r("127.0.0.0/8", "loopback", ReasonLoopback),
	r("10.0.0.0/8", "private", ReasonPrivate),
	r("172.16.0.0/12", "private", ReasonPrivate),
	r("192.168.0.0/16", "private", ReasonPrivate),
	r("100.64.0.0/10", "shared address space", ReasonPrivate),
	r("169.254.169.254/32", "link-local (cloud metadata)", ReasonLinkLocal),
	r("169.254.0.0/16", "link-local", ReasonLinkLocal),
	r("192.0.0.0/24", "IETF protocol assignments", ReasonSpecial),
	r("192.0.2.0/24", "documentation", ReasonSpecial),
	r("198.51.100.0/24", "documentation", ReasonSpecial),
	r("203.0.113.0/24", "documentation", ReasonSpecial),
	r("198.18.0.0/15", "benchmarking", ReasonSpecial),
	r("224.0.0.0/4", "multicast", ReasonSpecial),
	r("240.0.0.0/4", "reserved", ReasonSpecial),
	// IPv6 (IPv4-mapped addresses are unmapped before the check).
	r("::/128", "unspecified", ReasonSpecial),
	r("::1/128", "loopback", ReasonLoopback),
	r("::/96", "IPv4-compatible (deprecated)", ReasonSpecial),
	r("fd00:ec2::254/128", "link-local (cloud metadata)", ReasonLinkLocal),
	r("fc00::/7", "private (unique local)", ReasonPrivate),
	r("fec0::/10", "site-local (deprecated)", ReasonPrivate),
	r("fe80::/10", "link-local", ReasonLinkLocal),
	r("ff00::/8", "multicast", ReasonSpecial),
	r("100::/64", "discard-only", ReasonSpecial),
	r("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", ReasonSpecial),
	r("2001:db8::/32", "documentation", ReasonSpecial),
	r("2001:2::/48", "benchmarking", ReasonSpecial),
	r("2001:10::/28", "ORCHID (deprecated)", ReasonSpecial),
}

// defaultDeniedRange returns the default-deny range holding a (unmapped,
// zone removed), or nil.
func defaultDeniedRange(a netip.Addr) *deniedRange {
	for i := range defaultDenied {
		if defaultDenied[i].prefix.Contains(a) {
			return &defaultDenied[i]
		}
	}
	return nil
}
