package proxy

import (
	"net/http/httptest"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/hostport"
)

func intp(i int) *int { return &i }

// TestRuleHostMatching: priority.rules[].host matches like hosts[].match:
// exact or *.suffix, with an optional port, IPv6 in brackets.
func TestRuleHostMatching(t *testing.T) {
	cfg := config.Default()
	cfg.Priority.Rules = []config.PriorityRule{
		{Host: "api.example.com:8443", Priority: intp(1)},
		{Host: "*.example.com", Priority: intp(2)},
		{Host: "[2001:db8::1]:443", Priority: intp(4)},
		{Host: "10.0.0.1", Priority: intp(5)},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	pol, err := compilePolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dest string
		want int
	}{
		{"api.example.com:8443", 1},
		{"API.Example.com:8443", 1},
		{"api.example.com:443", 2}, // the wildcard, not the port-specific rule
		{"example.com:443", 3},     // the apex is not a subdomain
		{"[2001:db8::1]:443", 4},
		{"[2001:db8::1]:80", 3},
		{"10.0.0.1:9000", 5},
		{"other.org:80", 3},
	} {
		r := httptest.NewRequest("GET", "http://"+tc.dest+"/", nil)
		dest, err := hostport.Parse(tc.dest)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pol.urgency(r, nil, dest, "/", "")
		if err != nil || got != tc.want {
			t.Errorf("%s: urgency %d (%v), want %d", tc.dest, got, err, tc.want)
		}
	}
}
