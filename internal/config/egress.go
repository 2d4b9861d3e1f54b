package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Egress is the egress policy (docs/configuration.md, "Egress policy"): which destinations the proxy may
// reach beyond its default deny set, which it must not, and which ports a
// CONNECT may open.
type Egress struct {
	// Allow opens exceptions to the default deny set: CIDRs, addresses,
	// hosts and wildcards, each with an optional ":port".
	Allow []string `mapstructure:"allow" yaml:"allow"`
	// Deny refuses further destinations; it wins over Allow.
	Deny []string `mapstructure:"deny" yaml:"deny"`
	// ConnectPorts are the ports a CONNECT may reach; empty means any.
	ConnectPorts []int `mapstructure:"connect_ports" yaml:"connect_ports"`
}

func (e Egress) check(p *problems) {
	for i, s := range e.Allow {
		if _, err := ParseEgressEntry(s); err != nil {
			p.addErr(fmt.Sprintf("egress.allow[%d]", i), err)
		}
	}
	for i, s := range e.Deny {
		if _, err := ParseEgressEntry(s); err != nil {
			p.addErr(fmt.Sprintf("egress.deny[%d]", i), err)
		}
	}
	for i, port := range e.ConnectPorts {
		if port < 1 || port > 65535 {
			p.add(fmt.Sprintf("egress.connect_ports[%d]", i), "must be a port from 1 to 65535, got %d", port)
		}
	}
}

// EgressEntry is one parsed egress.allow or egress.deny entry: either an
// address range (Prefix is valid; a single address is a full-length
// prefix) or a host name or wildcard (Host), with an optional port.
type EgressEntry struct {
	// Prefix is the range of an entry written as a CIDR or an address,
	// IPv4-mapped IPv6 forms unmapped to IPv4. Invalid for a host entry.
	Prefix netip.Prefix
	// Host is the name or wildcard of a host entry (its Port is 0; the
	// entry's port is Port). Empty for an address entry.
	Host HostPattern
	// Port is 1 to 65535, or 0 for every port.
	Port int
}

// ParseEgressEntry parses "10.1.0.0/16", "10.1.0.0/16:8080",
// "[fd00::/8]:443", "fd00::/8", "192.0.2.7", "[2001:db8::1]:443",
// "api.corp.example", "*.corp.example:8443" and the like. A CIDR with host
// bits set is rejected with a suggestion; host forms follow
// ParseHostPattern.
func ParseEgressEntry(s string) (EgressEntry, error) {
	if s == "" {
		return EgressEntry{}, errors.New("must not be empty")
	}
	if strings.TrimSpace(s) != s {
		return EgressEntry{}, fmt.Errorf("invalid entry %q: leading or trailing blanks", s)
	}
	if !strings.Contains(s, "/") {
		hp, err := ParseHostPattern(s)
		if err != nil {
			return EgressEntry{}, err
		}
		e := EgressEntry{Port: hp.Port}
		hp.Port = 0
		if a, err := netip.ParseAddr(hp.Host); err == nil {
			a = a.Unmap()
			e.Prefix = netip.PrefixFrom(a, a.BitLen())
			return e, nil
		}
		e.Host = hp
		return e, nil
	}
	cidr, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return EgressEntry{}, fmt.Errorf("invalid entry %q: missing \"]\"", s)
		}
		cidr = s[1:end]
		rest := s[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return EgressEntry{}, fmt.Errorf("invalid entry %q: want \"[prefix]:port\"", s)
		}
		port = rest[1:]
	case strings.Count(s, ":") == 1:
		// IPv4 CIDR with a port: "10.0.0.0/8:443".
		cidr, port, _ = strings.Cut(s, ":")
	}
	if err := checkCIDR(cidr); err != nil {
		return EgressEntry{}, err
	}
	pfx := netip.MustParsePrefix(cidr)
	if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	e := EgressEntry{Prefix: pfx}
	if port != "" || strings.HasSuffix(s, ":") {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return EgressEntry{}, fmt.Errorf("invalid entry %q: port must be a number from 1 to 65535, got %q", s, port)
		}
		e.Port = int(n)
	}
	return e, nil
}

// MatchAddr reports whether an address entry covers a (unmapped) on port.
func (e EgressEntry) MatchAddr(a netip.Addr, port int) bool {
	return e.Prefix.IsValid() && (e.Port == 0 || e.Port == port) && e.Prefix.Contains(a.Unmap().WithZone(""))
}

// MatchHost reports whether a host entry covers the name host on port.
func (e EgressEntry) MatchHost(host string, port int) bool {
	return !e.Prefix.IsValid() && (e.Port == 0 || e.Port == port) && e.Host.Match(host, port)
}

// String returns the entry in its canonical form.
func (e EgressEntry) String() string {
	var s string
	if e.Prefix.IsValid() {
		s = e.Prefix.String()
		if e.Prefix.IsSingleIP() {
			s = e.Prefix.Addr().String()
		}
	} else {
		s = e.Host.String()
	}
	if e.Port == 0 {
		return s
	}
	if strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	return s + ":" + strconv.Itoa(e.Port)
}
