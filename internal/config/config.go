// Package config holds proxyd's configuration as plain structs: the
// defaults (in one place, Default), and validation that names the key and
// the reason; the loader (Load: defaults, YAML, PROXYD_* variables,
// flags) and the strict decoder (Decode) shared with the admin API. It
// never reads the environment or files: the command passes their contents.
package config

import "time"

// Config is the whole configuration. Keys and defaults: docs/configuration.md.
type Config struct {
	Listen          string        `mapstructure:"listen" yaml:"listen"`
	Admin           Admin         `mapstructure:"admin" yaml:"admin"`
	Limits          Limits        `mapstructure:"limits" yaml:"limits"`
	Hosts           []HostRule    `mapstructure:"hosts" yaml:"hosts"`
	Priority        Priority      `mapstructure:"priority" yaml:"priority"`
	Upstream        Upstream      `mapstructure:"upstream" yaml:"upstream"`
	Routes          []Route       `mapstructure:"routes" yaml:"routes"`
	Egress          Egress        `mapstructure:"egress" yaml:"egress"`
	TLS             TLS           `mapstructure:"tls" yaml:"tls"`
	Auth            Auth          `mapstructure:"auth" yaml:"auth"`
	Clients         []Client      `mapstructure:"clients" yaml:"clients"`
	Fairness        string        `mapstructure:"fairness" yaml:"fairness"`
	Redis           Redis         `mapstructure:"redis" yaml:"redis"`
	Log             Log           `mapstructure:"log" yaml:"log"`
	Tracing         Tracing       `mapstructure:"tracing" yaml:"tracing"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout" yaml:"shutdown_timeout"`

	// ClientWriteTimeout is the longest a response may make no progress
	// towards a client that does not read it; then it is cut (and its
	// permit released). 0 means no bound.
	ClientWriteTimeout time.Duration `mapstructure:"client_write_timeout" yaml:"client_write_timeout"`
}

// Admin configures the admin listener.
type Admin struct {
	Listen string `mapstructure:"listen" yaml:"listen"`
	// Token, when set, is required as a bearer token on /api/.
	Token string `mapstructure:"token" yaml:"token"`
	// AllowedHosts are the host names, besides IP literals and localhost,
	// that the admin listener answers to (the request's Host header);
	// any other Host is refused with 421, a defence against DNS
	// rebinding (docs/admin-api.md, "Host check").
	AllowedHosts []string `mapstructure:"allowed_hosts" yaml:"allowed_hosts"`
}

// Limits are the global admission limits. They can change at runtime.
type Limits struct {
	// Rate is requests per second admitted overall; 0 means unlimited.
	Rate float64 `mapstructure:"rate" yaml:"rate"`
	// Burst is the token-bucket size.
	Burst int `mapstructure:"burst" yaml:"burst"`
	// Concurrency caps requests in flight upstream; 0 means unlimited.
	Concurrency int `mapstructure:"concurrency" yaml:"concurrency"`
	// QueueSize caps waiting requests.
	QueueSize int `mapstructure:"queue_size" yaml:"queue_size"`
	// MaxWait is the longest a request may wait.
	MaxWait time.Duration `mapstructure:"max_wait" yaml:"max_wait"`
	// MaxTunnels caps open CONNECT tunnels.
	MaxTunnels int `mapstructure:"max_tunnels" yaml:"max_tunnels"`
	// RejectStatus is the status of proxy-side rejections: 503 or 429.
	RejectStatus int `mapstructure:"reject_status" yaml:"reject_status"`
	// Store is where the global and hosts-rule buckets live: memory (this
	// process) or redis (shared by every replica with the same
	// redis.key_prefix, docs/shared-quota.md).
	Store string `mapstructure:"store" yaml:"store"`
	// Quotas are per-window quotas every request needs besides the token
	// bucket (docs/configuration.md, "Quotas").
	Quotas []Quota `mapstructure:"quotas" yaml:"quotas"`
	// SharedConcurrency makes Concurrency a fleet-wide cap, leased from
	// the shared store (needs Store redis; docs/shared-quota.md).
	SharedConcurrency bool `mapstructure:"shared_concurrency" yaml:"shared_concurrency"`
}

