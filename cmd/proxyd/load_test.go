package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/proxyd/proxyd/internal/config"
)

const exampleFile = "../../configs/proxyd.yaml"

func ptr[T any](v T) *T { return &v }

// writeConfig writes a YAML file into a fresh temporary directory.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proxyd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// parseFlags defines proxyd's flags on a new set and parses args.
func parseFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("proxyd", pflag.ContinueOnError)
	defineFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// wantLoaded checks that loadConfig(o) succeeds and returns config.Default()
// as changed by edit (nil: no change).
func wantLoaded(t *testing.T, o loadOptions, edit func(*config.Config)) {
	t.Helper()
	got, err := loadConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	if edit != nil {
		edit(&want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestExampleFileIsDefaults(t *testing.T) {
	got, err := loadConfig(loadOptions{File: exampleFile})
	if err != nil {
		t.Fatalf("loadConfig(%s): %v", exampleFile, err)
	}
	if want := config.Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("loadConfig(%s) =\n%+v\nwant config.Default() =\n%+v", exampleFile, got, want)
	}
}

// TestExampleFileHasEveryKey keeps configs/proxyd.yaml complete.
func TestExampleFileHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := parseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	m := raw.(map[string]any)
	for _, key := range config.Keys() {
		if lookupPath(m, key) == nil {
			t.Errorf("%s does not set %s", exampleFile, key)
		}
	}
	for _, list := range []string{"hosts:", "rules:", "routes:"} {
		if !bytes.Contains(data, []byte("# "+list)) && !bytes.Contains(data, []byte("#   "+list)) {
			t.Errorf("%s has no commented-out example of %s", exampleFile, list)
		}
	}
}

// TestExampleFileCommentedExamplesLoad uncomments the examples of
// configs/proxyd.yaml and loads the result, so the examples stay valid.
func TestExampleFileCommentedExamplesLoad(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inExample := false
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch trimmed {
		case "hosts: []", "rules: []", "routes: []":
			continue // replaced by the example below it
		case "# hosts:", "# rules:", "# routes:":
			inExample = true
		}
		if !strings.HasPrefix(trimmed, "#") {
			inExample = false
		}
		if inExample {
			line = strings.Replace(line, "# ", "", 1)
		}
		out = append(out, line)
	}
	cfg, err := loadConfig(loadOptions{File: writeConfig(t, strings.Join(out, "\n"))})
	if err != nil {
		t.Fatalf("examples do not load: %v\n%s", err, strings.Join(out, "\n"))
	}
	if len(cfg.Hosts) == 0 || len(cfg.Priority.Rules) == 0 || len(cfg.Routes) == 0 {
		t.Errorf("examples not all found: %d hosts, %d rules, %d routes", len(cfg.Hosts), len(cfg.Priority.Rules), len(cfg.Routes))
	}
}

func TestLoadNothingIsDefaults(t *testing.T) {
	env := []string{"HOME=/root", "proxyd_limits_rate=1", "XPROXYD_LIMITS_RATE=1", "PROXYD", "PATH=/bin"}
	wantLoaded(t, loadOptions{Env: env, Flags: parseFlags(t)}, nil)
}

