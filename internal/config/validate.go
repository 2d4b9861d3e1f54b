package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Bounds enforced by Validate.
const (
	// MaxUrgency is the least urgent priority level; 0 is the most urgent
	// (RFC 9218 §4.1).
	MaxUrgency = 7
	// MaxRetryAttempts caps upstream.retry.attempts.
	MaxRetryAttempts = 10
)

// RetryConnectFailure is the upstream.retry.on entry that retries requests
// whose connection to the upstream could not be made. The other allowed
// entries are status codes as strings: "429" and "500" to "599".
const RetryConnectFailure = "connect-failure"

// FieldError reports one invalid configuration key. Validate returns these
// joined with errors.Join; use errors.As to get at the first one.
type FieldError struct {
	// Key is the key's configuration path: "limits.rate",
	// "hosts[1].match", "priority.rules[0]" (a problem with the entry as a
	// whole). Limits.Validate names the field alone ("rate").
	Key string
	// Err is the reason, e.g. "must be >= 0, got -5".
	Err error
}

// Error returns "key: reason".
func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *FieldError) Unwrap() error { return e.Err }

// problems collects FieldErrors in the order the keys are checked.
type problems struct{ errs []error }

func (p *problems) add(key, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Key: key, Err: fmt.Errorf(format, args...)})
}

func (p *problems) addErr(key string, err error) {
	if err != nil {
		p.errs = append(p.errs, &FieldError{Key: key, Err: err})
	}
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// Validate checks every key and returns nil, or one *FieldError per
// problem joined with errors.Join (one line each, in key order), e.g.
//
//	limits.rate: must be >= 0, got -5
//	hosts[1].match: invalid pattern "*.": nothing after "*."
//
// It does not modify c. Beyond the per-key rules it rejects: listen and
// admin.listen being the same address (unless the port is 0); priority.header
// or upstream.timeout_header naming a header requests need (reservedHeader),
// or both naming the same header; two hosts rules with the same match; two routes
// with the same prefix.
func (c *Config) Validate() error {
	var p problems
	p.addErr("listen", checkListenAddr(c.Listen))
	p.addErr("admin.listen", checkListenAddr(c.Admin.Listen))
	if sameListener(c.Listen, c.Admin.Listen) {
		p.add("admin.listen", "%q must not overlap listen %q (same port on the same or an all-interfaces address)", c.Admin.Listen, c.Listen)
	}
	c.Admin.check(&p)
	c.Limits.check(&p, "limits.")
	checkHosts(&p, c.Hosts)
	c.checkCostHeaders(&p)
	c.Priority.check(&p)
	c.Upstream.check(&p)
	if c.Priority.Header != "" && http.CanonicalHeaderKey(c.Priority.Header) == http.CanonicalHeaderKey(c.Upstream.TimeoutHeader) {
		p.add("priority.header", "must differ from upstream.timeout_header, both are %q", c.Priority.Header)
	}
	checkRoutes(&p, c.Routes)
	c.Egress.check(&p)
	c.TLS.check(&p)
	c.checkClients(&p)
	c.checkStore(&p)
	c.Tracing.check(&p)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be one of debug, info, warn, error; got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		p.add("log.format", "must be json or console, got %q", c.Log.Format)
	}
	if c.ShutdownTimeout < 0 {
		p.add("shutdown_timeout", "must be >= 0, got %v", c.ShutdownTimeout)
	}
	if c.ClientWriteTimeout < 0 {
		p.add("client_write_timeout", "must be >= 0 (0 = no bound), got %v", c.ClientWriteTimeout)
	}
	return p.err()
}

// Validate checks the global limits alone, as the admin API does before a
// live change, and names each field without the "limits." prefix
// ("rate: must be >= 0, got -5"). Config.Validate runs the same checks and
// adds the prefix.
func (l Limits) Validate() error {
	var p problems
	l.check(&p, "")
	return p.err()
}

