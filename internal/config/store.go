package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Values of limits.store.
const (
	StoreMemory = "memory"
	StoreRedis  = "redis"
)

// Values of redis.on_error.
const (
	OnErrorLocal  = "local"
	OnErrorOpen   = "open"
	OnErrorClosed = "closed"
)

// Redis configures the shared limiter store (docs/configuration.md, "Shared quota"; docs/shared-quota.md).
type Redis struct {
	// URL is redis://[user:password@]host:port/db or rediss:// (TLS);
	// required with limits.store: redis.
	URL string `mapstructure:"url" yaml:"url"`
	// KeyPrefix: replicas with the same prefix share their buckets. Keys
	// are "{prefix}:…" so that Redis Cluster keeps them in one slot.
	KeyPrefix string `mapstructure:"key_prefix" yaml:"key_prefix"`
	// Timeout is the deadline of one call to the store.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout"`
	// OnError is what a replica does while the store cannot be reached:
	// local (rate / replicas, locally), open (the full rate, locally) or
	// closed (nothing is admitted).
	OnError string `mapstructure:"on_error" yaml:"on_error"`
	// Sentinel: the master's name and the sentinels' host:port addresses
	// (proxyd follows failovers); instead of URL.
	Sentinel RedisSentinel `mapstructure:"sentinel" yaml:"sentinel"`
	// Cluster: seed nodes of a Redis Cluster; instead of URL.
	Cluster RedisCluster `mapstructure:"cluster" yaml:"cluster"`
	// Username and Password are ACL credentials (also accepted in URL,
	// which they override); never logged.
	Username string `mapstructure:"username" yaml:"username"`
	Password string `mapstructure:"password" yaml:"password"`
	// TLS: PEM files for a private CA and client certificates.
	TLS RedisTLS `mapstructure:"tls" yaml:"tls"`
	// SlotLease is how long the store keeps a replica's slots of a shared
	// concurrency cap without hearing from it (limits.shared_concurrency):
	// a replica that dies gives its slots back after at most this long.
	SlotLease time.Duration `mapstructure:"slot_lease" yaml:"slot_lease"`
}

// RedisSentinel is redis.sentinel (docs/shared-quota.md, "Highly available Redis").
type RedisSentinel struct {
	Master string   `mapstructure:"master" yaml:"master"`
	Addrs  []string `mapstructure:"addrs" yaml:"addrs"`
	// Password of the sentinels themselves (requirepass in sentinel.conf).
	Password string `mapstructure:"password" yaml:"password"`
}

// RedisCluster is redis.cluster.
type RedisCluster struct {
	Addrs []string `mapstructure:"addrs" yaml:"addrs"`
}

// RedisTLS is redis.tls: with any file set, every connection to Redis
// (and to the sentinels) uses TLS.
type RedisTLS struct {
	// CACert: PEM roots that verify the servers instead of the system's.
	CACert string `mapstructure:"ca_cert" yaml:"ca_cert"`
	// Cert and Key: a client certificate (both or neither).
	Cert string `mapstructure:"cert" yaml:"cert"`
	Key  string `mapstructure:"key" yaml:"key"`
}

// Enabled reports whether any redis.tls file is set.
func (t RedisTLS) Enabled() bool { return t.CACert != "" || t.Cert != "" || t.Key != "" }

// Sources lists the ways to reach Redis that are set: "redis.url",
// "redis.sentinel.*", "redis.cluster.addrs" (exactly one is valid with
// limits.store: redis).
func (r Redis) Sources() []string {
	var s []string
	if r.URL != "" {
		s = append(s, "redis.url")
	}
	if r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0 || r.Sentinel.Password != "" {
		s = append(s, "redis.sentinel.*")
	}
	if len(r.Cluster.Addrs) > 0 {
		s = append(s, "redis.cluster.addrs")
	}
	return s
}

