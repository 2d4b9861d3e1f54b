package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Quotas are validated like every key: each problem names the quota's key
// and says why; tokens is accepted only in hosts rules.
func TestValidateQuotas(t *testing.T) {
	q := func(limit int, per time.Duration, unit string) Quota {
		return Quota{Limit: limit, Per: per, Unit: unit}
	}
	tests := []struct {
		name   string
		limits []Quota
		hosts  []Quota
		want   string
	}{
		{"none", nil, nil, ""},
		{"requests per minute, hour, day", []Quota{q(500, time.Minute, ""), q(5000, time.Hour, "requests"), q(10000, 24*time.Hour, "")}, nil, ""},
		{"tokens in a hosts rule", nil, []Quota{q(90000, time.Minute, "tokens")}, ""},
		{"1s and 24h are windows", []Quota{q(1, time.Second, ""), q(1, 24*time.Hour, "")}, nil, ""},
		{"per 0", []Quota{q(5, 0, "")}, nil, "limits.quotas[0].per: 0s is not a window: between 1s and 24h"},
		{"per too short", []Quota{q(5, 500*time.Millisecond, "")}, nil, "limits.quotas[0].per: 500ms is not a window: between 1s and 24h"},
		{"per too long", nil, []Quota{q(5, 25*time.Hour, "")}, "hosts[0].quotas[0].per: 25h0m0s is not a window: between 1s and 24h"},
		{"negative limit", []Quota{q(5, time.Second, ""), q(-5, time.Minute, "")}, nil, "limits.quotas[1].limit: must be a positive integer, got -5"},
		{"zero limit", nil, []Quota{q(0, time.Minute, "")}, "hosts[0].quotas[0].limit: must be a positive integer, got 0"},
		{"huge limit", []Quota{q(2_000_000_000, time.Minute, "")}, nil, "limits.quotas[0].limit: must be <= 1000000000, got 2000000000"},
		{"same window twice", nil, []Quota{q(500, time.Minute, ""), q(400, time.Minute, "requests")}, "hosts[0].quotas[1].per: 1m duplicates hosts[0].quotas[0] (same per and unit): keep the tighter one"},
		{"same window, other unit", nil, []Quota{q(500, time.Minute, ""), q(400, time.Minute, "tokens")}, ""},
		{"unknown unit", []Quota{q(5, time.Minute, "bytes")}, nil, `limits.quotas[0].unit: must be requests or tokens, got "bytes"`},
		{"tokens globally", []Quota{q(5, time.Minute, "tokens")}, nil, "limits.quotas[0].unit: tokens is accepted only in hosts[].quotas, where hosts[].cost prices requests; here use requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Limits.Quotas = tt.limits
			if tt.hosts != nil {
				c.Hosts = []HostRule{{Match: "api.example.com", Quotas: tt.hosts}}
			}
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
			// The admin API's checks name the same problems without the
			// "limits." prefix.
			if tt.limits != nil && tt.want != "" && strings.HasPrefix(tt.want, "limits.") {
				if err := c.Limits.Validate(); err == nil || err.Error() != strings.TrimPrefix(tt.want, "limits.") {
					t.Errorf("Limits.Validate() = %v, want %q", err, strings.TrimPrefix(tt.want, "limits."))
				}
			}
		})
	}
}

// A quota's JSON form is the configuration's: per as written ("1m", not
// nanoseconds), unit defaulted.
func TestQuotaJSON(t *testing.T) {
	for _, tt := range []struct {
		q    Quota
		want string
	}{
		{Quota{Limit: 500, Per: time.Minute}, `{"limit":500,"per":"1m","unit":"requests"}`},
		{Quota{Limit: 5000, Per: time.Hour, Unit: "requests"}, `{"limit":5000,"per":"1h","unit":"requests"}`},
		{Quota{Limit: 10000, Per: 24 * time.Hour}, `{"limit":10000,"per":"24h","unit":"requests"}`},
		{Quota{Limit: 100, Per: time.Second, Unit: "tokens"}, `{"limit":100,"per":"1s","unit":"tokens"}`},
		{Quota{Limit: 3, Per: 90 * time.Second}, `{"limit":3,"per":"1m30s","unit":"requests"}`},
		{Quota{Limit: 3, Per: 90 * time.Minute}, `{"limit":3,"per":"1h30m","unit":"requests"}`},
	} {
		b, err := json.Marshal(tt.q)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.q, b, err, tt.want)
		}
	}
}