// Upper bounds that catch absurd limits (a typo, a unit mix-up) before
// they reach the dispatcher: beyond them a value cannot be honoured on one
// machine, or is indistinguishable from "unlimited" (say so with 0). The
// rate, burst and concurrency bounds apply to hosts rules too.
const (
	maxRate        = 1e9 // tokens per second: x/time/rate times them in ns
	maxBurst       = 1_000_000_000
	maxConcurrency = 1_000_000
	maxQueueSize   = 10_000_000
	maxMaxWait     = 24 * time.Hour
	maxTunnels     = 1_000_000
)

func (l Limits) check(p *problems, prefix string) {
	switch {
	case math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0):
		p.add(prefix+"rate", "must be a finite number, got %v", l.Rate)
	case l.Rate < 0:
		p.add(prefix+"rate", "must be >= 0, got %v", l.Rate)
	case l.Rate > maxRate:
		p.add(prefix+"rate", "must be <= %g (use 0 for unlimited), got %v", maxRate, l.Rate)
	}
	switch {
	case l.Burst < 0:
		p.add(prefix+"burst", "must be >= 0, got %d", l.Burst)
	case l.Burst < 1 && l.Rate > 0:
		p.add(prefix+"burst", "must be >= 1 when rate > 0, got %d", l.Burst)
	case l.Burst > maxBurst:
		p.add(prefix+"burst", "must be <= %d, got %d", maxBurst, l.Burst)
	}
	switch {
	case l.Concurrency < 0:
		p.add(prefix+"concurrency", "must be >= 0 (0 = unlimited), got %d", l.Concurrency)
	case l.Concurrency > maxConcurrency:
		p.add(prefix+"concurrency", "must be <= %d (use 0 for unlimited), got %d", maxConcurrency, l.Concurrency)
	}
	switch {
	case l.QueueSize < 1:
		p.add(prefix+"queue_size", "must be >= 1, got %d", l.QueueSize)
	case l.QueueSize > maxQueueSize:
		p.add(prefix+"queue_size", "must be <= %d, got %d", maxQueueSize, l.QueueSize)
	}
	switch {
	case l.MaxWait <= 0:
		p.add(prefix+"max_wait", "must be > 0, got %v", l.MaxWait)
	case l.MaxWait > maxMaxWait:
		p.add(prefix+"max_wait", "must be <= %v, got %v", maxMaxWait, l.MaxWait)
	}
	switch {
	case l.MaxTunnels < 1:
		p.add(prefix+"max_tunnels", "must be >= 1, got %d", l.MaxTunnels)
	case l.MaxTunnels > maxTunnels:
		p.add(prefix+"max_tunnels", "must be <= %d, got %d", maxTunnels, l.MaxTunnels)
	}
	if l.RejectStatus != http.StatusServiceUnavailable && l.RejectStatus != http.StatusTooManyRequests {
		p.add(prefix+"reject_status", "must be 503 or 429, got %d", l.RejectStatus)
	}
	checkQuotas(p, prefix+"quotas", l.Quotas, false)
}

// ValidateHosts checks a hosts list alone, as the admin API does before a
// live change, naming keys "hosts[i].field".
func ValidateHosts(hosts []HostRule) error {
	var p problems
	checkHosts(&p, hosts)
	return p.err()
}

