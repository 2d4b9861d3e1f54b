package config

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/proxyd/proxyd/internal/cost"
)

// Cost prices the requests of a hosts rule in tokens, for its tokens
// quotas (hosts[].cost; docs/configuration.md, "Pricing requests:
// hosts[].cost"). A nil *Cost, and every zero field, means the default;
// Pricing applies them.
type Cost struct {
	// Header is the request header with the caller's own estimate;
	// "" means DefaultCostHeader.
	Header string `mapstructure:"header" yaml:"header,omitempty"`
	// Estimate is CostEstimateBody (also when empty) or
	// CostEstimateDefault.
	Estimate string `mapstructure:"estimate" yaml:"estimate,omitempty"`
	// Default is the estimate when nothing better is known; nil means
	// DefaultCost.
	Default *int64 `mapstructure:"default" yaml:"default,omitempty"`
	// MaxBody is the largest request body read for an estimate; nil means
	// DefaultCostMaxBody.
	MaxBody *ByteSize `mapstructure:"max_body" yaml:"max_body,omitempty"`
	// Usage are dotted JSON paths in the response whose sum is the actual
	// cost; empty means the built-in shapes (internal/cost).
	Usage []string `mapstructure:"usage" yaml:"usage,omitempty"`
}

// Defaults and values of Cost.
const (
	DefaultCostHeader   = "X-Proxy-Cost"
	DefaultCost         = 1000
	DefaultCostMaxBody  = 1 << 20
	CostEstimateBody    = "body"
	CostEstimateDefault = "default"

	// MaxCostMaxBody bounds cost.max_body: the body is held in memory
	// while the request waits.
	MaxCostMaxBody = 64 << 20
)

// Pricing is a rule's Cost with the defaults applied.
type Pricing struct {
	Header   string // canonical form
	Estimate string // CostEstimateBody or CostEstimateDefault
	Default  int64
	MaxBody  int64
	Usage    []string // nil: the built-in shapes
}

// Pricing returns c with the defaults applied; c may be nil.
func (c *Cost) Pricing() Pricing {
	p := Pricing{Header: DefaultCostHeader, Estimate: CostEstimateBody, Default: DefaultCost, MaxBody: DefaultCostMaxBody}
	if c == nil {
		return p
	}
	if c.Header != "" {
		p.Header = http.CanonicalHeaderKey(c.Header)
	}
	if c.Estimate != "" {
		p.Estimate = c.Estimate
	}
	if c.Default != nil {
		p.Default = *c.Default
	}
	if c.MaxBody != nil {
		p.MaxBody = int64(*c.MaxBody)
	}
	if len(c.Usage) > 0 {
		p.Usage = c.Usage
	}
	return p
}

// MarshalJSON writes the cost with its defaults applied, as GET
// /api/v1/limits shows it: {"header":"X-Proxy-Cost","estimate":"body",
// "default":1000,"max_body":"1MiB","usage":[]} ([] for the built-in
// shapes). PATCH and PUT accept it back.
func (c Cost) MarshalJSON() ([]byte, error) {
	p := c.Pricing()
	usage := p.Usage
	if usage == nil {
		usage = []string{}
	}
	return json.Marshal(struct {
		Header   string   `json:"header"`
		Estimate string   `json:"estimate"`
		Default  int64    `json:"default"`
		MaxBody  ByteSize `json:"max_body"`
		Usage    []string `json:"usage"`
	}{p.Header, p.Estimate, p.Default, ByteSize(p.MaxBody), usage})
}

// ByteSize is a size in bytes, written as a number of bytes (65536) or
// with a binary unit: 512KiB, 1MiB (also B, GiB). ParseByteSize reads it.
type ByteSize int64

var sizeUnits = []struct {
	suffix string
	n      int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseByteSize reads a size: digits, then optionally one of B, KiB, MiB,
// GiB (1024-based; no space, no fraction). Decimal units (kB, MB) are
// refused rather than guessed.
func ParseByteSize(s string) (ByteSize, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.n
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)", s)
	}
	if n > uint64(1<<62)/uint64(mult) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(int64(n) * mult), nil
}

