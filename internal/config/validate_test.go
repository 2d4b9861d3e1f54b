package config

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

// TestValidate changes one thing in the defaults per case. want is the
// whole error ("" = valid): one line naming the key and the reason.
func TestValidate(t *testing.T) {
	validRule := func(c *Config) { c.Priority.Rules = []PriorityRule{{Host: "api.example.com", Priority: ptr(1)}} }
	rule := func(r PriorityRule) func(*Config) {
		return func(c *Config) { c.Priority.Rules = []PriorityRule{{Host: "a.example.com", Priority: ptr(1)}, r} }
	}
	host := func(h HostRule) func(*Config) {
		return func(c *Config) { c.Hosts = []HostRule{{Match: "a.example.com"}, h} }
	}
	route := func(r Route) func(*Config) {
		return func(c *Config) { c.Routes = []Route{r} }
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		// listen, admin.listen
		{"listen/all interfaces", func(c *Config) { c.Listen = ":8080" }, ""},
		{"listen/host name", func(c *Config) { c.Listen = "localhost:80" }, ""},
		{"listen/IPv6", func(c *Config) { c.Listen = "[::1]:8080" }, ""},
		{"listen/port 0", func(c *Config) { c.Listen = "127.0.0.1:0" }, ""},
		{"listen/missing port", func(c *Config) { c.Listen = "127.0.0.1" }, `listen: invalid address "127.0.0.1": want host:port, e.g. "127.0.0.1:8080"`},
		{"listen/empty", func(c *Config) { c.Listen = "" }, `listen: invalid address "": want host:port, e.g. "127.0.0.1:8080"`},
		{"listen/port too big", func(c *Config) { c.Listen = "127.0.0.1:65536" }, `listen: invalid address "127.0.0.1:65536": port must be a number from 0 to 65535`},
		{"listen/named port", func(c *Config) { c.Listen = "127.0.0.1:http" }, `listen: invalid address "127.0.0.1:http": port must be a number from 0 to 65535`},
		{"listen/bad host", func(c *Config) { c.Listen = "bad host:80" }, `listen: invalid address "bad host:80": invalid character ' ' in host name`},
		{"admin.listen/bad", func(c *Config) { c.Admin.Listen = "9090" }, `admin.listen: invalid address "9090": want host:port, e.g. "127.0.0.1:8080"`},
		{"admin.listen/same as listen", func(c *Config) { c.Admin.Listen = c.Listen }, `admin.listen: "127.0.0.1:8080" must not overlap listen "127.0.0.1:8080" (same port on the same or an all-interfaces address)`},
		{"admin.listen/all interfaces", func(c *Config) { c.Listen = ":9090" }, `admin.listen: "127.0.0.1:9090" must not overlap listen ":9090" (same port on the same or an all-interfaces address)`},
		{"admin.listen/localhost", func(c *Config) { c.Listen = "localhost:9090" }, `admin.listen: "127.0.0.1:9090" must not overlap listen "localhost:9090" (same port on the same or an all-interfaces address)`},
		{"admin.listen/other loopback address", func(c *Config) { c.Listen = "127.0.0.2:9090" }, ""},
		{"admin.listen/other port", func(c *Config) { c.Listen = ":9091" }, ""},
		{"admin.listen/both port 0", func(c *Config) { c.Listen, c.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0" }, ""},
		{"admin.token/set", func(c *Config) { c.Admin.Token = "s3cret" }, ""},

		// limits
		{"limits.rate/zero is unlimited", func(c *Config) { c.Limits.Rate = 0 }, ""},
		{"limits.rate/fraction", func(c *Config) { c.Limits.Rate = 0.5 }, ""},
		{"limits.rate/negative", func(c *Config) { c.Limits.Rate = -5 }, "limits.rate: must be >= 0, got -5"},
		{"limits.rate/NaN", func(c *Config) { c.Limits.Rate = math.NaN() }, "limits.rate: must be a finite number, got NaN"},
		{"limits.rate/Inf", func(c *Config) { c.Limits.Rate = math.Inf(1) }, "limits.rate: must be a finite number, got +Inf"},
		{"limits.burst/negative", func(c *Config) { c.Limits.Burst = -1 }, "limits.burst: must be >= 0, got -1"},
		{"limits.burst/zero with rate", func(c *Config) { c.Limits.Burst = 0 }, "limits.burst: must be >= 1 when rate > 0, got 0"},
		{"limits.burst/zero unlimited", func(c *Config) { c.Limits.Burst, c.Limits.Rate = 0, 0 }, ""},
		{"limits.concurrency/zero is unlimited", func(c *Config) { c.Limits.Concurrency = 0 }, ""},
		{"limits.concurrency/negative", func(c *Config) { c.Limits.Concurrency = -1 }, "limits.concurrency: must be >= 0 (0 = unlimited), got -1"},
		{"limits.queue_size/zero", func(c *Config) { c.Limits.QueueSize = 0 }, "limits.queue_size: must be >= 1, got 0"},
		{"limits.queue_size/one", func(c *Config) { c.Limits.QueueSize = 1 }, ""},
		{"limits.max_wait/zero", func(c *Config) { c.Limits.MaxWait = 0 }, "limits.max_wait: must be > 0, got 0s"},
		{"limits.max_wait/negative", func(c *Config) { c.Limits.MaxWait = -time.Second }, "limits.max_wait: must be > 0, got -1s"},
		{"limits.max_tunnels/zero", func(c *Config) { c.Limits.MaxTunnels = 0 }, "limits.max_tunnels: must be >= 1, got 0"},
		{"limits.reject_status/429", func(c *Config) { c.Limits.RejectStatus = 429 }, ""},
		{"limits.reject_status/500", func(c *Config) { c.Limits.RejectStatus = 500 }, "limits.reject_status: must be 503 or 429, got 500"},

		// hosts
		{"hosts/full", func(c *Config) {
			c.Hosts = []HostRule{
				{Match: "api.example.com", Rate: ptr(5.0), Burst: ptr(10), Concurrency: ptr(2)},
				{Match: "*.example.com:8443"},
				{Match: "10.0.0.1"},
				{Match: "[2001:db8::1]:443"},
				{Match: "2001:db8::2"},
				{Match: "under_score.example.com", Rate: ptr(0.0)},
			}
		}, ""},
		{"hosts.match/empty", host(HostRule{}), "hosts[1].match: must not be empty"},
		{"hosts.match/wildcard without domain", host(HostRule{Match: "*."}), `hosts[1].match: invalid pattern "*.": nothing after "*."`},
		{"hosts.match/bare star", host(HostRule{Match: "*"}), `hosts[1].match: invalid pattern "*": a wildcard needs a domain, e.g. "*.example.com"`},
		{"hosts.match/inner star", host(HostRule{Match: "api*.example.com"}), `hosts[1].match: invalid pattern "api*.example.com": "*" is only allowed as a leading "*."`},
		{"hosts.match/wildcard IP", host(HostRule{Match: "*.10.0.0.1"}), `hosts[1].match: invalid pattern "*.10.0.0.1": a wildcard cannot cover an IP address`},
		{"hosts.match/port 0", host(HostRule{Match: "api.example.com:0"}), `hosts[1].match: invalid pattern "api.example.com:0": port must be a number from 1 to 65535, got "0"`},
		{"hosts.match/port too big", host(HostRule{Match: "api.example.com:70000"}), `hosts[1].match: invalid pattern "api.example.com:70000": port must be a number from 1 to 65535, got "70000"`},
		{"hosts.match/empty port", host(HostRule{Match: "api.example.com:"}), `hosts[1].match: invalid pattern "api.example.com:": port must be a number from 1 to 65535, got ""`},
		{"hosts.match/port only", host(HostRule{Match: ":443"}), `hosts[1].match: invalid pattern ":443": empty host name`},
		{"hosts.match/trailing dot", host(HostRule{Match: "example.com."}), `hosts[1].match: invalid pattern "example.com.": host name must not end with "."`},
		{"hosts.match/empty label", host(HostRule{Match: "a..com"}), `hosts[1].match: invalid pattern "a..com": empty label in host name`},
		{"hosts.match/leading hyphen", host(HostRule{Match: "-a.com"}), `hosts[1].match: invalid pattern "-a.com": label "-a" starts or ends with "-"`},
		{"hosts.match/bad IPv4", host(HostRule{Match: "300.1.1.1"}), `hosts[1].match: invalid pattern "300.1.1.1": not a valid IPv4 address`},
		{"hosts.match/scheme", host(HostRule{Match: "https://api.example.com"}), `hosts[1].match: invalid pattern "https://api.example.com": want a host such as "api.example.com", not a URL or path`},
		{"hosts.match/IPv6 with port", host(HostRule{Match: "2001:db8::1:443x"}), `hosts[1].match: invalid pattern "2001:db8::1:443x": an IPv6 address with a port needs brackets, e.g. "[2001:db8::1]:443"`},
		{"hosts.match/path", host(HostRule{Match: "api.example.com/v1"}), `hosts[1].match: invalid pattern "api.example.com/v1": want a host such as "api.example.com", not a URL or path`},
		{"hosts.match/unclosed bracket", host(HostRule{Match: "[::1"}), `hosts[1].match: invalid pattern "[::1": missing "]"`},
		{"hosts.match/IPv6 zone", host(HostRule{Match: "fe80::1%eth0"}), `hosts[1].match: invalid pattern "fe80::1%eth0": IPv6 zones are not supported`},
		{"hosts.match/duplicate", host(HostRule{Match: "A.example.com"}), `hosts[1].match: "A.example.com" duplicates hosts[0].match; the first match wins, so this rule would never apply`},
		{"hosts.match/same host other port", host(HostRule{Match: "a.example.com:443"}), ""},
		// The metrics' reserved rule labels (docs/metrics.md, "Rule labels").
		{"hosts.match/global", host(HostRule{Match: "global"}), `hosts[1].match: "global" is reserved: rule="global" labels the quotas of limits.quotas in the metrics; write "global:<port>" for a host of that name`},
		{"hosts.match/Other", host(HostRule{Match: "Other"}), `hosts[1].match: "Other" is reserved: rule="other" labels destinations under no hosts rule in the metrics; write "other:<port>" for a host of that name`},
		{"hosts.match/global with port", host(HostRule{Match: "global:443"}), ""},
		{"hosts.match/other as a domain", host(HostRule{Match: "*.other"}), ""},
		{"hosts.match/global.example", host(HostRule{Match: "global.example"}), ""},
		{"hosts.rate/negative", host(HostRule{Match: "b.example.com", Rate: ptr(-1.0)}), "hosts[1].rate: must be >= 0 (0 or omitted = unlimited), got -1"},
		{"hosts.rate/NaN", host(HostRule{Match: "b.example.com", Rate: ptr(math.NaN())}), "hosts[1].rate: must be a finite number, got NaN"},
		{"hosts.burst/zero", host(HostRule{Match: "b.example.com", Burst: ptr(0)}), "hosts[1].burst: must be >= 1 (omit it for max(1, rate)), got 0"},
		{"hosts.concurrency/zero", host(HostRule{Match: "b.example.com", Concurrency: ptr(0)}), "hosts[1].concurrency: must be >= 1 (omit it for unlimited), got 0"},
		{"hosts.rate/max", host(HostRule{Match: "b.example.com", Rate: ptr(1e9)}), ""},
		{"hosts.rate/absurd", host(HostRule{Match: "b.example.com", Rate: ptr(1e300)}), "hosts[1].rate: must be <= 1e+09 (0 or omitted = unlimited), got 1e+300"},
		{"hosts.rate/+Inf", host(HostRule{Match: "b.example.com", Rate: ptr(math.Inf(1))}), "hosts[1].rate: must be a finite number, got +Inf"},
		{"hosts.burst/max", host(HostRule{Match: "b.example.com", Burst: ptr(1_000_000_000)}), ""},
		{"hosts.burst/absurd", host(HostRule{Match: "b.example.com", Burst: ptr(2_000_000_000)}), "hosts[1].burst: must be <= 1000000000, got 2000000000"},
		{"hosts.concurrency/max", host(HostRule{Match: "b.example.com", Concurrency: ptr(1_000_000)}), ""},
		{"hosts.concurrency/absurd", host(HostRule{Match: "b.example.com", Concurrency: ptr(2_000_000_000)}), "hosts[1].concurrency: must be <= 1000000 (omit it for unlimited), got 2000000000"},

		// priority
		{"priority.default/0", func(c *Config) { c.Priority.Default = 0 }, ""},
		{"priority.default/7", func(c *Config) { c.Priority.Default = 7 }, ""},
		{"priority.default/negative", func(c *Config) { c.Priority.Default = -1 }, "priority.default: must be 0 to 7, got -1"},
		{"priority.default/8", func(c *Config) { c.Priority.Default = 8 }, "priority.default: must be 0 to 7, got 8"},
		{"priority.header/empty", func(c *Config) { c.Priority.Header = "" }, "priority.header: must not be empty"},
		{"priority.header/space", func(c *Config) { c.Priority.Header = "X Priority" }, `priority.header: invalid header name "X Priority"`},
		{"priority.header/standard", func(c *Config) { c.Priority.Header = "priority" }, "priority.header: must not be Priority: the standard Priority header (RFC 9218) is read on its own and forwarded"},
		{"priority.header/authorization", func(c *Config) { c.Priority.Header = "authorization" }, "priority.header: must not be Authorization: proxyd removes this header from every request, and requests need it"},
		{"priority.header/hop-by-hop", func(c *Config) { c.Priority.Header = "Connection" }, "priority.header: must not be Connection: a hop-by-hop header, removed before proxyd could read it as a setting"},
		{"upstream.timeout_header/standard", func(c *Config) { c.Upstream.TimeoutHeader = "Priority" }, "upstream.timeout_header: must not be Priority: the standard Priority header (RFC 9218) is read on its own and forwarded"},
		{"upstream.timeout_header/host", func(c *Config) { c.Upstream.TimeoutHeader = "host" }, "upstream.timeout_header: must not be Host: proxyd removes this header from every request, and requests need it"},
		{"priority.header/timeout header", func(c *Config) { c.Priority.Header = "x-proxy-timeout" }, `priority.header: must differ from upstream.timeout_header, both are "x-proxy-timeout"`},
		{"priority.aging/positive", func(c *Config) { c.Priority.Aging = time.Second }, ""},
		{"priority.aging/negative", func(c *Config) { c.Priority.Aging = -time.Second }, "priority.aging: must be >= 0 (0s = strict priority), got -1s"},
		{"priority.reserve/zero", func(c *Config) { c.Priority.Reserve = 0 }, ""},
		{"priority.reserve/negative", func(c *Config) { c.Priority.Reserve = -1 }, "priority.reserve: must be >= 0 (0 = no reserve), got -1"},
		{"priority.rules/valid", validRule, ""},
		{"priority.rules/every field", rule(PriorityRule{
			Host: "*.example.com", PathPrefix: "/v1/", Method: "POST", ClientCIDR: "10.0.0.0/8",
			Header: &HeaderMatch{Name: "X-Kind", Value: "batch job"}, Priority: ptr(7),
		}), ""},
		{"priority.rules/IPv6 CIDR", rule(PriorityRule{ClientCIDR: "2001:db8::/32", Priority: ptr(0)}), ""},
		{"priority.rules/custom method", rule(PriorityRule{Method: "PROPFIND", Priority: ptr(0)}), ""},
		{"priority.rules.priority/missing", rule(PriorityRule{Host: "b.example.com"}), "priority.rules[1].priority: is required (0 to 7)"},
		{"priority.rules.priority/8", rule(PriorityRule{Host: "b.example.com", Priority: ptr(8)}), "priority.rules[1].priority: must be 0 to 7, got 8"},
		{"priority.rules.priority/negative", rule(PriorityRule{Host: "b.example.com", Priority: ptr(-1)}), "priority.rules[1].priority: must be 0 to 7, got -1"},
		{"priority.rules/no matcher", rule(PriorityRule{Priority: ptr(1)}), "priority.rules[1]: needs at least one of host, path_prefix, method, client_cidr, header, user"},
		{"priority.rules.host/bad", rule(PriorityRule{Host: "*.", Priority: ptr(1)}), `priority.rules[1].host: invalid pattern "*.": nothing after "*."`},
		{"priority.rules.path_prefix/relative", rule(PriorityRule{PathPrefix: "v1", Priority: ptr(1)}), `priority.rules[1].path_prefix: must start with "/", got "v1"`},
		{"priority.rules.method/space", rule(PriorityRule{Method: "GE T", Priority: ptr(1)}), `priority.rules[1].method: invalid method "GE T"`},
		{"priority.rules.client_cidr/short", rule(PriorityRule{ClientCIDR: "10.0.0/8", Priority: ptr(1)}), `priority.rules[1].client_cidr: invalid CIDR "10.0.0/8": IPv4 address too short`},
		{"priority.rules.client_cidr/no length", rule(PriorityRule{ClientCIDR: "10.1.2.3", Priority: ptr(1)}), `priority.rules[1].client_cidr: invalid CIDR "10.1.2.3": missing prefix length, e.g. "10.1.2.3/32"`},
		{"priority.rules.client_cidr/host bits", rule(PriorityRule{ClientCIDR: "10.1.2.3/8", Priority: ptr(1)}), `priority.rules[1].client_cidr: invalid CIDR "10.1.2.3/8": host bits are set, did you mean "10.0.0.0/8"?`},
		{"priority.rules.client_cidr/bad length", rule(PriorityRule{ClientCIDR: "10.0.0.0/33", Priority: ptr(1)}), `priority.rules[1].client_cidr: invalid CIDR "10.0.0.0/33": prefix length out of range`},
		{"priority.rules.header.name/empty", rule(PriorityRule{Header: &HeaderMatch{Value: "x"}, Priority: ptr(1)}), "priority.rules[1].header.name: must not be empty"},
		{"priority.rules.header.name/colon", rule(PriorityRule{Header: &HeaderMatch{Name: "X-A:", Value: "x"}, Priority: ptr(1)}), `priority.rules[1].header.name: invalid header name "X-A:"`},
		{"priority.rules.header.value/empty", rule(PriorityRule{Header: &HeaderMatch{Name: "X-A"}, Priority: ptr(1)}), "priority.rules[1].header.value: is required (the exact value to match)"},
		{"priority.rules.header.value/newline", rule(PriorityRule{Header: &HeaderMatch{Name: "X-A", Value: "a\nb"}, Priority: ptr(1)}), `priority.rules[1].header.value: invalid header value "a\nb"`},

		// upstream
		{"upstream.timeout/zero", func(c *Config) { c.Upstream.Timeout = 0 }, "upstream.timeout: must be > 0, got 0s"},
		{"upstream.max_timeout/equal", func(c *Config) { c.Upstream.MaxTimeout = c.Upstream.Timeout }, ""},
		{"upstream.max_timeout/below timeout", func(c *Config) { c.Upstream.MaxTimeout = time.Second }, "upstream.max_timeout: must be >= upstream.timeout (30s), got 1s"},
		{"upstream.max_timeout/zero", func(c *Config) { c.Upstream.MaxTimeout = 0 }, "upstream.max_timeout: must be > 0, got 0s"},
		{"upstream.timeout_header/empty", func(c *Config) { c.Upstream.TimeoutHeader = "" }, "upstream.timeout_header: must not be empty"},
		{"upstream.timeout_header/bad", func(c *Config) { c.Upstream.TimeoutHeader = "X(Timeout)" }, `upstream.timeout_header: invalid header name "X(Timeout)"`},
		{"upstream.dial_timeout/zero", func(c *Config) { c.Upstream.DialTimeout = 0 }, "upstream.dial_timeout: must be > 0, got 0s"},
		{"upstream.max_idle_conns_per_host/zero", func(c *Config) { c.Upstream.MaxIdleConnsPerHost = 0 }, ""},
		{"upstream.max_idle_conns_per_host/negative", func(c *Config) { c.Upstream.MaxIdleConnsPerHost = -1 }, "upstream.max_idle_conns_per_host: must be >= 0, got -1"},
		{"upstream.retry.attempts/10", func(c *Config) { c.Upstream.Retry.Attempts = 10 }, ""},
		{"upstream.retry.attempts/11", func(c *Config) { c.Upstream.Retry.Attempts = 11 }, "upstream.retry.attempts: must be 0 to 10, got 11"},
		{"upstream.retry.attempts/negative", func(c *Config) { c.Upstream.Retry.Attempts = -1 }, "upstream.retry.attempts: must be 0 to 10, got -1"},
		{"upstream.retry.on/any 5xx", func(c *Config) { c.Upstream.Retry.On = []string{"500", "599", "429"} }, ""},
		{"upstream.retry.on/empty", func(c *Config) { c.Upstream.Retry.On = nil }, ""},
		{"upstream.retry.on/timeout", func(c *Config) { c.Upstream.Retry.On = []string{"429", "timeout"} }, `upstream.retry.on[1]: must be "connect-failure", "429" or a 5xx status code, got "timeout"`},
		{"upstream.retry.on/404", func(c *Config) { c.Upstream.Retry.On = []string{"404"} }, `upstream.retry.on[0]: must be "connect-failure", "429" or a 5xx status code, got "404"`},
		{"upstream.retry.on/5xx", func(c *Config) { c.Upstream.Retry.On = []string{"5xx"} }, `upstream.retry.on[0]: must be "connect-failure", "429" or a 5xx status code, got "5xx"`},
		{"upstream.retry.on/upper case", func(c *Config) { c.Upstream.Retry.On = []string{"Connect-Failure"} }, `upstream.retry.on[0]: must be "connect-failure", "429" or a 5xx status code, got "Connect-Failure"`},
		{"upstream.retry.on/duplicate", func(c *Config) { c.Upstream.Retry.On = []string{"429", "503", "429"} }, `upstream.retry.on[2]: "429" is listed twice`},
		{"upstream.retry.backoff_base/zero", func(c *Config) { c.Upstream.Retry.BackoffBase = 0 }, "upstream.retry.backoff_base: must be > 0, got 0s"},
		{"upstream.retry.backoff_max/below base", func(c *Config) { c.Upstream.Retry.BackoffMax = time.Millisecond }, "upstream.retry.backoff_max: must be >= upstream.retry.backoff_base (100ms), got 1ms"},
		{"upstream.retry.backoff_max/equal", func(c *Config) { c.Upstream.Retry.BackoffMax = c.Upstream.Retry.BackoffBase }, ""},
		{"upstream.retry.budget/0", func(c *Config) { c.Upstream.Retry.Budget = 0 }, ""},
		{"upstream.retry.budget/1", func(c *Config) { c.Upstream.Retry.Budget = 1 }, ""},
		{"upstream.retry.budget/negative", func(c *Config) { c.Upstream.Retry.Budget = -0.1 }, "upstream.retry.budget: must be between 0 and 1, got -0.1"},
		{"upstream.retry.budget/above 1", func(c *Config) { c.Upstream.Retry.Budget = 1.5 }, "upstream.retry.budget: must be between 0 and 1, got 1.5"},
		{"upstream.retry.budget/NaN", func(c *Config) { c.Upstream.Retry.Budget = math.NaN() }, "upstream.retry.budget: must be between 0 and 1, got NaN"},
		{"upstream.max_pause/zero", func(c *Config) { c.Upstream.MaxPause = 0 }, "upstream.max_pause: must be > 0, got 0s"},

		// routes
		{"routes/valid", func(c *Config) {
			c.Routes = []Route{
				{Prefix: "/github/", Upstream: "https://api.github.com", StripPrefix: true},
				{Prefix: "/x/", Upstream: "http://api.x.com:8080/v1"},
				{Prefix: "/", Upstream: "https://fallback.example.com/"},
			}
		}, ""},
		{"routes.prefix/relative", route(Route{Prefix: "github", Upstream: "https://a.example.com"}), `routes[0].prefix: must start with "/", got "github"`},
		{"routes.prefix/empty", route(Route{Upstream: "https://a.example.com"}), `routes[0].prefix: must start with "/", got ""`},
		{"routes.prefix/query", route(Route{Prefix: "/a?b", Upstream: "https://a.example.com"}), `routes[0].prefix: must be a path without query or fragment, got "/a?b"`},
		{"routes.prefix/duplicate", func(c *Config) {
			c.Routes = []Route{{Prefix: "/a", Upstream: "https://a.example.com"}, {Prefix: "/a", Upstream: "https://b.example.com"}}
		}, `routes[1].prefix: "/a" duplicates routes[0].prefix`},
		{"routes.upstream/empty", route(Route{Prefix: "/a"}), "routes[0].upstream: is required (an absolute http or https URL)"},
		{"routes.upstream/ftp", route(Route{Prefix: "/a", Upstream: "ftp://a.example.com"}), `routes[0].upstream: must be an absolute http or https URL, got "ftp://a.example.com"`},
		{"routes.upstream/relative", route(Route{Prefix: "/a", Upstream: "/v1"}), `routes[0].upstream: must be an absolute http or https URL, got "/v1"`},
		{"routes.upstream/no scheme", route(Route{Prefix: "/a", Upstream: "api.example.com"}), `routes[0].upstream: must be an absolute http or https URL, got "api.example.com"`},
		{"routes.upstream/no host", route(Route{Prefix: "/a", Upstream: "https:///v1"}), `routes[0].upstream: must have a host, got "https:///v1"`},
		{"routes.upstream/query", route(Route{Prefix: "/a", Upstream: "https://a.example.com/v1?k=1"}), `routes[0].upstream: must not have a query or fragment, got "https://a.example.com/v1?k=1"`},
		{"routes.upstream/unparsable", route(Route{Prefix: "/a", Upstream: "https://a b/"}), `routes[0].upstream: invalid URL "https://a b/": invalid character " " in host name`},

		// log, shutdown_timeout
		{"log.level/debug", func(c *Config) { c.Log.Level = "debug" }, ""},
		{"log.level/verbose", func(c *Config) { c.Log.Level = "verbose" }, `log.level: must be one of debug, info, warn, error; got "verbose"`},
		{"log.level/upper case", func(c *Config) { c.Log.Level = "INFO" }, `log.level: must be one of debug, info, warn, error; got "INFO"`},
		{"log.format/console", func(c *Config) { c.Log.Format = "console" }, ""},
		{"log.format/text", func(c *Config) { c.Log.Format = "text" }, `log.format: must be json or console, got "text"`},
		{"shutdown_timeout/zero", func(c *Config) { c.ShutdownTimeout = 0 }, ""},
		{"shutdown_timeout/negative", func(c *Config) { c.ShutdownTimeout = -time.Second }, "shutdown_timeout: must be >= 0, got -1s"},
		{"client_write_timeout/zero", func(c *Config) { c.ClientWriteTimeout = 0 }, ""},
		{"client_write_timeout/negative", func(c *Config) { c.ClientWriteTimeout = -time.Second }, "client_write_timeout: must be >= 0 (0 = no bound), got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %q, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate() = %v\nwant %s", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(tt.want, fe.Key+": ") {
				t.Fatalf("errors.As(FieldError) gave %+v, want the key of %q", fe, tt.want)
			}
		})
	}
}

func TestValidateCollectsEveryProblem(t *testing.T) {
	c := Default()
	c.Limits.Rate = -5
	c.Hosts = []HostRule{{Match: "ok.example.com"}, {Match: "*."}}
	c.Priority.Rules = []PriorityRule{{ClientCIDR: "10.0.0/8", Priority: ptr(1)}}
	c.Log.Level = "loud"
	err := c.Validate()
	want := []string{
		"limits.rate: must be >= 0, got -5",
		`hosts[1].match: invalid pattern "*.": nothing after "*."`,
		`priority.rules[0].client_cidr: invalid CIDR "10.0.0/8": IPv4 address too short`,
		`log.level: must be one of debug, info, warn, error; got "loud"`,
	}
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Fatalf("Validate() lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		keys = append(keys, fe.Key)
	}
	if wantKeys := []string{"limits.rate", "hosts[1].match", "priority.rules[0].client_cidr", "log.level"}; !slices.Equal(keys, wantKeys) {
		t.Errorf("keys = %q, want %q", keys, wantKeys)
	}
}

// TestLimitsValidate: the admin API reports fields without "limits.".
func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Limits)
		want   string
	}{
		{"defaults", func(*Limits) {}, ""},
		{"rate", func(l *Limits) { l.Rate = -5 }, "rate: must be >= 0, got -5"},
		{"burst", func(l *Limits) { l.Burst = 0 }, "burst: must be >= 1 when rate > 0, got 0"},
		{"concurrency", func(l *Limits) { l.Concurrency = -1 }, "concurrency: must be >= 0 (0 = unlimited), got -1"},
		{"queue_size", func(l *Limits) { l.QueueSize = 0 }, "queue_size: must be >= 1, got 0"},
		{"max_wait", func(l *Limits) { l.MaxWait = 0 }, "max_wait: must be > 0, got 0s"},
		{"max_tunnels", func(l *Limits) { l.MaxTunnels = 0 }, "max_tunnels: must be >= 1, got 0"},
		{"reject_status", func(l *Limits) { l.RejectStatus = 200 }, "reject_status: must be 503 or 429, got 200"},
		{"two", func(l *Limits) { l.Rate, l.QueueSize = -1, 0 }, "rate: must be >= 0, got -1\nqueue_size: must be >= 1, got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Default().Limits
			tt.mutate(&l)
			err := l.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %q, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestValidateHosts(t *testing.T) {
	if err := ValidateHosts(nil); err != nil {
		t.Errorf("ValidateHosts(nil) = %v", err)
	}
	err := ValidateHosts([]HostRule{{Match: "a.example.com"}, {Match: "b.example.com", Burst: ptr(0)}})
	if want := "hosts[1].burst: must be >= 1 (omit it for max(1, rate)), got 0"; err == nil || err.Error() != want {
		t.Errorf("ValidateHosts() = %v, want %q", err, want)
	}
	// The global upper bounds apply to host rules too, each named.
	err = ValidateHosts([]HostRule{{Match: "a.example.com", Rate: ptr(1e300), Burst: ptr(2_000_000_000), Concurrency: ptr(2_000_000_000)}})
	want := "hosts[0].rate: must be <= 1e+09 (0 or omitted = unlimited), got 1e+300\n" +
		"hosts[0].burst: must be <= 1000000000, got 2000000000\n" +
		"hosts[0].concurrency: must be <= 1000000 (omit it for unlimited), got 2000000000"
	if err == nil || err.Error() != want {
		t.Errorf("ValidateHosts() = %v, want %q", err, want)
	}
}

func TestParseHostPattern(t *testing.T) {
	tests := []struct {
		in   string
		want HostPattern
		str  string
	}{
		{"api.example.com", HostPattern{Host: "api.example.com"}, "api.example.com"},
		{"API.Example.COM:8443", HostPattern{Host: "api.example.com", Port: 8443}, "api.example.com:8443"},
		{"*.example.com", HostPattern{Host: "example.com", Wildcard: true}, "*.example.com"},
		{"*.example.com:443", HostPattern{Host: "example.com", Wildcard: true, Port: 443}, "*.example.com:443"},
		{"localhost", HostPattern{Host: "localhost"}, "localhost"},
		{"10.0.0.1:80", HostPattern{Host: "10.0.0.1", Port: 80}, "10.0.0.1:80"},
		{"2001:DB8::1", HostPattern{Host: "2001:db8::1"}, "2001:db8::1"},
		{"[2001:db8::1]", HostPattern{Host: "2001:db8::1"}, "2001:db8::1"},
		{"[2001:db8::1]:443", HostPattern{Host: "2001:db8::1", Port: 443}, "[2001:db8::1]:443"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseHostPattern(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseHostPattern(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			if again, err := ParseHostPattern(got.String()); err != nil || again != got {
				t.Errorf("ParseHostPattern(String()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
	for _, bad := range []string{"", "*", "*.", "a.*.com", "[::1]x", "[10.0.0.1]:80", "a.com:-1", "a.com:+1", "a.com:1:2x"} {
		if p, err := ParseHostPattern(bad); err == nil {
			t.Errorf("ParseHostPattern(%q) = %+v, want an error", bad, p)
		}
	}
}

func TestHostPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		host    string
		port    int
		want    bool
	}{
		{"api.example.com", "api.example.com", 443, true},
		{"api.example.com", "API.example.com", 80, true},
		{"api.example.com", "api.example.com.", 80, true},
		{"api.example.com", "x.api.example.com", 443, false},
		{"api.example.com", "example.com", 443, false},
		{"api.example.com:8443", "api.example.com", 8443, true},
		{"api.example.com:8443", "api.example.com", 443, false},
		{"*.example.com", "api.example.com", 443, true},
		{"*.example.com", "a.b.example.com", 443, true},
		{"*.example.com", "example.com", 443, false},
		{"*.example.com", "badexample.com", 443, false},
		{"*.example.com", ".example.com", 443, false},
		{"*.example.com:443", "api.example.com", 80, false},
		{"10.0.0.1", "10.0.0.1", 80, true},
		{"[2001:db8::1]:443", "2001:db8::1", 443, true},
	}
	for _, tt := range tests {
		p, err := ParseHostPattern(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match(tt.host, tt.port); got != tt.want {
			t.Errorf("%q.Match(%q, %d) = %v, want %v", tt.pattern, tt.host, tt.port, got, tt.want)
		}
	}
}

func TestKeys(t *testing.T) {
	want := []string{
		"listen",
		"admin.listen",
		"admin.token",
		"admin.allowed_hosts",
		"limits.rate",
		"limits.burst",
		"limits.concurrency",
		"limits.queue_size",
		"limits.max_wait",
		"limits.max_tunnels",
		"limits.reject_status",
		"limits.store",
		"limits.quotas",
		"limits.shared_concurrency",
		"hosts",
		"priority.default",
		"priority.header",
		"priority.trust_headers",
		"priority.aging",
		"priority.reserve",
		"priority.rules",
		"upstream.timeout",
		"upstream.max_timeout",
		"upstream.timeout_header",
		"upstream.dial_timeout",
		"upstream.max_idle_conns_per_host",
		"upstream.retry.attempts",
		"upstream.retry.on",
		"upstream.retry.backoff_base",
		"upstream.retry.backoff_max",
		"upstream.retry.budget",
		"upstream.max_pause",
		"routes",
		"egress.allow",
		"egress.deny",
		"egress.connect_ports",
		"tls.intercept",
		"tls.ca_cert",
		"tls.ca_key",
		"tls.upstream_ca",
		"tls.cert_cache_size",
		"auth.htpasswd",
		"clients",
		"fairness",
		"redis.url",
		"redis.key_prefix",
		"redis.timeout",
		"redis.on_error",
		"redis.sentinel.master",
		"redis.sentinel.addrs",
		"redis.sentinel.password",
		"redis.cluster.addrs",
		"redis.username",
		"redis.password",
		"redis.tls.ca_cert",
		"redis.tls.cert",
		"redis.tls.key",
		"redis.slot_lease",
		"log.level",
		"log.format",
		"tracing.otlp_endpoint",
		"tracing.otlp_protocol",
		"tracing.sample_ratio",
		"shutdown_timeout",
		"client_write_timeout",
	}
	if got := Keys(); !slices.Equal(got, want) {
		t.Errorf("Keys() =\n%q\nwant\n%q", got, want)
	}
}