// checkHosts: a set rate may be 0 (unlimited, as limits.rate); a set burst
// must be >= 1; a set concurrency must be >= 1 (omit it for unlimited: 0
// would read as "block this host"). The upper bounds are those of the
// global limits (maxRate, maxBurst, maxConcurrency).
func checkHosts(p *problems, hosts []HostRule) {
	seen := make(map[HostPattern]int, len(hosts))
	for i, h := range hosts {
		key := fmt.Sprintf("hosts[%d].", i)
		if pat, err := ParseHostPattern(h.Match); err != nil {
			p.addErr(key+"match", err)
		} else if j, dup := seen[pat]; dup {
			p.add(key+"match", "%q duplicates hosts[%d].match; the first match wins, so this rule would never apply", h.Match, j)
		} else if what := reservedRuleLabel(pat); what != "" {
			p.add(key+"match", "%q is reserved: rule=%q labels %s in the metrics; write \"%s:<port>\" for a host of that name", h.Match, pat.Host, what, pat.Host)
		} else {
			seen[pat] = i
		}
		if h.Rate != nil {
			switch r := *h.Rate; {
			case math.IsNaN(r) || math.IsInf(r, 0):
				p.add(key+"rate", "must be a finite number, got %v", r)
			case r < 0:
				p.add(key+"rate", "must be >= 0 (0 or omitted = unlimited), got %v", r)
			case r > maxRate:
				p.add(key+"rate", "must be <= %g (0 or omitted = unlimited), got %v", maxRate, r)
			}
		}
		if h.Burst != nil {
			switch b := *h.Burst; {
			case b < 1:
				p.add(key+"burst", "must be >= 1 (omit it for max(1, rate)), got %d", b)
			case b > maxBurst:
				p.add(key+"burst", "must be <= %d, got %d", maxBurst, b)
			}
		}
		if h.Concurrency != nil {
			switch c := *h.Concurrency; {
			case c < 1:
				p.add(key+"concurrency", "must be >= 1 (omit it for unlimited), got %d", c)
			case c > maxConcurrency:
				p.add(key+"concurrency", "must be <= %d (omit it for unlimited), got %d", maxConcurrency, c)
			}
		}
		checkQuotas(p, key+"quotas", h.Quotas, true)
		checkCost(p, key+"cost", h.Cost)
	}
}

// reservedRuleLabel says what the metrics' rule label p would collide
// with, or "" when none: "global" and "other" label the global quotas and
// the destinations under no rule (docs/metrics.md, "Rule labels"), so a
// rule whose match is one of them, without a port, would share their
// series.
func reservedRuleLabel(p HostPattern) string {
	if p.Wildcard || p.Port != 0 {
		return ""
	}
	switch p.Host {
	case "global":
		return "the quotas of limits.quotas"
	case "other":
		return "destinations under no hosts rule"
	}
	return ""
}

// reservedHeader says why a header cannot be priority.header or
// upstream.timeout_header (both are removed from every request before it
// is forwarded), or "" when it can.
func reservedHeader(name string) string {
	switch http.CanonicalHeaderKey(name) {
	case "Priority":
		return "the standard Priority header (RFC 9218) is read on its own and forwarded"
	case "Host", "Content-Length", "Content-Type", "Authorization", "Via", "Cookie", "User-Agent", "Expect":
		return "proxyd removes this header from every request, and requests need it"
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return "a hop-by-hop header, removed before proxyd could read it as a setting"
	}
	return ""
}

func (pr Priority) check(p *problems) {
	if pr.Default < 0 || pr.Default > MaxUrgency {
		p.add("priority.default", "must be 0 to %d, got %d", MaxUrgency, pr.Default)
	}
	if err := checkHeaderName(pr.Header); err != nil {
		p.addErr("priority.header", err)
	} else if why := reservedHeader(pr.Header); why != "" {
		p.add("priority.header", "must not be %s: %s", http.CanonicalHeaderKey(pr.Header), why)
	}
	if pr.Aging < 0 {
		p.add("priority.aging", "must be >= 0 (0s = strict priority), got %v", pr.Aging)
	}
	if pr.Reserve < 0 {
		p.add("priority.reserve", "must be >= 0 (0 = no reserve), got %d", pr.Reserve)
	}
	for i, r := range pr.Rules {
		key := fmt.Sprintf("priority.rules[%d]", i)
		switch {
		case r.Priority == nil:
			p.add(key+".priority", "is required (0 to %d)", MaxUrgency)
		case *r.Priority < 0 || *r.Priority > MaxUrgency:
			p.add(key+".priority", "must be 0 to %d, got %d", MaxUrgency, *r.Priority)
		}
		if r.Host == "" && r.PathPrefix == "" && r.Method == "" && r.ClientCIDR == "" && r.Header == nil && r.User == "" {
			p.add(key, "needs at least one of host, path_prefix, method, client_cidr, header, user")
		}
		if r.Host != "" {
			if _, err := ParseHostPattern(r.Host); err != nil {
				p.addErr(key+".host", err)
			}
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			p.add(key+".path_prefix", "must start with \"/\", got %q", r.PathPrefix)
		}
		if r.Method != "" && !isToken(r.Method) {
			p.add(key+".method", "invalid method %q", r.Method)
		}
		if r.ClientCIDR != "" {
			p.addErr(key+".client_cidr", checkCIDR(r.ClientCIDR))
		}
		if r.Header != nil {
			p.addErr(key+".header.name", checkHeaderName(r.Header.Name))
			switch {
			case r.Header.Value == "":
				p.add(key+".header.value", "is required (the exact value to match)")
			case !validHeaderValue(r.Header.Value):
				p.add(key+".header.value", "invalid header value %q", r.Header.Value)
			}
		}
	}
}