// TestLoadPrecedence: flags > PROXYD_* > file > defaults, one level at a
// time.
func TestLoadPrecedence(t *testing.T) {
	const file = `
listen: 127.0.0.1:1001
log: {level: warn}
limits: {rate: 5, burst: 7}
hosts: [{match: file.example.com}]
`
	tests := []struct {
		name  string
		file  string // "" = no file
		env   []string
		flags []string
		want  func(*config.Config)
	}{
		{"defaults", "", nil, nil, func(*config.Config) {}},
		{"file over defaults", file, nil, nil, func(c *config.Config) {
			c.Listen = "127.0.0.1:1001"
			c.Log.Level = "warn"
			c.Limits.Rate, c.Limits.Burst = 5, 7
			c.Hosts = []config.HostRule{{Match: "file.example.com"}}
		}},
		{"env over defaults", "", []string{"PROXYD_LISTEN=127.0.0.1:1002", "PROXYD_LIMITS_RATE=50"}, nil, func(c *config.Config) {
			c.Listen = "127.0.0.1:1002"
			c.Limits.Rate = 50
		}},
		{"env over file", file, []string{"PROXYD_LISTEN=127.0.0.1:1002", "PROXYD_LIMITS_RATE=50", "PROXYD_HOSTS=[{match: env.example.com, rate: 2}]"}, nil, func(c *config.Config) {
			c.Listen = "127.0.0.1:1002"
			c.Log.Level = "warn"
			c.Limits.Rate, c.Limits.Burst = 50, 7                                   // a nested key set by env merges with the file's siblings
			c.Hosts = []config.HostRule{{Match: "env.example.com", Rate: ptr(2.0)}} // lists are replaced whole
		}},
		{"flags over defaults", "", nil, []string{"--listen=127.0.0.1:1003", "--admin-listen=127.0.0.1:2003", "--log-level=debug"}, func(c *config.Config) {
			c.Listen = "127.0.0.1:1003"
			c.Admin.Listen = "127.0.0.1:2003"
			c.Log.Level = "debug"
		}},
		{"flags over env over file", file, []string{"PROXYD_LISTEN=127.0.0.1:1002", "PROXYD_LOG_LEVEL=error", "PROXYD_ADMIN_LISTEN=127.0.0.1:2002"},
			[]string{"--listen", "127.0.0.1:1003", "--log-level", "debug"}, func(c *config.Config) {
				c.Listen = "127.0.0.1:1003"
				c.Admin.Listen = "127.0.0.1:2002"
				c.Log.Level = "debug"
				c.Limits.Rate, c.Limits.Burst = 5, 7
				c.Hosts = []config.HostRule{{Match: "file.example.com"}}
			}},
		{"unset flags do not override", file, []string{"PROXYD_LOG_LEVEL=error"}, []string{}, func(c *config.Config) {
			c.Listen = "127.0.0.1:1001"
			c.Log.Level = "error"
			c.Limits.Rate, c.Limits.Burst = 5, 7
			c.Hosts = []config.HostRule{{Match: "file.example.com"}}
		}},
		{"empty env value is unset", file, []string{"PROXYD_LISTEN=", "PROXYD_LIMITS_RATE="}, nil, func(c *config.Config) {
			c.Listen = "127.0.0.1:1001"
			c.Log.Level = "warn"
			c.Limits.Rate, c.Limits.Burst = 5, 7
			c.Hosts = []config.HostRule{{Match: "file.example.com"}}
		}},
		{"first of a repeated variable wins", "", []string{"PROXYD_LIMITS_RATE=1", "PROXYD_LIMITS_RATE=2"}, nil, func(c *config.Config) {
			c.Limits.Rate = 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := loadOptions{Env: tt.env}
			if tt.file != "" {
				o.File = writeConfig(t, tt.file)
			}
			if tt.flags != nil {
				o.Flags = parseFlags(t, tt.flags...)
			}
			wantLoaded(t, o, tt.want)
		})
	}
}

func TestLoadConfigFlag(t *testing.T) {
	a := writeConfig(t, "listen: 127.0.0.1:1001\n")
	b := writeConfig(t, "listen: 127.0.0.1:1002\n")
	got, err := loadConfig(loadOptions{Flags: parseFlags(t, "--config", a)})
	if err != nil || got.Listen != "127.0.0.1:1001" {
		t.Errorf("--config only: listen %q, %v; want 127.0.0.1:1001", got.Listen, err)
	}
	got, err = loadConfig(loadOptions{File: b, Flags: parseFlags(t, "--config", a)})
	if err != nil || got.Listen != "127.0.0.1:1002" {
		t.Errorf("File and --config: listen %q, %v; want File's 127.0.0.1:1002", got.Listen, err)
	}
}