// HostRule is a per-destination limit. Nil Rate or Concurrency means
// unlimited; nil Burst means max(1, Rate).
type HostRule struct {
	Match       string   `mapstructure:"match" yaml:"match" json:"match"`
	Rate        *float64 `mapstructure:"rate" yaml:"rate,omitempty" json:"rate,omitempty"`
	Burst       *int     `mapstructure:"burst" yaml:"burst,omitempty" json:"burst,omitempty"`
	Concurrency *int     `mapstructure:"concurrency" yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Quotas are the rule's per-window quotas, besides its bucket.
	Quotas []Quota `mapstructure:"quotas" yaml:"quotas,omitempty" json:"quotas,omitempty"`
	// Cost prices the rule's requests for its tokens quotas; nil means
	// the defaults (Cost.Pricing).
	Cost *Cost `mapstructure:"cost" yaml:"cost,omitempty" json:"cost,omitempty"`
	// SharedConcurrency makes the rule's Concurrency fleet-wide, leased
	// from the shared store (needs limits.store: redis).
	SharedConcurrency bool `mapstructure:"shared_concurrency" yaml:"shared_concurrency,omitempty" json:"shared_concurrency,omitempty"`
}

// Priority configures urgency resolution (docs/configuration.md, "Priority").
type Priority struct {
	Default      int           `mapstructure:"default" yaml:"default"`
	Header       string        `mapstructure:"header" yaml:"header"`
	TrustHeaders bool          `mapstructure:"trust_headers" yaml:"trust_headers"`
	Aging        time.Duration `mapstructure:"aging" yaml:"aging"`
	// Reserve is how many global rate tokens a request leaves in the
	// bucket while more urgent requests are arriving (within the last
	// second), so that they find a token at once; 0 turns it off. At most
	// limits.burst-1 is kept.
	Reserve int            `mapstructure:"reserve" yaml:"reserve"`
	Rules   []PriorityRule `mapstructure:"rules" yaml:"rules"`
}

// PriorityRule sets the urgency of requests that match every given field.
type PriorityRule struct {
	Host       string       `mapstructure:"host" yaml:"host,omitempty"`
	PathPrefix string       `mapstructure:"path_prefix" yaml:"path_prefix,omitempty"`
	Method     string       `mapstructure:"method" yaml:"method,omitempty"`
	ClientCIDR string       `mapstructure:"client_cidr" yaml:"client_cidr,omitempty"`
	Header     *HeaderMatch `mapstructure:"header" yaml:"header,omitempty"`
	// User matches the authenticated user (auth.htpasswd), exactly.
	User string `mapstructure:"user" yaml:"user,omitempty"`
	// Priority is required (a pointer so that a missing value is an error,
	// not urgency 0).
	Priority *int `mapstructure:"priority" yaml:"priority"`
}

// HeaderMatch matches a request header's value exactly.
type HeaderMatch struct {
	Name  string `mapstructure:"name" yaml:"name"`
	Value string `mapstructure:"value" yaml:"value"`
}

// Upstream configures forwarding.
type Upstream struct {
	Timeout             time.Duration `mapstructure:"timeout" yaml:"timeout"`
	MaxTimeout          time.Duration `mapstructure:"max_timeout" yaml:"max_timeout"`
	TimeoutHeader       string        `mapstructure:"timeout_header" yaml:"timeout_header"`
	DialTimeout         time.Duration `mapstructure:"dial_timeout" yaml:"dial_timeout"`
	MaxIdleConnsPerHost int           `mapstructure:"max_idle_conns_per_host" yaml:"max_idle_conns_per_host"`
	Retry               Retry         `mapstructure:"retry" yaml:"retry"`
	MaxPause            time.Duration `mapstructure:"max_pause" yaml:"max_pause"`
}

// Retry configures retries of idempotent requests.
type Retry struct {
	Attempts    int           `mapstructure:"attempts" yaml:"attempts"`
	On          []string      `mapstructure:"on" yaml:"on"`
	BackoffBase time.Duration `mapstructure:"backoff_base" yaml:"backoff_base"`
	BackoffMax  time.Duration `mapstructure:"backoff_max" yaml:"backoff_max"`
	Budget      float64       `mapstructure:"budget" yaml:"budget"`
}

// Route is a gateway-mode route.
type Route struct {
	Prefix      string `mapstructure:"prefix" yaml:"prefix"`
	Upstream    string `mapstructure:"upstream" yaml:"upstream"`
	StripPrefix bool   `mapstructure:"strip_prefix" yaml:"strip_prefix"`
}

// Log configures the zap logger.
type Log struct {
	Level  string `mapstructure:"level" yaml:"level"`
	Format string `mapstructure:"format" yaml:"format"`
}

// Default returns the embedded defaults (docs/configuration.md, "Every key"; configs/proxyd.yaml).
func Default() Config {
	return Config{
		Listen: "127.0.0.1:8080",
		Admin:  Admin{Listen: "127.0.0.1:9090", AllowedHosts: []string{}},
		Limits: Limits{
			Rate:         100,
			Burst:        10,
			Concurrency:  64,
			QueueSize:    10000,
			MaxWait:      30 * time.Second,
			MaxTunnels:   1024,
			RejectStatus: 503,
			Store:        StoreMemory,
			Quotas:       []Quota{},
		},
		Hosts: []HostRule{},
		Priority: Priority{
			Default:      3,
			Header:       "X-Priority",
			TrustHeaders: true,
			Reserve:      1,
			Rules:        []PriorityRule{},
		},
		Upstream: Upstream{
			Timeout:             30 * time.Second,
			MaxTimeout:          5 * time.Minute,
			TimeoutHeader:       "X-Proxy-Timeout",
			DialTimeout:         5 * time.Second,
			MaxIdleConnsPerHost: 64,
			Retry: Retry{
				Attempts:    0,
				On:          []string{"connect-failure", "429", "502", "503", "504"},
				BackoffBase: 100 * time.Millisecond,
				BackoffMax:  10 * time.Second,
				Budget:      0.2,
			},
			MaxPause: 60 * time.Second,
		},
		Routes:          []Route{},
		Egress:          Egress{Allow: []string{}, Deny: []string{}, ConnectPorts: []int{443}},
		TLS:             TLS{Intercept: []string{}, CertCacheSize: 1000},
		Clients:         []Client{},
		Fairness:        FairnessNone,
		Redis:           Redis{KeyPrefix: "proxyd", Timeout: 100 * time.Millisecond, OnError: OnErrorLocal, SlotLease: 10 * time.Second, Sentinel: RedisSentinel{Addrs: []string{}}, Cluster: RedisCluster{Addrs: []string{}}},
		Log:             Log{Level: "info", Format: "json"},
		Tracing:         Tracing{OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1},
		ShutdownTimeout: 30 * time.Second,

		ClientWriteTimeout: 60 * time.Second,
	}
}