func (u Upstream) check(p *problems) {
	if u.Timeout <= 0 {
		p.add("upstream.timeout", "must be > 0, got %v", u.Timeout)
	}
	if u.MaxTimeout <= 0 {
		p.add("upstream.max_timeout", "must be > 0, got %v", u.MaxTimeout)
	} else if u.MaxTimeout < u.Timeout {
		p.add("upstream.max_timeout", "must be >= upstream.timeout (%v), got %v", u.Timeout, u.MaxTimeout)
	}
	if err := checkHeaderName(u.TimeoutHeader); err != nil {
		p.addErr("upstream.timeout_header", err)
	} else if why := reservedHeader(u.TimeoutHeader); why != "" {
		p.add("upstream.timeout_header", "must not be %s: %s", http.CanonicalHeaderKey(u.TimeoutHeader), why)
	}
	if u.DialTimeout <= 0 {
		p.add("upstream.dial_timeout", "must be > 0, got %v", u.DialTimeout)
	}
	if u.MaxIdleConnsPerHost < 0 {
		p.add("upstream.max_idle_conns_per_host", "must be >= 0, got %d", u.MaxIdleConnsPerHost)
	}
	r := u.Retry
	if r.Attempts < 0 || r.Attempts > MaxRetryAttempts {
		p.add("upstream.retry.attempts", "must be 0 to %d, got %d", MaxRetryAttempts, r.Attempts)
	}
	seen := make(map[string]bool, len(r.On))
	for i, on := range r.On {
		key := fmt.Sprintf("upstream.retry.on[%d]", i)
		switch {
		case !validRetryOn(on):
			p.add(key, "must be %q, \"429\" or a 5xx status code, got %q", RetryConnectFailure, on)
		case seen[on]:
			p.add(key, "%q is listed twice", on)
		}
		seen[on] = true
	}
	if r.BackoffBase <= 0 {
		p.add("upstream.retry.backoff_base", "must be > 0, got %v", r.BackoffBase)
	}
	if r.BackoffMax < r.BackoffBase {
		p.add("upstream.retry.backoff_max", "must be >= upstream.retry.backoff_base (%v), got %v", r.BackoffBase, r.BackoffMax)
	}
	if math.IsNaN(r.Budget) || r.Budget < 0 || r.Budget > 1 {
		p.add("upstream.retry.budget", "must be between 0 and 1, got %v", r.Budget)
	}
	if u.MaxPause <= 0 {
		p.add("upstream.max_pause", "must be > 0, got %v", u.MaxPause)
	}
}

func validRetryOn(s string) bool {
	if s == RetryConnectFailure || s == "429" {
		return true
	}
	return len(s) == 3 && s[0] == '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
}

func checkRoutes(p *problems, routes []Route) {
	seen := make(map[string]int, len(routes))
	for i, r := range routes {
		key := fmt.Sprintf("routes[%d].", i)
		switch {
		case !strings.HasPrefix(r.Prefix, "/"):
			p.add(key+"prefix", "must start with \"/\", got %q", r.Prefix)
		case strings.ContainsAny(r.Prefix, "?#"):
			p.add(key+"prefix", "must be a path without query or fragment, got %q", r.Prefix)
		default:
			if j, dup := seen[r.Prefix]; dup {
				p.add(key+"prefix", "%q duplicates routes[%d].prefix", r.Prefix, j)
			} else {
				seen[r.Prefix] = i
			}
		}
		p.addErr(key+"upstream", checkUpstreamURL(r.Upstream))
	}
}