// TestLoadFile covers the value forms a file may use.
func TestLoadFile(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(*config.Config)
	}{
		{"empty file", "", func(*config.Config) {}},
		{"comments only", "# nothing\n", func(*config.Config) {}},
		{"document marker", "---\nlisten: 127.0.0.1:1\n", func(c *config.Config) { c.Listen = "127.0.0.1:1" }},
		{"null keeps default", "limits:\n  rate:\n  burst: ~\nhosts:\npriority:\n", func(*config.Config) {}},
		{"partial section", "limits: {burst: 3}\n", func(c *config.Config) { c.Limits.Burst = 3 }},
		{"durations", "limits: {max_wait: 1m30s}\npriority: {aging: 0}\nupstream: {timeout: 1.5s, max_timeout: 1h}\nshutdown_timeout: 0s\n", func(c *config.Config) {
			c.Limits.MaxWait = 90 * time.Second
			c.Upstream.Timeout = 1500 * time.Millisecond
			c.Upstream.MaxTimeout = time.Hour
			c.ShutdownTimeout = 0
		}},
		{"integer rate", "limits: {rate: 7}\n", func(c *config.Config) { c.Limits.Rate = 7 }},
		{"fractional rate", "limits: {rate: 0.5}\n", func(c *config.Config) { c.Limits.Rate = 0.5 }},
		{"integral float for int", "limits: {queue_size: 1e3}\n", func(c *config.Config) { c.Limits.QueueSize = 1000 }},
		{"retry.on numbers", "upstream: {retry: {on: [connect-failure, 429, 503]}}\n", func(c *config.Config) {
			c.Upstream.Retry.On = []string{"connect-failure", "429", "503"}
		}},
		{"retry.on comma string", "upstream: {retry: {on: ' 429, 503,'}}\n", func(c *config.Config) {
			c.Upstream.Retry.On = []string{"429", "503"}
		}},
		{"retry.on single number", "upstream: {retry: {on: 503}}\n", func(c *config.Config) {
			c.Upstream.Retry.On = []string{"503"}
		}},
		{"retry.on empty", "upstream: {retry: {on: []}}\n", func(c *config.Config) {
			c.Upstream.Retry.On = []string{}
		}},
		{"hosts", `
hosts:
  - match: api.example.com
    rate: 5
    burst: 10
    concurrency: 2
  - match: "*.example.com:8443"
  - {match: zero.example.com, rate: 0, burst: ~}
`, func(c *config.Config) {
			c.Hosts = []config.HostRule{
				{Match: "api.example.com", Rate: ptr(5.0), Burst: ptr(10), Concurrency: ptr(2)},
				{Match: "*.example.com:8443"},
				{Match: "zero.example.com", Rate: ptr(0.0)},
			}
		}},
		{"priority rules", `
priority:
  rules:
    - {host: "*.internal", path_prefix: /v1/, method: post, client_cidr: 10.0.0.0/8, header: {name: X-Kind, value: batch}, priority: 6}
    - {method: get, priority: 0}
`, func(c *config.Config) {
			c.Priority.Rules = []config.PriorityRule{
				{Host: "*.internal", PathPrefix: "/v1/", Method: "POST", ClientCIDR: "10.0.0.0/8", Header: &config.HeaderMatch{Name: "X-Kind", Value: "batch"}, Priority: ptr(6)},
				{Method: "GET", Priority: ptr(0)},
			}
		}},
		{"routes", "routes:\n  - {prefix: /gh/, upstream: 'https://api.github.com', strip_prefix: true}\n  - {prefix: /x/, upstream: 'https://api.x.com/v1'}\n", func(c *config.Config) {
			c.Routes = []config.Route{
				{Prefix: "/gh/", Upstream: "https://api.github.com", StripPrefix: true},
				{Prefix: "/x/", Upstream: "https://api.x.com/v1"},
			}
		}},
		{"anchors and merge keys", "limits: &l {rate: 9}\nupstream: {retry: {<<: {attempts: 2}}}\n", func(c *config.Config) {
			c.Limits.Rate = 9
			c.Upstream.Retry.Attempts = 2
		}},
		{"quoted token", "admin: {token: '12345'}\n", func(c *config.Config) { c.Admin.Token = "12345" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantLoaded(t, loadOptions{File: writeConfig(t, tt.yaml)}, tt.want)
		})
	}
}

