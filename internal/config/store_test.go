package config

import (
	"strings"
	"testing"
)

// The ways to reach Redis: exactly one of redis.url, redis.sentinel.* and
// redis.cluster.addrs with limits.store: redis; every error names the key
// and never shows a password.
func TestValidateRedis(t *testing.T) {
	shared := func(f func(r *Redis)) func(*Config) {
		return func(c *Config) { c.Limits.Store = StoreRedis; f(&c.Redis) }
	}
	sentinel := func(r *Redis) {
		r.Sentinel = RedisSentinel{Master: "mymaster", Addrs: []string{"10.0.0.1:26379", "[::1]:26379"}}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"url", shared(func(r *Redis) { r.URL = "redis://u:secret@127.0.0.1:6379/0" }), ""},
		{"none", shared(func(r *Redis) {}),
			"redis.url: is required with limits.store: redis (redis://host:6379/0), unless redis.sentinel.master and redis.sentinel.addrs or redis.cluster.addrs are given"},
		{"sentinel", shared(sentinel), ""},
		{"sentinel with password and ACL user", shared(func(r *Redis) { sentinel(r); r.Sentinel.Password = "s"; r.Username, r.Password = "proxyd", "p" }), ""},
		{"sentinel without master", shared(func(r *Redis) { r.Sentinel.Addrs = []string{"127.0.0.1:26379"} }),
			"redis.sentinel.master: is required with redis.sentinel.addrs or redis.sentinel.password (the name the sentinels monitor)"},
		{"sentinel without addrs", shared(func(r *Redis) { r.Sentinel.Master = "m" }),
			"redis.sentinel.addrs: is required with redis.sentinel.master (host:port of each sentinel)"},
		{"sentinel bad addr", shared(func(r *Redis) { sentinel(r); r.Sentinel.Addrs = append(r.Sentinel.Addrs, "127.0.0.1") }),
			`redis.sentinel.addrs[2]: want host:port, got "127.0.0.1"`},
		{"cluster", shared(func(r *Redis) { r.Cluster.Addrs = []string{"127.0.0.1:7000", "127.0.0.1:7001"} }), ""},
		{"cluster bad port", shared(func(r *Redis) { r.Cluster.Addrs = []string{"127.0.0.1:70000"} }),
			`redis.cluster.addrs[0]: port must be 1-65535, got "70000"`},
		{"url and cluster", shared(func(r *Redis) { r.URL = "redis://127.0.0.1:6379/0"; r.Cluster.Addrs = []string{"127.0.0.1:7000"} }),
			"redis.url: give exactly one of redis.url, redis.sentinel.* and redis.cluster.addrs, got redis.url and redis.cluster.addrs"},
		{"sentinel and cluster", shared(func(r *Redis) { sentinel(r); r.Cluster.Addrs = []string{"127.0.0.1:7000"} }),
			"redis.sentinel.*: give exactly one of redis.url, redis.sentinel.* and redis.cluster.addrs, got redis.sentinel.* and redis.cluster.addrs"},
		{"all three, memory store", func(c *Config) {
			sentinel(&c.Redis)
			c.Redis.URL = "redis://127.0.0.1:6379/0"
			c.Redis.Cluster.Addrs = []string{"127.0.0.1:7000"}
		}, "redis.url: give exactly one of redis.url, redis.sentinel.* and redis.cluster.addrs, got redis.url and redis.sentinel.* and redis.cluster.addrs"},
		{"tls with rediss", shared(func(r *Redis) { r.URL = "rediss://127.0.0.1:6380/0"; r.TLS.CACert = "ca.pem" }), ""},
		{"tls with redis://", shared(func(r *Redis) { r.URL = "redis://:secret@127.0.0.1:6380/0"; r.TLS.CACert = "ca.pem" }),
			`redis.url: redis.tls.* is set: use rediss:// (TLS), got "redis://:xxxxx@127.0.0.1:6380/0"`},
		{"tls cert without key", shared(func(r *Redis) { r.URL = "rediss://127.0.0.1:6380/0"; r.TLS.Cert = "c.pem" }),
			"redis.tls.cert: redis.tls.cert and redis.tls.key go together (a client certificate and its key)"},
		{"tls with cluster", shared(func(r *Redis) {
			r.Cluster.Addrs = []string{"127.0.0.1:7000"}
			r.TLS = RedisTLS{CACert: "ca", Cert: "c", Key: "k"}
		}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
			if strings.Contains(got, "secret") {
				t.Fatalf("the error shows the password: %s", got)
			}
		})
	}
}

// RedactedURL never shows a password, and names Sentinel and Cluster
// set-ups by their addresses.
func TestRedisRedacted(t *testing.T) {
	for _, tt := range []struct {
		r    Redis
		want string
	}{
		{Redis{URL: "rediss://proxyd:secret@redis.example:6380/1"}, "rediss://proxyd:xxxxx@redis.example:6380/1"},
		{Redis{Sentinel: RedisSentinel{Master: "m", Addrs: []string{"a:1", "b:2"}, Password: "secret"}, Password: "secret"}, "sentinel m@a:1,b:2"},
		{Redis{Cluster: RedisCluster{Addrs: []string{"a:1"}}, Password: "secret"}, "cluster a:1"},
	} {
		if got := tt.r.RedactedURL(); got != tt.want {
			t.Errorf("RedactedURL() = %q, want %q", got, tt.want)
		}
	}
}
