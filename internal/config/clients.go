package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Auth configures proxy authentication (docs/configuration.md, "Clients").
type Auth struct {
	// Htpasswd is a file of name:bcrypt-hash lines (htpasswd -B); when set,
	// every proxy request needs Proxy-Authorization: Basic.
	Htpasswd string `mapstructure:"htpasswd" yaml:"htpasswd"`
}

// Client is a per-client policy (docs/configuration.md, "Clients").
type Client struct {
	// Name is an authenticated user, or a CIDR (or address) of source
	// addresses when auth is off.
	Name string `mapstructure:"name" yaml:"name" json:"name"`
	// MaxPriority is the most urgent level the client may use: a more
	// urgent request is lowered to it. nil: any (0).
	MaxPriority *int `mapstructure:"max_priority" yaml:"max_priority,omitempty" json:"max_priority,omitempty"`
	// QueueSize caps how many of the client's requests may wait; 0: only
	// limits.queue_size.
	QueueSize int `mapstructure:"queue_size" yaml:"queue_size,omitempty" json:"queue_size,omitempty"`
}

// Fairness values.
const (
	FairnessNone   = "none"
	FairnessClient = "client"
)

// ClientPrefix returns the source range of a client named by a CIDR or an
// address (IPv4-mapped forms unmapped); ok is false for a user name.
func ClientPrefix(name string) (netip.Prefix, bool) {
	if pfx, err := netip.ParsePrefix(name); err == nil {
		if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		return pfx.Masked(), true
	}
	if a, err := netip.ParseAddr(name); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

func (c *Config) checkClients(p *problems) {
	switch c.Fairness {
	case FairnessNone, FairnessClient:
	default:
		p.add("fairness", "must be none or client, got %q", c.Fairness)
	}
	seen := make(map[string]int, len(c.Clients))
	for i, cl := range c.Clients {
		key := fmt.Sprintf("clients[%d]", i)
		switch {
		case cl.Name == "":
			p.add(key+".name", "must not be empty (a user of auth.htpasswd, or a CIDR when auth is off)")
		case strings.ContainsAny(cl.Name, ": \t"):
			p.add(key+".name", "%q is neither a user name nor a CIDR", cl.Name)
		}
		if strings.Contains(cl.Name, "/") {
			p.addErr(key+".name", checkCIDR(cl.Name))
		}
		if _, isCIDR := ClientPrefix(cl.Name); !isCIDR && cl.Name != "" && c.Auth.Htpasswd == "" {
			p.add(key+".name", "%q is a user name, but auth.htpasswd is not set: without authentication a client is its source address (give a CIDR)", cl.Name)
		}
		if j, dup := seen[cl.Name]; dup && cl.Name != "" {
			p.add(key+".name", "%q is also clients[%d]", cl.Name, j)
		}
		seen[cl.Name] = i
		if cl.MaxPriority != nil && (*cl.MaxPriority < 0 || *cl.MaxPriority > 7) {
			p.add(key+".max_priority", "must be 0 to 7, got %d", *cl.MaxPriority)
		}
		if cl.QueueSize < 0 {
			p.add(key+".queue_size", "must be >= 0, got %d", cl.QueueSize)
		}
	}
	for i, r := range c.Priority.Rules {
		if r.User != "" && c.Auth.Htpasswd == "" {
			p.add(fmt.Sprintf("priority.rules[%d].user", i), "needs auth.htpasswd: without authentication there is no user to match")
		}
	}
}