func (c *Config) checkStore(p *problems) {
	switch c.Limits.Store {
	case StoreMemory, StoreRedis:
	default:
		p.add("limits.store", "must be memory or redis, got %q", c.Limits.Store)
	}
	r := c.Redis
	src := r.Sources()
	if c.Limits.Store == StoreRedis && len(src) == 0 {
		p.add("redis.url", "is required with limits.store: redis (redis://host:6379/0), unless redis.sentinel.master and redis.sentinel.addrs or redis.cluster.addrs are given")
	}
	if len(src) > 1 {
		p.add(src[0], "give exactly one of redis.url, redis.sentinel.* and redis.cluster.addrs, got %s", strings.Join(src, " and "))
	}
	if s := r.Sentinel; s.Master != "" || len(s.Addrs) > 0 || s.Password != "" {
		if s.Master == "" {
			p.add("redis.sentinel.master", "is required with redis.sentinel.addrs or redis.sentinel.password (the name the sentinels monitor)")
		}
		if len(s.Addrs) == 0 {
			p.add("redis.sentinel.addrs", "is required with redis.sentinel.master (host:port of each sentinel)")
		}
		checkHostPorts(p, "redis.sentinel.addrs", s.Addrs)
	}
	checkHostPorts(p, "redis.cluster.addrs", r.Cluster.Addrs)
	if (r.TLS.Cert == "") != (r.TLS.Key == "") {
		p.add("redis.tls.cert", "redis.tls.cert and redis.tls.key go together (a client certificate and its key)")
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		switch {
		case err != nil:
			p.add("redis.url", "invalid URL: %v", lastReason(err))
		case u.Scheme != "redis" && u.Scheme != "rediss":
			p.add("redis.url", "scheme must be redis or rediss, got %q", u.Scheme)
		case u.Host == "":
			p.add("redis.url", "needs a host:port, got %q", redactURL(u))
		case u.Scheme == "redis" && r.TLS.Enabled():
			p.add("redis.url", "redis.tls.* is set: use rediss:// (TLS), got %q", redactURL(u))
		}
	}
	switch {
	case r.KeyPrefix == "":
		p.add("redis.key_prefix", "must not be empty")
	case strings.ContainsAny(r.KeyPrefix, "{} \t\r\n"):
		p.add("redis.key_prefix", "must not contain braces or blanks (it becomes the {prefix} hash tag), got %q", r.KeyPrefix)
	}
	if r.Timeout <= 0 {
		p.add("redis.timeout", "must be > 0, got %v", r.Timeout)
	}
	switch r.OnError {
	case OnErrorLocal, OnErrorOpen, OnErrorClosed:
	default:
		p.add("redis.on_error", "must be local, open or closed, got %q", r.OnError)
	}
	switch {
	case r.SlotLease < minSlotLease:
		p.add("redis.slot_lease", "must be at least %v, got %v", minSlotLease, r.SlotLease)
	case c.Limits.Store == StoreRedis && r.SlotLease < 10*r.Timeout:
		// A replica renews its slots at every call (every 100 ms at
		// least): one slow call must not lose them.
		p.add("redis.slot_lease", "must be at least 10 × redis.timeout (%v), got %v", 10*r.Timeout, r.SlotLease)
	}
	checkSharedConcurrency(p, c.Limits.Store, c.Limits, c.Hosts)
}

// minSlotLease is the shortest redis.slot_lease.
const minSlotLease = time.Second

// CheckSharedConcurrency refuses limits.shared_concurrency and
// hosts[].shared_concurrency without the shared store (store is
// limits.store): a fleet-wide cap needs one. The admin API runs it on a
// PATCH or PUT of the hosts rules; the error names each key.
func CheckSharedConcurrency(store string, l Limits, hosts []HostRule) error {
	var p problems
	checkSharedConcurrency(&p, store, l, hosts)
	return p.err()
}

func checkSharedConcurrency(p *problems, store string, l Limits, hosts []HostRule) {
	if store == StoreRedis {
		return
	}
	if l.SharedConcurrency {
		p.add("limits.shared_concurrency", "needs limits.store: redis (a fleet-wide cap is kept in the shared store), got limits.store: %s", store)
	}
	for i, h := range hosts {
		if h.SharedConcurrency {
			p.add(fmt.Sprintf("hosts[%d].shared_concurrency", i), "needs limits.store: redis (a fleet-wide cap is kept in the shared store), got limits.store: %s", store)
		}
	}
}

// checkHostPorts checks a list of host:port addresses.
func checkHostPorts(p *problems, key string, addrs []string) {
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			p.add(fmt.Sprintf("%s[%d]", key, i), "want host:port, got %q", a)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.add(fmt.Sprintf("%s[%d]", key, i), "port must be 1-65535, got %q", port)
		}
	}
}

// redactURL shows a URL without its password.
func redactURL(u *url.URL) string {
	return u.Redacted()
}

// RedactedURL is redis.url without its password, for logs and the API;
// with Sentinel or Cluster, the master's name and the addresses.
func (r Redis) RedactedURL() string {
	switch {
	case r.URL == "" && len(r.Cluster.Addrs) > 0:
		return "cluster " + strings.Join(r.Cluster.Addrs, ",")
	case r.URL == "" && r.Sentinel.Master != "":
		return "sentinel " + r.Sentinel.Master + "@" + strings.Join(r.Sentinel.Addrs, ",")
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
