package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

// hosts[].cost loads from the file and from PROXYD_HOSTS, sizes in every
// accepted form; a bad value names its key and where it came from.
func TestLoadConfigCost(t *testing.T) {
	file := filepath.Join(t.TempDir(), "proxyd.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`hosts:
  - match: api.openai.com
    quotas: [{limit: 500, per: 1m}, {limit: 200000, per: 1m, unit: tokens}]
    cost: {max_body: 512KiB, default: 2000, usage: [usage.total_tokens, meta.extra]}
  - match: api.anthropic.com
    quotas: [{limit: 80000, per: 1m, unit: tokens}]
  - match: b.example
    cost: {max_body: 65536, header: x-cost, estimate: default}
`)
	cfg, err := loadConfig(loadOptions{File: file})
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Pricing{
		{Header: "X-Proxy-Cost", Estimate: "body", Default: 2000, MaxBody: 512 << 10, Usage: []string{"usage.total_tokens", "meta.extra"}},
		{Header: "X-Proxy-Cost", Estimate: "body", Default: 1000, MaxBody: 1 << 20},
		{Header: "X-Cost", Estimate: "default", Default: 1000, MaxBody: 65536},
	}
	for i, w := range want {
		if got := cfg.Hosts[i].Cost.Pricing(); !samePricing(got, w) {
			t.Errorf("hosts[%d].cost.Pricing() = %+v, want %+v", i, got, w)
		}
	}
	if cfg.Hosts[1].Cost != nil {
		t.Errorf("hosts[1].cost = %+v, want nil (not set)", cfg.Hosts[1].Cost)
	}

	cfg, err = loadConfig(loadOptions{Env: []string{"PROXYD_HOSTS=[{match: a.example, quotas: [{limit: 9, per: 1s, unit: tokens}], cost: {max_body: 1MiB, usage: usage.total_tokens}}]"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Hosts[0].Cost.Pricing(); got.MaxBody != 1<<20 || len(got.Usage) != 1 || got.Usage[0] != "usage.total_tokens" {
		t.Errorf("hosts[0].cost from the environment = %+v", got)
	}

	for _, tt := range []struct{ file, env, want string }{
		{file: "hosts: [{match: a.example, cost: {max_body: 1MB}}]", want: `hosts[0].cost.max_body: invalid size "1MB" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{file: "hosts: [{match: a.example, cost: {max_body: 1.5MiB}}]", want: `hosts[0].cost.max_body: invalid size "1.5MiB"`},
		{file: "hosts: [{match: a.example, cost: {max_body: 0}}]", want: "hosts[0].cost.max_body: must be at least 1 byte (use estimate: default to never read the body), got 0 (from " + file + ")"},
		{file: "hosts: [{match: a.example, cost: {max_body: 1GiB}}]", want: "hosts[0].cost.max_body: must be <= 64MiB (the body is held in memory while the request waits), got 1GiB"},
		{file: "hosts: [{match: a.example, cost: {max_body: [1]}}]", want: `hosts[0].cost.max_body: must be a size such as 65536 or "1MiB", got a list`},
		{file: "hosts: [{match: a.example, cost: {default: 0}}]", want: "hosts[0].cost.default: must be a positive integer of tokens, got 0"},
		{file: "hosts: [{match: a.example, cost: {default: 1.5}}]", want: "hosts[0].cost.default"},
		{file: "hosts: [{match: a.example, cost: {estimate: guess}}]", want: `hosts[0].cost.estimate: must be body or default, got "guess"`},
		{file: "hosts: [{match: a.example, cost: {header: \"X Cost\"}}]", want: `hosts[0].cost.header: invalid header name "X Cost"`},
		{file: "hosts: [{match: a.example, cost: {header: authorization}}]", want: "hosts[0].cost.header: must not be Authorization"},
		{file: "hosts: [{match: a.example, cost: {header: x-priority}}]", want: `hosts[0].cost.header: must differ from priority.header, both are "X-Priority"`},
		{file: "hosts: [{match: a.example, cost: {usage: [usage..total]}}]", want: `hosts[0].cost.usage[0]: invalid usage path: "usage..total": empty key`},
		{file: "hosts: [{match: a.example, cost: {usage: [a, a]}}]", want: `hosts[0].cost.usage[1]: "a" duplicates hosts[0].cost.usage[0]`},
		{file: "hosts: [{match: a.example, cost: {maxbody: 5}}]", want: `unknown key "hosts[0].cost.maxbody" (did you mean "hosts[0].cost.max_body"?)`},
		{file: "limits: {quotas: [{limit: 5, per: 1m, unit: tokens}]}", want: "limits.quotas[0].unit: tokens is accepted only in hosts[].quotas"},
		{env: "PROXYD_HOSTS=[{match: a.example, cost: {default: -1}}]", want: "hosts[0].cost.default: must be a positive integer of tokens, got -1 (from PROXYD_HOSTS)"},
	} {
		o := loadOptions{}
		if tt.file != "" {
			write(tt.file)
			o.File = file
		}
		if tt.env != "" {
			o.Env = []string{tt.env}
		}
		_, err := loadConfig(o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q %q: error %v, want it to contain %q", tt.file, tt.env, err, tt.want)
		}
	}
}

func samePricing(a, b config.Pricing) bool {
	return a.Header == b.Header && a.Estimate == b.Estimate && a.Default == b.Default && a.MaxBody == b.MaxBody && strings.Join(a.Usage, ",") == strings.Join(b.Usage, ",") && (a.Usage == nil) == (b.Usage == nil)
}
