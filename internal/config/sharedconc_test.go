package config

import (
	"testing"
	"time"
)

// limits.shared_concurrency and hosts[].shared_concurrency need the
// shared store, and redis.slot_lease a sane length; each error names its
// key and the reason.
func TestValidateSharedConcurrency(t *testing.T) {
	conc := 4
	rule := HostRule{Match: "api.example.com", Concurrency: &conc, SharedConcurrency: true}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"global, redis", func(c *Config) {
			c.Limits.Store, c.Redis.URL, c.Limits.SharedConcurrency = StoreRedis, "redis://127.0.0.1:6379/0", true
		}, ""},
		{"rule, redis", func(c *Config) {
			c.Limits.Store, c.Redis.URL, c.Hosts = StoreRedis, "redis://127.0.0.1:6379/0", []HostRule{rule}
		}, ""},
		{"global, memory", func(c *Config) { c.Limits.SharedConcurrency = true },
			"limits.shared_concurrency: needs limits.store: redis (a fleet-wide cap is kept in the shared store), got limits.store: memory"},
		{"rule, memory", func(c *Config) { c.Hosts = []HostRule{{Match: "a.example"}, rule} },
			"hosts[1].shared_concurrency: needs limits.store: redis (a fleet-wide cap is kept in the shared store), got limits.store: memory"},
		{"slot_lease too short", func(c *Config) { c.Redis.SlotLease = 500 * time.Millisecond },
			"redis.slot_lease: must be at least 1s, got 500ms"},
		{"slot_lease below 10 × timeout", func(c *Config) {
			c.Limits.Store, c.Redis.URL = StoreRedis, "redis://127.0.0.1:6379/0"
			c.Redis.Timeout, c.Redis.SlotLease = time.Second, 5*time.Second
		}, "redis.slot_lease: must be at least 10 × redis.timeout (10s), got 5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	if err := CheckSharedConcurrency(StoreMemory, Limits{}, []HostRule{rule}); err == nil || err.Error() != "hosts[0].shared_concurrency: needs limits.store: redis (a fleet-wide cap is kept in the shared store), got limits.store: memory" {
		t.Fatalf("CheckSharedConcurrency: %v", err)
	}
}
