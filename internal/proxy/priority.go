package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/headers"
	"github.com/proxyd/proxyd/internal/hostport"
)

// policy is the part of the configuration that a reload swaps whole: how
// urgency and budgets are read from a request.
type policy struct {
	defaultUrgency int
	header         string // canonical custom priority header
	trust          bool
	rules          []rule
	timeoutHeader  string // canonical
	timeout        time.Duration
	maxTimeout     time.Duration
	rejectStatus   int
	drop           []string // headers never forwarded
	routes         []route
	retry          retryPolicy
	retryBudget    float64
	maxPause       time.Duration
	// intercept and interceptAll are tls.intercept: the CONNECT
	// destinations whose tunnels are decrypted.
	intercept    []config.HostPattern
	interceptAll bool
	clients      clientPolicies
	// pricing is the hosts rules' pricing in tokens (cost.go); nil when
	// no rule prices.
	pricing []priceRule
}

// intercepts reports whether a CONNECT to dest is decrypted.
func (p *policy) intercepts(dest hostport.HostPort) bool {
	if p.interceptAll {
		return true
	}
	for _, hp := range p.intercept {
		if hp.Match(dest.Host, dest.Port) {
			return true
		}
	}
	return false
}

type rule struct {
	host       config.HostPattern
	hasHost    bool
	pathPrefix string
	method     string // upper case
	cidr       netip.Prefix
	hasCIDR    bool
	hdrName    string
	hdrValue   string
	hasHeader  bool
	user       string // the authenticated user, exactly
	urgency    int
}

// compilePolicy builds a policy from validated configuration.
func compilePolicy(cfg config.Config) (*policy, error) {
	p, u := cfg.Priority, cfg.Upstream
	routes, err := compileRoutes(cfg.Routes)
	if err != nil {
		return nil, err
	}
	pol := &policy{
		defaultUrgency: p.Default,
		header:         http.CanonicalHeaderKey(p.Header),
		trust:          p.TrustHeaders,
		timeoutHeader:  http.CanonicalHeaderKey(u.TimeoutHeader),
		timeout:        u.Timeout,
		maxTimeout:     u.MaxTimeout,
		rejectStatus:   cfg.Limits.RejectStatus,
		routes:         routes,
		retry:          compileRetry(u.Retry),
		retryBudget:    u.Retry.Budget,
		maxPause:       u.MaxPause,
	}
	if pol.intercept, pol.interceptAll, err = cfg.TLS.InterceptPatterns(); err != nil {
		return nil, err
	}
	pol.clients = compileClients(cfg.Clients)
	// The default cost header is proxyd's own whatever the rule
	// (docs/configuration.md, "Pricing requests: hosts[].cost").
	pol.drop = []string{pol.header, pol.timeoutHeader, config.DefaultCostHeader}
	if pol.pricing, err = compilePricing(cfg.Hosts, pol.drop); err != nil {
		return nil, err
	}
	for _, r := range p.Rules {
		c := rule{
			pathPrefix: r.PathPrefix,
			method:     strings.ToUpper(r.Method),
			user:       r.User,
		}
		if r.Host != "" {
			pat, err := config.ParseHostPattern(r.Host)
			if err != nil {
				return nil, err
			}
			c.host, c.hasHost = pat, true
		}
		if r.Priority != nil {
			c.urgency = *r.Priority
		}
		if r.ClientCIDR != "" {
			pfx, err := netip.ParsePrefix(r.ClientCIDR)
			if err != nil {
				return nil, err
			}
			c.cidr, c.hasCIDR = pfx.Masked(), true
		}
		if r.Header != nil {
			c.hdrName, c.hdrValue, c.hasHeader = http.CanonicalHeaderKey(r.Header.Name), r.Header.Value, true
		}
		pol.rules = append(pol.rules, c)
	}
	return pol, nil
}