// String writes the size with the largest unit that divides it: 1MiB,
// 512KiB, 65537B.
func (b ByteSize) String() string {
	for _, u := range sizeUnits {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalJSON writes the size as a string ("1MiB").
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// MarshalYAML writes the size as a string ("1MiB").
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// checkCost checks hosts[i].cost at key ("hosts[2].cost").
func checkCost(p *problems, key string, c *Cost) {
	if c == nil {
		return
	}
	if c.Header != "" {
		if err := checkHeaderName(c.Header); err != nil {
			p.addErr(key+".header", err)
		} else if why := reservedHeader(c.Header); why != "" {
			p.add(key+".header", "must not be %s: %s", http.CanonicalHeaderKey(c.Header), why)
		}
	}
	switch c.Estimate {
	case "", CostEstimateBody, CostEstimateDefault:
	default:
		p.add(key+".estimate", "must be body or default, got %q", c.Estimate)
	}
	if c.Default != nil {
		switch d := *c.Default; {
		case d < 1:
			p.add(key+".default", "must be a positive integer of tokens, got %d", d)
		case d > maxQuotaLimit:
			p.add(key+".default", "must be <= %d (the largest quota limit), got %d", maxQuotaLimit, d)
		}
	}
	if c.MaxBody != nil {
		switch b := *c.MaxBody; {
		case b < 1:
			p.add(key+".max_body", "must be at least 1 byte (use estimate: default to never read the body), got %d", int64(b))
		case b > MaxCostMaxBody:
			p.add(key+".max_body", "must be <= %v (the body is held in memory while the request waits), got %v", ByteSize(MaxCostMaxBody), b)
		}
	}
	if len(c.Usage) > cost.MaxUsagePaths {
		p.add(key+".usage", "at most %d paths, got %d", cost.MaxUsagePaths, len(c.Usage))
	}
	seen := make(map[string]int, len(c.Usage))
	for i, u := range c.Usage {
		k := fmt.Sprintf("%s.usage[%d]", key, i)
		if j, dup := seen[u]; dup {
			p.add(k, "%q duplicates %s.usage[%d]", u, key, j)
			continue
		}
		seen[u] = i
		if err := cost.CheckPath(u); err != nil {
			p.addErr(k, err)
		}
	}
}

// checkCostHeaders: a rule's cost header must differ from priority.header
// and upstream.timeout_header (each is read for its own purpose and
// removed before forwarding).
func (c *Config) checkCostHeaders(p *problems) {
	for i, h := range c.Hosts {
		tokens := false
		for _, q := range h.Quotas {
			tokens = tokens || q.UnitOrDefault() == QuotaTokens
		}
		if h.Cost == nil && !tokens {
			continue
		}
		name := h.Cost.Pricing().Header
		for _, other := range []struct{ key, name string }{{"priority.header", c.Priority.Header}, {"upstream.timeout_header", c.Upstream.TimeoutHeader}} {
			if http.CanonicalHeaderKey(other.name) == name {
				p.add(fmt.Sprintf("hosts[%d].cost.header", i), "must differ from %s, both are %q", other.key, name)
			}
		}
	}
}

// DecodeString reads a written size (ParseByteSize); it makes ByteSize a
// Scalar for the strict decoder (decode.go).
func (b *ByteSize) DecodeString(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// DecodeInt takes n bytes (validation checks the range).
func (b *ByteSize) DecodeInt(n int64) error {
	*b = ByteSize(n)
	return nil
}

// Describe names the forms a size is written in.
func (b *ByteSize) Describe(syntax Syntax) string {
	if syntax == JSON {
		return `a size ("1MiB", "512KiB") or an integer of bytes`
	}
	return `a size such as 65536 or "1MiB"`
}
