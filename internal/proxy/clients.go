package proxy

import (
	"errors"
	"net/http"
	"net/netip"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/config"
)

// ClientOther is the metric label of a client that no clients entry names.
const ClientOther = "other"

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
		return ClientOther
	}
	return c.pol.name
}

// identify authenticates r (when auth.htpasswd is set) and names its
// client. A request read from a decrypted tunnel is its CONNECT's client.
// The credentials are removed from r: they are never forwarded (they are
// hop-by-hop anyway) and never logged.
func (h *Handler) identify(r *http.Request, pol *policy, ti *tunnelInfo, rec *Record) (*clientID, error) {
	if ti != nil {
		return ti.client, nil
	}
	cred := r.Header.Get("Proxy-Authorization")
	r.Header.Del("Proxy-Authorization")
	addr := clientAddr(r)
	c := &clientID{key: addr.String()}
	if users := h.users.Load(); users != nil {
		user, ok := users.Check(cred)
		if !ok {
			if cred == "" {
				rec.AuthFailed = AuthMissing
			} else {
				rec.AuthFailed = AuthInvalid
			}
			return nil, errProxyAuth
		}
		c.user, c.key = user, user
	}
	c.pol = pol.clients.find(c.user, addr)
	return c, nil
}

// Values of Record.AuthFailed (the reason label of
// proxyd_auth_failures_total).
const (
	AuthMissing = "missing" // no Proxy-Authorization
	AuthInvalid = "invalid" // a wrong scheme, user or password
)
