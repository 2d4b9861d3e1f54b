package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Quota is a per-window quota, limits.quotas or hosts[].quotas
// (docs/configuration.md, "Quotas"): at most Limit units in any interval
// of length Per.
type Quota struct {
	// Limit is the most units admitted in any interval of length Per.
	Limit int `mapstructure:"limit" yaml:"limit" json:"limit"`
	// Per is the window: MinQuotaPer to MaxQuotaPer.
	Per time.Duration `mapstructure:"per" yaml:"per" json:"per" example:"1m,1h,24h"`
	// Unit is QuotaRequests (also when empty) or QuotaTokens (hosts
	// rules only).
	Unit string `mapstructure:"unit" yaml:"unit,omitempty" json:"unit,omitempty"`
}

// Units of a Quota.
const (
	QuotaRequests = "requests"
	QuotaTokens   = "tokens"
)

// Bounds of a Quota.
const (
	MinQuotaPer   = time.Second
	MaxQuotaPer   = 24 * time.Hour
	maxQuotaLimit = 1_000_000_000
)

// UnitOrDefault is q.Unit, QuotaRequests when empty.
func (q Quota) UnitOrDefault() string {
	if q.Unit == "" {
		return QuotaRequests
	}
	return q.Unit
}

// PerString is the window as configured is usually written: "1m", "1h",
// "24h", "1m30s" (time.Duration.String without its trailing zero units).
func (q Quota) PerString() string { return FormatPer(q.Per) }

// FormatPer formats a quota window without trailing zero units: 1m0s is
// "1m", 1h0m0s "1h", 1h30m0s "1h30m".
func FormatPer(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes the quota as the configuration spells it:
// {"limit":5000,"per":"1h","unit":"requests"}.
func (q Quota) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Limit int    `json:"limit"`
		Per   string `json:"per"`
		Unit  string `json:"unit"`
	}{q.Limit, q.PerString(), q.UnitOrDefault()})
}

// checkQuotas checks the quotas at key ("limits.quotas",
// "hosts[0].quotas"); tokens says whether unit tokens is accepted there.
func checkQuotas(p *problems, key string, qs []Quota, tokens bool) {
	type window struct {
		per  time.Duration
		unit string
	}
	seen := make(map[window]int, len(qs))
	for i, q := range qs {
		k := fmt.Sprintf("%s[%d].", key, i)
		w := window{q.Per, q.UnitOrDefault()}
		if j, dup := seen[w]; dup {
			p.add(k+"per", "%s duplicates %s[%d] (same per and unit): keep the tighter one", FormatPer(q.Per), key, j)
		} else {
			seen[w] = i
		}
		switch {
		case q.Limit < 1:
			p.add(k+"limit", "must be a positive integer, got %d", q.Limit)
		case q.Limit > maxQuotaLimit:
			p.add(k+"limit", "must be <= %d, got %d", maxQuotaLimit, q.Limit)
		}
		if q.Per < MinQuotaPer || q.Per > MaxQuotaPer {
			p.add(k+"per", "%v is not a window: between %v and %v", q.Per, FormatPer(MinQuotaPer), FormatPer(MaxQuotaPer))
		}
		switch q.Unit {
		case "", QuotaRequests:
		case QuotaTokens:
			if !tokens {
				p.add(k+"unit", "tokens is accepted only in hosts[].quotas, where hosts[].cost prices requests; here use requests")
			}
		default:
			p.add(k+"unit", "must be requests or tokens, got %q", q.Unit)
		}
	}
}