func checkUpstreamURL(s string) error {
	if s == "" {
		return errors.New("is required (an absolute http or https URL)")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %v", s, lastReason(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("must be an absolute http or https URL, got %q", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("must have a host, got %q", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("must not have a query or fragment, got %q", s)
	}
	return nil
}

// checkListenAddr accepts "host:port" where host is empty (every
// interface), an IP address or a host name, and port is 0 to 65535 (0 picks
// a free port).
// sameListener reports whether two listen addresses would clash: the same
// non-zero port on the same host, where either host is every interface
// ("", 0.0.0.0, ::), or localhost and a loopback address.
func sameListener(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	all := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	local := func(h string) bool { return strings.EqualFold(h, "localhost") }
	loop := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return local(h) || err == nil && ip.IsLoopback()
	}
	return strings.EqualFold(ha, hb) || all(ha) || all(hb) ||
		(local(ha) || local(hb)) && loop(ha) && loop(hb)
}

func checkListenAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port, e.g. \"127.0.0.1:8080\"", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("invalid address %q: port must be a number from 0 to 65535", s)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if err := checkHostname(host); err != nil {
		return fmt.Errorf("invalid address %q: %v", s, err)
	}
	return nil
}

// checkCIDR accepts a canonical prefix such as "10.0.0.0/8" or
// "2001:db8::/32". A bare address and a prefix with host bits set
// ("10.1.2.3/8") are rejected with a suggestion, since either is more
// likely a typo than intended.
func checkCIDR(s string) error {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return fmt.Errorf("invalid CIDR %q: missing prefix length, e.g. %q", s, netip.PrefixFrom(a, a.BitLen()).String())
		}
		return fmt.Errorf("invalid CIDR %q: %v", s, lastReason(err))
	}
	if m := pfx.Masked(); m != pfx {
		return fmt.Errorf("invalid CIDR %q: host bits are set, did you mean %q?", s, m.String())
	}
	return nil
}

// lastReason strips the "func(arg): " prefixes that net/netip and
// net/url put before the reason.
func lastReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// checkHeaderName accepts a non-empty RFC 9110 §5.1 field name (a token).
func checkHeaderName(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case !isToken(s):
		return fmt.Errorf("invalid header name %q", s)
	}
	return nil
}

// isToken reports whether s is an RFC 9110 §5.6.2 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s is a valid field value
// (RFC 9110 §5.5): no control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// HostPattern is a parsed hosts[].match or priority.rules[].host: a host
// name or IP address, or a wildcard "*.example.com" (every subdomain, not
// the apex), with an optional port.
//
// The zero value matches nothing useful; get one from ParseHostPattern.
// HostPattern is comparable, so two equal patterns are duplicates.
type HostPattern struct {
	// Host is lower-case, without the "*." of a wildcard, and an IPv6
	// address without brackets.
	Host string
	// Wildcard means "any subdomain of Host", not Host itself.
	Wildcard bool
	// Port is 1 to 65535, or 0 for every port.
	Port int
}

