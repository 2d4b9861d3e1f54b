package proxy

import (
	"errors"
	"net/netip"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/outcome"
)

// errProxyAuth: the request lacks valid proxy credentials (407).
var errProxyAuth = errors.New("proxy authentication required")

// SetUsers sets the users of auth.htpasswd (reload), or nil for no
// authentication.
func (h *Handler) SetUsers(u *auth.Users) { h.users.Store(u) }

// clientPolicy is one clients entry, compiled.
type clientPolicy struct {
	name        string // as configured: the metric label
	maxPriority int    // the most urgent level allowed; 0 = any
	queueSize   int    // 0 = no cap of its own
}

// clientPolicies finds a client's entry: by user name, else by source
// address (CIDR entries, first match).
type clientPolicies struct {
	byName map[string]*clientPolicy
	cidrs  []cidrClient
}

type cidrClient struct {
	pfx netip.Prefix
	pol *clientPolicy
}

func compileClients(cs []config.Client) clientPolicies {
	out := clientPolicies{byName: make(map[string]*clientPolicy, len(cs))}
	for _, c := range cs {
		cp := &clientPolicy{name: c.Name, queueSize: c.QueueSize}
		if c.MaxPriority != nil {
			cp.maxPriority = *c.MaxPriority
		}
		if pfx, ok := config.ClientPrefix(c.Name); ok {
			out.cidrs = append(out.cidrs, cidrClient{pfx, cp})
			continue
		}
		out.byName[c.Name] = cp
	}
	return out
}

func (c *clientPolicies) find(user string, addr netip.Addr) *clientPolicy {
	if user != "" {
		if cp := c.byName[user]; cp != nil {
			return cp
		}
	}
	if addr.IsValid() {
		for _, e := range c.cidrs {
			if e.pfx.Contains(addr) {
				return e.pol
			}
		}
	}
	return nil
}

// clientID is who sent a request (docs/configuration.md, "Clients: `auth`,
// `clients`, `fairness`"): its authenticated user, else its source address;
// and the clients entry that applies, if any.
type clientID struct {
	user string // authenticated user, "" without auth
	key  string // user, else the source address: the access log's client, fairness and queue_size
	pol  *clientPolicy
}

// label is the client's metric label: a configured name, or "other".
func (c *clientID) label() string {
	if c == nil || c.pol == nil {
		return outcome.ClientOther
	}
	return c.pol.name
}

// identify authenticates the request (when auth.htpasswd is set) and
// names its client. A request read from a decrypted tunnel is its
// CONNECT's client. The credentials stay on the inbound request: they are
// hop-by-hop, so no outbound request carries them (upstream.Outbound), and
// they are never logged.
func (x *exchange) identify() error {
	if x.ti != nil {
		x.client = x.ti.client
	} else {
		r := x.in
		cred := r.Header.Get("Proxy-Authorization")
		addr := clientAddr(r)
		c := &clientID{key: addr.String()}
		if users := x.h.users.Load(); users != nil {
			user, ok := users.Check(cred)
			if !ok {
				if cred == "" {
					x.rec.AuthFailed = outcome.AuthMissing
				} else {
					x.rec.AuthFailed = outcome.AuthInvalid
				}
				return errProxyAuth
			}
			c.user, c.key = user, user
		}
		c.pol = x.pol.clients.find(c.user, addr)
		x.client = c
	}
	if x.client != nil {
		x.rec.Client, x.rec.ClientLabel = x.client.key, x.client.label()
	}
	return nil
}
