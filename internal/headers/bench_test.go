package headers

import (
	"net/http"
	"testing"
	"time"
)

func BenchmarkParsePriority(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"urgency", "u=2"},
		{"urgency_incremental", "u=5, i"},
		{"unknown_members", `u=1, x=(a "b");q=1.5, y=:aGk=:, z=?0`},
		{"invalid", "u=1, !"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ParsePriority(bc.in)
			}
		})
	}
}

func BenchmarkParseUrgency(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"valid", "3"},
		{"invalid", "banana"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = ParseUrgency(bc.in)
			}
		})
	}
}

func BenchmarkParseTimeout(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseTimeout("2.5s")
	}
}

func BenchmarkBackpressure(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	for _, bc := range []struct {
		name string
		h    http.Header
	}{
		{"none", http.Header{"Content-Type": {"application/json"}}},
		{"x_ratelimit_left", http.Header{"X-Ratelimit-Remaining": {"42"}, "X-Ratelimit-Reset": {"1700000030"}}},
		{"ratelimit_policy", http.Header{"Ratelimit": {`"default";r=0;t=30`}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Backpressure(200, bc.h, now, time.Minute)
			}
		})
	}
}

func BenchmarkProxyStatus(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ProxyStatus(ErrorTypeConnectionLimitReached, "queue full")
	}
}

func BenchmarkServerTiming(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ServerTiming(125*time.Microsecond, 12500*time.Microsecond)
	}
}
