package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// hosts[].cost is validated naming each key and the reason; a tokens
// quota needs no cost (the defaults apply).
func TestValidateCost(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	size := func(n ByteSize) *ByteSize { return &n }
	tokens := []Quota{{Limit: 90000, Per: time.Minute, Unit: QuotaTokens}}
	tests := []struct {
		name   string
		cost   *Cost
		quotas []Quota
		want   string
	}{
		{"tokens quota, no cost", nil, tokens, ""},
		{"every field", &Cost{Header: "X-Tokens", Estimate: "default", Default: i64(500), MaxBody: size(512 << 10), Usage: []string{"usage.total_tokens"}}, tokens, ""},
		{"cost without a tokens quota", &Cost{Default: i64(5)}, nil, ""},
		{"bounds", &Cost{Default: i64(1_000_000_000), MaxBody: size(64 << 20)}, tokens, ""},
		{"default 0", &Cost{Default: i64(0)}, tokens, "hosts[0].cost.default: must be a positive integer of tokens, got 0"},
		{"default huge", &Cost{Default: i64(1_000_000_001)}, tokens, "hosts[0].cost.default: must be <= 1000000000 (the largest quota limit), got 1000000001"},
		{"max_body 0", &Cost{MaxBody: size(0)}, tokens, "hosts[0].cost.max_body: must be at least 1 byte (use estimate: default to never read the body), got 0"},
		{"max_body huge", &Cost{MaxBody: size(64<<20 + 1)}, tokens, "hosts[0].cost.max_body: must be <= 64MiB (the body is held in memory while the request waits), got 67108865B"},
		{"estimate", &Cost{Estimate: "Body"}, tokens, `hosts[0].cost.estimate: must be body or default, got "Body"`},
		{"header", &Cost{Header: "X:Cost"}, tokens, `hosts[0].cost.header: invalid header name "X:Cost"`},
		{"reserved header", &Cost{Header: "content-length"}, tokens, "hosts[0].cost.header: must not be Content-Length: proxyd removes this header from every request, and requests need it"},
		{"header as priority.header", &Cost{Header: "x-priority"}, tokens, `hosts[0].cost.header: must differ from priority.header, both are "X-Priority"`},
		{"usage path", &Cost{Usage: []string{"usage.total_tokens", "usage."}}, tokens, `hosts[0].cost.usage[1]: invalid usage path: "usage.": empty key (want keys separated by single dots, e.g. "usage.total_tokens")`},
		{"usage twice", &Cost{Usage: []string{"a.b", "a.b"}}, tokens, `hosts[0].cost.usage[1]: "a.b" duplicates hosts[0].cost.usage[0]`},
		{"usage too many", &Cost{Usage: strings.Split("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", ",")}, tokens, "hosts[0].cost.usage: at most 16 paths, got 17"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Hosts = []HostRule{{Match: "api.openai.com", Quotas: tt.quotas, Cost: tt.cost}}
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
	// The default cost header collides with a priority.header of the same
	// name once the rule has a tokens quota.
	c := Default()
	c.Priority.Header = "X-Proxy-Cost"
	c.Hosts = []HostRule{{Match: "a.example", Quotas: tokens}}
	if err := c.Validate(); err == nil || err.Error() != `hosts[0].cost.header: must differ from priority.header, both are "X-Proxy-Cost"` {
		t.Errorf("Validate() = %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"65536", 65536, ""},
		{"0", 0, ""},
		{"100B", 100, ""},
		{"512KiB", 512 << 10, ""},
		{"1MiB", 1 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"", 0, `invalid size "" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"MiB", 0, `invalid size "MiB" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"1MB", 0, `invalid size "1MB" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"1 MiB", 0, `invalid size "1 MiB" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"1.5MiB", 0, `invalid size "1.5MiB" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"-1", 0, `invalid size "-1" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"+1", 0, `invalid size "+1" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"1mib", 0, `invalid size "1mib" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{"99999999999GiB", 0, `invalid size "99999999999GiB": too large`},
	} {
		got, err := ParseByteSize(tt.in)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if got != tt.want || msg != tt.err {
			t.Errorf("ParseByteSize(%q) = %d, %q; want %d, %q", tt.in, got, msg, tt.want, tt.err)
		}
	}
	for b, want := range map[ByteSize]string{1 << 20: "1MiB", 512 << 10: "512KiB", 65537: "65537B", 0: "0B", 3 << 30: "3GiB"} {
		if b.String() != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", b, b.String(), want)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"65536", "1MiB", "512KiB", "1MB", "", "9223372036854775807B", "4611686018427387904"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d", s, b)
		}
		if back, err := ParseByteSize(b.String()); err != nil || back != b {
			t.Fatalf("ParseByteSize(%q) = %d, written %q, read back %d, %v", s, b, b.String(), back, err)
		}
	})
}

// GET /api/v1/limits shows a set cost with its defaults applied; an unset
// one is left out.
func TestCostJSON(t *testing.T) {
	d := int64(500)
	for _, tt := range []struct {
		rule HostRule
		want string
	}{
		{HostRule{Match: "a"}, `{"match":"a"}`},
		{HostRule{Match: "a", Cost: &Cost{}}, `{"match":"a","cost":{"header":"X-Proxy-Cost","estimate":"body","default":1000,"max_body":"1MiB","usage":[]}}`},
		{HostRule{Match: "a", Cost: &Cost{Header: "x-tokens", Estimate: "default", Default: &d, Usage: []string{"u.t"}}}, `{"match":"a","cost":{"header":"X-Tokens","estimate":"default","default":500,"max_body":"1MiB","usage":["u.t"]}}`},
	} {
		b, err := json.Marshal(tt.rule)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.rule, b, err, tt.want)
		}
	}
	if p := (*Cost)(nil).Pricing(); p.Header != DefaultCostHeader || p.Estimate != CostEstimateBody || p.Default != DefaultCost || p.MaxBody != DefaultCostMaxBody || p.Usage != nil {
		t.Errorf("nil Pricing() = %+v", p)
	}
}