// urgency resolves a request's urgency (docs/configuration.md, "Priority"):
// the custom header, the RFC 9218 Priority header's u (when trusted; an
// invalid one is ignored as RFC 9218 §4 says), the first matching rule, the
// default. An invalid custom header is an error (a 400), but only when
// headers are trusted. In an intercepted tunnel, the CONNECT's priority
// headers come after the request's own (docs/tls-interception.md): they are
// the tunnel's default.
//
// ti is the intercepted tunnel r was read from (nil: none); rules match
// dest as hosts rules do.
func (p *policy) urgency(r *http.Request, ti *tunnelInfo, dest hostport.HostPort, path, user string) (int, error) {
	if p.trust {
		if u, ok, err := p.headerUrgency(r.Header, ""); ok {
			return u, err
		}
		if ti != nil && ti.defaults != nil {
			if u, ok, err := p.headerUrgency(ti.defaults, " (sent on the CONNECT)"); ok {
				return u, err
			}
		}
	}
	if len(p.rules) > 0 {
		client := clientAddr(r)
		for i := range p.rules {
			if p.rules[i].matches(r, dest.Host, dest.Port, path, client, user) {
				return p.rules[i].urgency, nil
			}
		}
	}
	return p.defaultUrgency, nil
}

// headerUrgency reads the urgency from the priority headers of h (trusted):
// ok is false when they set none. where follows the header's name in an
// error ("X-Priority (sent on the CONNECT): …").
func (p *policy) headerUrgency(h http.Header, where string) (u int, ok bool, err error) {
	if vals := h.Values(p.header); len(vals) > 0 {
		if len(vals) > 1 {
			return 0, true, badHeader(p.header + where + ": more than one value")
		}
		u, err := headers.ParseUrgency(vals[0])
		if err != nil {
			return 0, true, badHeader(p.header + where + ": " + err.Error())
		}
		return u, true, nil
	}
	if vals := h.Values("Priority"); len(vals) > 0 {
		if u, _, ok := headers.ParsePriorityValues(vals); ok {
			return u, true, nil
		}
	}
	return 0, false, nil
}

// connectDefaults keeps the CONNECT's priority and timeout headers, the
// defaults of the requests in its intercepted tunnel; nil when it has
// none.
func (p *policy) connectDefaults(h http.Header) http.Header {
	var d http.Header
	for _, k := range []string{p.header, "Priority", p.timeoutHeader} {
		if vv := h.Values(k); len(vv) > 0 {
			if d == nil {
				d = make(http.Header, 3)
			}
			d[k] = append([]string(nil), vv...)
		}
	}
	return d
}

// tunnelOf is the intercepted tunnel r was read from, or nil (the
// tunnel's server puts it in each request's context: intercept.go).
func tunnelOf(r *http.Request) *tunnelInfo {
	ti, _ := r.Context().Value(tunnelKey{}).(*tunnelInfo)
	return ti
}

func (c *rule) matches(r *http.Request, host string, port int, path string, client netip.Addr, user string) bool {
	if c.user != "" && c.user != user {
		return false
	}
	if c.hasHost && !c.host.Match(host, port) {
		return false
	}
	if c.pathPrefix != "" && !strings.HasPrefix(path, c.pathPrefix) {
		return false
	}
	if c.method != "" && c.method != r.Method {
		return false
	}
	if c.hasCIDR && (!client.IsValid() || !c.cidr.Contains(client)) {
		return false
	}
	if c.hasHeader && r.Header.Get(c.hdrName) != c.hdrValue {
		return false
	}
	return true
}

func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// budget reads the caller's whole budget from the timeout header (in an
// intercepted tunnel, the CONNECT's when the request has none): 0 when
// absent, capped by max_timeout.
func (p *policy) budget(r *http.Request, ti *tunnelInfo) (time.Duration, error) {
	vals, where := r.Header.Values(p.timeoutHeader), ""
	if len(vals) == 0 {
		if ti != nil && ti.defaults != nil {
			vals, where = ti.defaults.Values(p.timeoutHeader), " (sent on the CONNECT)"
		}
	}
	if len(vals) == 0 {
		return 0, nil
	}
	if len(vals) > 1 {
		return 0, badHeader(p.timeoutHeader + where + ": more than one value")
	}
	d, err := headers.ParseTimeout(vals[0])
	if err != nil {
		return 0, badHeader(p.timeoutHeader + where + ": " + err.Error())
	}
	return min(d, p.maxTimeout), nil
}
