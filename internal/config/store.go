package config

import (
	"net/url"
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
}

func (c *Config) checkStore(p *problems) {
	switch c.Limits.Store {
	case StoreMemory, StoreRedis:
	default:
		p.add("limits.store", "must be memory or redis, got %q", c.Limits.Store)
	}
	r := c.Redis
	if c.Limits.Store == StoreRedis && r.URL == "" {
		p.add("redis.url", "is required with limits.store: redis (redis://host:6379/0)")
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
}

// redactURL shows a URL without its password.
func redactURL(u *url.URL) string {
	return u.Redacted()
}

// RedactedURL is redis.url without its password, for logs and the API.
func (r Redis) RedactedURL() string {
	u, err := url.Parse(r.URL)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
