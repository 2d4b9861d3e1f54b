package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

func (a Admin) check(p *problems) {
	seen := make(map[string]int, len(a.AllowedHosts))
	for i, s := range a.AllowedHosts {
		key := fmt.Sprintf("admin.allowed_hosts[%d]", i)
		if err := CheckAdminHost(s); err != nil {
			p.addErr(key, err)
			continue
		}
		name := strings.ToLower(s)
		if j, dup := seen[name]; dup {
			p.add(key, "%q is listed twice (also admin.allowed_hosts[%d])", s, j)
			continue
		}
		seen[name] = i
	}
}

// CheckAdminHost reports whether s may be an admin.allowed_hosts entry: a
// DNS host name as a Host header carries it (compared case-insensitively),
// without a port, a trailing dot or a wildcard. IP literals are refused
// because the admin listener answers every IP literal anyway
// (docs/admin-api.md, "Host check").
func CheckAdminHost(s string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("invalid host name %q: %s", s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return errors.New("must not be empty")
	}
	if strings.Contains(s, "/") {
		return bad("want a host name such as \"proxyd.internal\", not a URL or path")
	}
	if strings.Contains(s, "*") {
		return bad("wildcards are not supported; list every name")
	}
	ip := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if _, err := netip.ParseAddr(ip); err == nil {
		return bad("IP literals are always allowed; list host names only")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return bad("want a host name without a port; IP literals such as %q are always allowed", ap.Addr().String())
	}
	if strings.Contains(s, ":") {
		return bad("want a host name without a port (any port of the admin listener is accepted)")
	}
	if err := checkHostname(s); err != nil {
		return bad("%v", err)
	}
	return nil
}