// TestLoadEnv covers the value forms of PROXYD_* variables.
func TestLoadEnv(t *testing.T) {
	tests := []struct {
		name string
		env  string
		want func(*config.Config)
	}{
		{"string verbatim", "PROXYD_ADMIN_TOKEN=s3cret: #x [y]", func(c *config.Config) { c.Admin.Token = "s3cret: #x [y]" }},
		{"number-like string", "PROXYD_ADMIN_TOKEN=12345", func(c *config.Config) { c.Admin.Token = "12345" }},
		{"float", "PROXYD_LIMITS_RATE=2.5", func(c *config.Config) { c.Limits.Rate = 2.5 }},
		{"int", "PROXYD_LIMITS_QUEUE_SIZE=50", func(c *config.Config) { c.Limits.QueueSize = 50 }},
		{"duration", "PROXYD_LIMITS_MAX_WAIT=10s", func(c *config.Config) { c.Limits.MaxWait = 10 * time.Second }},
		{"bool", "PROXYD_PRIORITY_TRUST_HEADERS=false", func(c *config.Config) { c.Priority.TrustHeaders = false }},
		{"comma list", "PROXYD_UPSTREAM_RETRY_ON=429,503", func(c *config.Config) { c.Upstream.Retry.On = []string{"429", "503"} }},
		{"comma list with blanks", "PROXYD_UPSTREAM_RETRY_ON= connect-failure , 502 ,", func(c *config.Config) {
			c.Upstream.Retry.On = []string{"connect-failure", "502"}
		}},
		{"single item list", "PROXYD_UPSTREAM_RETRY_ON=503", func(c *config.Config) { c.Upstream.Retry.On = []string{"503"} }},
		{"YAML list", "PROXYD_UPSTREAM_RETRY_ON=[connect-failure, 429]", func(c *config.Config) {
			c.Upstream.Retry.On = []string{"connect-failure", "429"}
		}},
		{"hosts as YAML", "PROXYD_HOSTS=[{match: api.example.com, rate: 5}]", func(c *config.Config) {
			c.Hosts = []config.HostRule{{Match: "api.example.com", Rate: ptr(5.0)}}
		}},
		{"routes as JSON", `PROXYD_ROUTES=[{"prefix": "/gh/", "upstream": "https://api.github.com", "strip_prefix": true}]`, func(c *config.Config) {
			c.Routes = []config.Route{{Prefix: "/gh/", Upstream: "https://api.github.com", StripPrefix: true}}
		}},
		{"priority rules", "PROXYD_PRIORITY_RULES=[{method: get, priority: 1}]", func(c *config.Config) {
			c.Priority.Rules = []config.PriorityRule{{Method: "GET", Priority: ptr(1)}}
		}},
		{"empty list", "PROXYD_UPSTREAM_RETRY_ON=[]", func(c *config.Config) { c.Upstream.Retry.On = []string{} }},
		{"redis cluster seeds", "PROXYD_REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001", func(c *config.Config) {
			c.Redis.Cluster.Addrs = []string{"127.0.0.1:7000", "127.0.0.1:7001"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantLoaded(t, loadOptions{Env: []string{tt.env}}, tt.want)
		})
	}
}

// TestEnvEveryKey sets every key through its PROXYD_* variable, so a new
// key without an environment form fails here.
func TestEnvEveryKey(t *testing.T) {
	values := map[string]string{
		"listen":                           "127.0.0.1:1",
		"admin.listen":                     "127.0.0.1:2",
		"admin.token":                      "t",
		"admin.allowed_hosts":              "proxyd.internal, Admin.Example",
		"limits.rate":                      "1",
		"limits.burst":                     "2",
		"limits.concurrency":               "3",
		"limits.queue_size":                "4",
		"limits.max_wait":                  "5s",
		"limits.max_tunnels":               "6",
		"limits.reject_status":             "429",
		"limits.store":                     "redis",
		"limits.quotas":                    "[{limit: 60, per: 1m}]",
		"hosts":                            "[{match: a.example.com}]",
		"priority.default":                 "7",
		"priority.header":                  "X-P",
		"priority.trust_headers":           "false",
		"priority.aging":                   "8s",
		"priority.reserve":                 "19",
		"priority.rules":                   "[{method: GET, priority: 0}]",
		"upstream.timeout":                 "9s",
		"upstream.max_timeout":             "10s",
		"upstream.timeout_header":          "X-T",
		"upstream.dial_timeout":            "11s",
		"upstream.max_idle_conns_per_host": "12",
		"upstream.retry.attempts":          "3",
		"upstream.retry.on":                "502",
		"upstream.retry.backoff_base":      "14ms",
		"upstream.retry.backoff_max":       "15s",
		"upstream.retry.budget":            "0.5",
		"upstream.max_pause":               "16s",
		"routes":                           "[{prefix: /, upstream: 'http://b.example.com'}]",
		"egress.allow":                     "127.0.0.1, 10.0.0.0/8:443",
		"egress.deny":                      "*.evil.example",
		"egress.connect_ports":             "443,8443",
		"tls.intercept":                    "api.example.com,*.corp.example",
		"tls.ca_cert":                      "ca.pem",
		"tls.ca_key":                       "ca-key.pem",
		"tls.upstream_ca":                  "roots.pem",
		"tls.cert_cache_size":              "18",
		"auth.htpasswd":                    "users.htpasswd",
		"clients":                          "[{name: alice, max_priority: 2, queue_size: 9}]",
		"fairness":                         "client",
		"redis.url":                        "", // exactly one of url, sentinel, cluster: sentinel here
		"redis.key_prefix":                 "p",
		"redis.timeout":                    "50ms",
		"redis.on_error":                   "open",
		"redis.slot_lease":                 "21s",
		"limits.shared_concurrency":        "true",
		"redis.sentinel.master":            "mymaster",
		"redis.sentinel.addrs":             "127.0.0.1:26379,127.0.0.1:26380",
		"redis.sentinel.password":          "sp",
		"redis.cluster.addrs":              "",
		"redis.username":                   "proxyd",
		"redis.password":                   "pw",
		"redis.tls.ca_cert":                "redis-ca.pem",
		"redis.tls.cert":                   "redis-client.pem",
		"redis.tls.key":                    "redis-client-key.pem",
		"log.level":                        "debug",
		"log.format":                       "console",
		"tracing.otlp_endpoint":            "otel-collector:4317",
		"tracing.otlp_protocol":            "grpc",
		"tracing.sample_ratio":             "0.25",
		"shutdown_timeout":                 "17s",
		"client_write_timeout":             "18s",
	}
	var env []string
	names := make(map[string]string)
	for _, key := range config.Keys() {
		name := config.EnvName(key)
		if other, dup := names[name]; dup {
			t.Fatalf("keys %s and %s share %s", other, key, name)
		}
		names[name] = key
		v, ok := values[key]
		if !ok {
			t.Fatalf("no test value for %s", key)
		}
		env = append(env, name+"="+v)
	}
	got, err := loadConfig(loadOptions{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Listen: "127.0.0.1:1",
		Admin:  config.Admin{Listen: "127.0.0.1:2", Token: "t", AllowedHosts: []string{"proxyd.internal", "Admin.Example"}},
		Limits: config.Limits{Rate: 1, Burst: 2, Concurrency: 3, QueueSize: 4, MaxWait: 5 * time.Second, MaxTunnels: 6, RejectStatus: 429, Store: "redis", SharedConcurrency: true, Quotas: []config.Quota{{Limit: 60, Per: time.Minute}}},
		Hosts:  []config.HostRule{{Match: "a.example.com"}},
		Priority: config.Priority{Default: 7, Header: "X-P", TrustHeaders: false, Aging: 8 * time.Second, Reserve: 19,
			Rules: []config.PriorityRule{{Method: "GET", Priority: ptr(0)}}},
		Upstream: config.Upstream{Timeout: 9 * time.Second, MaxTimeout: 10 * time.Second, TimeoutHeader: "X-T",
			DialTimeout: 11 * time.Second, MaxIdleConnsPerHost: 12, MaxPause: 16 * time.Second,
			Retry: config.Retry{Attempts: 3, On: []string{"502"}, BackoffBase: 14 * time.Millisecond, BackoffMax: 15 * time.Second, Budget: 0.5}},
		Routes:          []config.Route{{Prefix: "/", Upstream: "http://b.example.com"}},
		Egress:          config.Egress{Allow: []string{"127.0.0.1", "10.0.0.0/8:443"}, Deny: []string{"*.evil.example"}, ConnectPorts: []int{443, 8443}},
		Auth:            config.Auth{Htpasswd: "users.htpasswd"},
		Clients:         []config.Client{{Name: "alice", MaxPriority: ptr(2), QueueSize: 9}},
		Fairness:        "client",
		Redis:           config.Redis{KeyPrefix: "p", Timeout: 50 * time.Millisecond, OnError: "open", SlotLease: 21 * time.Second, Sentinel: config.RedisSentinel{Master: "mymaster", Addrs: []string{"127.0.0.1:26379", "127.0.0.1:26380"}, Password: "sp"}, Cluster: config.RedisCluster{Addrs: []string{}}, Username: "proxyd", Password: "pw", TLS: config.RedisTLS{CACert: "redis-ca.pem", Cert: "redis-client.pem", Key: "redis-client-key.pem"}},
		TLS:             config.TLS{Intercept: []string{"api.example.com", "*.corp.example"}, CACert: "ca.pem", CAKey: "ca-key.pem", UpstreamCA: "roots.pem", CertCacheSize: 18},
		Log:             config.Log{Level: "debug", Format: "console"},
		Tracing:         config.Tracing{OTLPEndpoint: "otel-collector:4317", OTLPProtocol: "grpc", SampleRatio: 0.25},
		ShutdownTimeout: 17 * time.Second,

		ClientWriteTimeout: 18 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

// TestLoadErrors: want is the whole error, one line per problem; FILE
// stands for the config file's path.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		file  string // "" = no file
		env   []string
		flags []string
		want  string
	}{
		// unknown keys
		{"unknown key/top level", "limts: {}\n", nil, nil, `FILE: unknown key "limts" (did you mean "limits"?)`},
		{"unknown key/nested", "limits: {rat: 5}\n", nil, nil, `FILE: unknown key "limits.rat" (did you mean "limits.rate"?)`},
		{"unknown key/deep", "upstream: {retry: {attemps: 1}}\n", nil, nil, `FILE: unknown key "upstream.retry.attemps" (did you mean "upstream.retry.attempts"?)`},
		{"unknown key/no suggestion", "frobnicate: true\n", nil, nil, `FILE: unknown key "frobnicate"`},
		{"unknown key/wrong case", "Limits: {}\n", nil, nil, `FILE: unknown key "Limits" (did you mean "limits"?)`},
		{"unknown key/dotted", "limits.rate: 5\n", nil, nil, `FILE: unknown key "limits.rate"`},
		{"unknown key/non-string", "1: 2\n", nil, nil, `FILE: unknown key "1"`},
		{"unknown key/in hosts entry", "hosts: [{match: a.example.com}, {match: b.example.com, rps: 5}]\n", nil, nil, `FILE: unknown key "hosts[1].rps"`},
		{"unknown key/in rules entry", "priority: {rules: [{method: GET, priority: 1, prio: 2}]}\n", nil, nil, `FILE: unknown key "priority.rules[0].prio" (did you mean "priority.rules[0].priority"?)`},
		{"unknown key/in rule header", "priority: {rules: [{header: {name: X-A, val: b}, priority: 1}]}\n", nil, nil, `FILE: unknown key "priority.rules[0].header.val" (did you mean "priority.rules[0].header.value"?)`},
		{"unknown key/in routes entry", "routes: [{prefix: /a, upstream: 'http://a.example.com', strip: true}]\n", nil, nil, `FILE: unknown key "routes[0].strip" (did you mean "routes[0].strip_prefix"?)`},
		{"unknown key/several", "limits: {rat: 5, brust: 1}\nlog: {lvl: x}\n", nil, nil,
			`FILE: unknown key "limits.brust" (did you mean "limits.burst"?)` + "\n" +
				`FILE: unknown key "limits.rat" (did you mean "limits.rate"?)` + "\n" +
				`FILE: unknown key "log.lvl" (did you mean "log.level"?)`},

		// wrong types
		{"type/bad duration", "limits: {max_wait: soon}\n", nil, nil, `FILE: limits.max_wait: invalid duration "soon" (want e.g. "30s", "500ms", "1m30s")`},
		{"type/bare number duration", "limits: {max_wait: 30}\n", nil, nil, `FILE: limits.max_wait: invalid duration 30: a number needs a unit, e.g. "30s"`},
		{"type/list as duration", "upstream: {timeout: [1]}\n", nil, nil, `FILE: upstream.timeout: must be a duration such as "30s", got a list`},
		{"type/number as string", "listen: 8080\n", nil, nil, `FILE: listen: must be a string, got 8080 (quote it)`},
		{"type/string as number", "limits: {rate: fast}\n", nil, nil, `FILE: limits.rate: must be a number, got "fast"`},
		{"type/string as bool", "priority: {trust_headers: yes}\n", nil, nil, `FILE: priority.trust_headers: must be true or false, got "yes"`},
		{"type/fraction as int", "limits: {burst: 1.5}\n", nil, nil, `FILE: limits.burst: must be an integer, got 1.5`},
		{"type/int out of range", "limits: {burst: 99999999999999999999}\n", nil, nil, `FILE: limits.burst: 1e+20 is out of range`},
		{"type/uint64 out of range", "limits: {burst: 18446744073709551615}\n", nil, nil, `FILE: limits.burst: 18446744073709551615 is out of range`},
		{"type/negative out of range", "limits: {burst: -1e19}\n", nil, nil, `FILE: limits.burst: -1e+19 is out of range`},
		{"type/bool as int", "limits: {burst: true}\n", nil, nil, `FILE: limits.burst: must be an integer, got true`},
		{"type/scalar as section", "limits: 5\n", nil, nil, `FILE: limits: must be a mapping, got 5`},
		{"type/scalar as list", "hosts: api.example.com\n", nil, nil, `FILE: hosts: must be a list, got "api.example.com"`},
		{"type/null list entry", "hosts: [~]\n", nil, nil, `FILE: hosts[0]: must be a mapping, got null`},
		{"type/list entry field", "hosts: [{match: a.example.com, rate: fast}]\n", nil, nil, `FILE: hosts[0].rate: must be a number, got "fast"`},
		{"type/rule header", "priority: {rules: [{header: X-A, priority: 1}]}\n", nil, nil, `FILE: priority.rules[0].header: must be a mapping, got "X-A"`},
		{"type/retry.on item", "upstream: {retry: {on: [429, {a: 1}]}}\n", nil, nil, `FILE: upstream.retry.on: item 1 must be a string, got a mapping`},
		{"type/several", "listen: 1\nlimits: {rate: x, max_wait: y}\n", nil, nil,
			`FILE: listen: must be a string, got 1 (quote it)` + "\n" +
				`FILE: limits.rate: must be a number, got "x"` + "\n" +
				`FILE: limits.max_wait: invalid duration "y" (want e.g. "30s", "500ms", "1m30s")`},

		// the file itself
		{"file/syntax error", "limits: {rate: 5\n", nil, nil, `FILE: yaml: line 1: did not find expected ',' or '}'`},
		{"file/duplicate key", "listen: a:1\nlisten: b:2\n", nil, nil, `FILE: yaml: unmarshal errors:` + "\n" + `  line 2: mapping key "listen" already defined at line 1`},
		{"file/two documents", "listen: a:1\n---\nlisten: b:2\n", nil, nil, `FILE: more than one YAML document`},
		{"file/top-level list", "- listen\n", nil, nil, `FILE: the top level must be a mapping of keys, got a list`},
		{"file/top-level scalar", "hello\n", nil, nil, `FILE: the top level must be a mapping of keys, got "hello"`},

		// environment
		{"env/unknown variable", "", []string{"PROXYD_LIMITS_RAT=5"}, nil, `unknown environment variable PROXYD_LIMITS_RAT (did you mean PROXYD_LIMITS_RATE?)`},
		{"env/unknown variable far", "", []string{"PROXYD_FOO=1"}, nil, `unknown environment variable PROXYD_FOO`},
		{"env/unknown variable abbreviated", "", []string{"PROXYD_UPSTREAM_RETRY=1"}, nil, `unknown environment variable PROXYD_UPSTREAM_RETRY (did you mean PROXYD_UPSTREAM_RETRY_ON?)`},
		{"env/config is not a key", "", []string{"PROXYD_CONFIG=/etc/proxyd.yaml"}, nil, `unknown environment variable PROXYD_CONFIG`},
		{"env/bad duration", "", []string{"PROXYD_LIMITS_MAX_WAIT=soon"}, nil, `PROXYD_LIMITS_MAX_WAIT: limits.max_wait: invalid duration "soon" (want e.g. "30s", "500ms", "1m30s")`},
		{"env/bare number duration", "", []string{"PROXYD_LIMITS_MAX_WAIT=10"}, nil, `PROXYD_LIMITS_MAX_WAIT: limits.max_wait: invalid duration 10: a number needs a unit, e.g. "10s"`},
		{"env/bad number", "", []string{"PROXYD_LIMITS_RATE=fast"}, nil, `PROXYD_LIMITS_RATE: limits.rate: must be a number, got "fast"`},
		{"env/bad bool", "", []string{"PROXYD_PRIORITY_TRUST_HEADERS=yes"}, nil, `PROXYD_PRIORITY_TRUST_HEADERS: priority.trust_headers: must be true or false, got "yes"`},
		{"env/bad YAML", "", []string{"PROXYD_HOSTS=[{match: a"}, nil, `PROXYD_HOSTS: hosts: yaml: line 1: did not find expected ',' or '}'`},
		{"env/unknown key in list", "", []string{"PROXYD_HOSTS=[{match: a.example.com, rat: 1}]"}, nil, `PROXYD_HOSTS: unknown key "hosts[0].rat" (did you mean "hosts[0].rate"?)`},
		{"env/wrong type in list", "", []string{"PROXYD_ROUTES=[{prefix: 1}]"}, nil, `PROXYD_ROUTES: routes[0].prefix: must be a string, got 1 (quote it)`},
		{"env/several and file", "limits: {rat: 1}\n", []string{"PROXYD_A=1", "PROXYD_LIMITS_BURST=x"}, nil,
			`FILE: unknown key "limits.rat" (did you mean "limits.rate"?)` + "\n" +
				`unknown environment variable PROXYD_A` + "\n" +
				`PROXYD_LIMITS_BURST: limits.burst: must be an integer, got "x"`},

		// Validate, with where the value came from
		{"validate/default", "", nil, nil, ""},
		{"validate/from file", "limits: {rate: -5}\nhosts: [{match: '*.'}]\n", nil, nil,
			`limits.rate: must be >= 0, got -5 (from FILE)` + "\n" +
				`hosts[0].match: invalid pattern "*.": nothing after "*." (from FILE)`},
		{"validate/from env", "limits: {rate: 5}\n", []string{"PROXYD_LIMITS_RATE=-5"}, nil, `limits.rate: must be >= 0, got -5 (from PROXYD_LIMITS_RATE)`},
		{"validate/from flag", "", []string{"PROXYD_LOG_LEVEL=debug"}, []string{"--log-level=loud"}, `log.level: must be one of debug, info, warn, error; got "loud" (from --log-level)`},
		{"validate/cross-key", "upstream: {max_timeout: 1s}\n", nil, nil, `upstream.max_timeout: must be >= upstream.timeout (30s), got 1s (from FILE)`},
		{"validate/default blamed on nothing", "upstream: {retry: {backoff_base: 20s}}\n", nil, nil, `upstream.retry.backoff_max: must be >= upstream.retry.backoff_base (20s), got 10s`},
		{"validate/cidr", "priority: {rules: [{client_cidr: 10.0.0/8, priority: 1}]}\n", nil, nil, `priority.rules[0].client_cidr: invalid CIDR "10.0.0/8": IPv4 address too short (from FILE)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := loadOptions{Env: tt.env}
			if tt.file != "" {
				o.File = writeConfig(t, tt.file)
			}
			if tt.flags != nil {
				o.Flags = parseFlags(t, tt.flags...)
			}
			cfg, err := loadConfig(o)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("loadConfig() = %v, want no error", err)
				}
				return
			}
			want := strings.ReplaceAll(tt.want, "FILE", o.File)
			if err == nil {
				t.Fatalf("loadConfig() = nil error, want\n%s", want)
			}
			if err.Error() != want {
				t.Errorf("loadConfig() error:\n%s\nwant:\n%s", err, want)
			}
			if !reflect.DeepEqual(cfg, config.Config{}) {
				t.Errorf("loadConfig() returned a config with its error: %+v", cfg)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := loadConfig(loadOptions{File: missing}); err == nil || err.Error() != "config file "+missing+": no such file" {
		t.Errorf("missing file: %v", err)
	}
	if _, err := loadConfig(loadOptions{File: dir}); err == nil || err.Error() != "config file "+dir+": is a directory" {
		t.Errorf("directory: %v", err)
	}
	if _, err := loadConfig(loadOptions{Flags: parseFlags(t, "--config="+missing)}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing --config file: %v", err)
	}
}

func TestDefineFlags(t *testing.T) {
	fs := pflag.NewFlagSet("proxyd", pflag.ContinueOnError)
	defineFlags(fs)
	usage := fs.FlagUsages()
	for _, want := range []string{
		"--config file", "--listen host:port", `(default "127.0.0.1:8080")`,
		"--admin-listen host:port", `(default "127.0.0.1:9090")`, "--log-level level", `(default "info")`,
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, usage)
		}
	}
	for _, fk := range flagKeys {
		if fs.Lookup(fk.flag) == nil {
			t.Errorf("flag --%s for %s is not defined", fk.flag, fk.key)
		}
		if !strings.Contains(strings.Join(config.Keys(), " "), fk.key) {
			t.Errorf("flag --%s overrides unknown key %s", fk.flag, fk.key)
		}
	}
}