// ParseHostPattern parses "api.example.com", "*.example.com",
// "api.example.com:8443", "10.0.0.1", "[2001:db8::1]:443" and the like.
// Host names are case-insensitive and stored lower-case. A trailing dot,
// a bare "*", a "*" anywhere but a leading "*.", a wildcard over an IP
// address, an IPv6 zone and port 0 are rejected.
func ParseHostPattern(s string) (HostPattern, error) {
	bad := func(format string, args ...any) (HostPattern, error) {
		return HostPattern{}, fmt.Errorf("invalid pattern %q: %s", s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return HostPattern{}, errors.New("must not be empty")
	}
	if strings.Contains(s, "/") {
		return bad("want a host such as \"api.example.com\", not a URL or path")
	}
	host, port, hasPort := s, "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("missing \"]\"")
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return bad("unexpected %q after \"]\"", rest)
			}
			port, hasPort = rest[1:], true
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return bad("%q in brackets is not an IPv6 address", host)
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
		hasPort = true
	}
	p := HostPattern{}
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return bad("port must be a number from 1 to 65535, got %q", port)
		}
		p.Port = int(n)
	}
	if strings.HasPrefix(host, "*.") {
		p.Wildcard = true
		host = host[2:]
		if host == "" {
			return bad("nothing after \"*.\"")
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return bad("a wildcard cannot cover an IP address")
		}
	}
	if host == "*" {
		return bad("a wildcard needs a domain, e.g. \"*.example.com\"")
	}
	if strings.Contains(host, "*") {
		return bad("\"*\" is only allowed as a leading \"*.\"")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return bad("IPv6 zones are not supported")
		}
		p.Host = a.String()
		return p, nil
	}
	if strings.Contains(host, ":") {
		return bad("an IPv6 address with a port needs brackets, e.g. \"[2001:db8::1]:443\"")
	}
	if err := checkHostname(host); err != nil {
		return bad("%v", err)
	}
	p.Host = strings.ToLower(host)
	return p, nil
}

// Match reports whether the request host (a name or IP address, without
// brackets or port; compared case-insensitively, ASCII letters only, as
// DNS does: RFC 4343 §3) and port (the explicit port, or the scheme's
// default) fall under p.
func (p HostPattern) Match(host string, port int) bool {
	if p.Port != 0 && p.Port != port {
		return false
	}
	host = strings.TrimSuffix(host, ".")
	if !p.Wildcard {
		return asciiEqualFold(host, p.Host)
	}
	n := len(host) - len(p.Host)
	return n > 1 && host[n-1] == '.' && asciiEqualFold(host[n:], p.Host)
}

// asciiEqualFold is strings.EqualFold for ASCII letters only:
// strings.EqualFold would also take the Kelvin sign (U+212A) for "k" and
// the long s (U+017F) for "s", which no resolver does.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// String returns the pattern in its canonical form.
func (p HostPattern) String() string {
	h := p.Host
	if p.Wildcard {
		h = "*." + h
	}
	if strings.Contains(h, ":") {
		if p.Port == 0 {
			return h
		}
		h = "[" + h + "]"
	}
	if p.Port != 0 {
		h += ":" + strconv.Itoa(p.Port)
	}
	return h
}

// checkHostname accepts a DNS name: dot-separated labels of 1 to 63
// letters, digits, '-' or '_' (not starting or ending with '-'), at most
// 253 bytes, no trailing dot. A name made only of digits and dots must be
// a valid IPv4 address.
func checkHostname(s string) error {
	if s == "" {
		return errors.New("empty host name")
	}
	if len(s) > 253 {
		return errors.New("host name longer than 253 bytes")
	}
	if strings.HasSuffix(s, ".") {
		return errors.New("host name must not end with \".\"")
	}
	numeric := true
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return errors.New("empty label in host name")
		}
		if len(label) > 63 {
			return errors.New("label longer than 63 bytes in host name")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with \"-\"", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case '0' <= c && c <= '9':
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '_':
				numeric = false
			default:
				return fmt.Errorf("invalid character %q in host name", c)
			}
		}
	}
	if numeric {
		return errors.New("not a valid IPv4 address")
	}
	return nil
}

// Keys returns the path of every leaf configuration key in declaration
// order ("listen", "admin.listen", …, "limits.rate", …, "hosts", …,
// "upstream.retry.on", …), derived from the mapstructure tags of Config. A
// list of entries ("hosts", "priority.rules", "routes") is one key; so is a
// list of strings ("upstream.retry.on").
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				walk(f.Type, prefix+name+".")
				continue
			}
			keys = append(keys, prefix+name)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
}
