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
		{"typical", typicalResponse},
		{"x_ratelimit_left", http.Header{"X-Ratelimit-Remaining": {"42"}, "X-Ratelimit-Reset": {"1700000030"}}},
		{"ratelimit_policy", http.Header{"Ratelimit": {`"default";r=0;t=30`}}},
		{"openai_left", openAIResponse},
		{"anthropic_left", anthropicResponse},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Backpressure(200, bc.h, now, time.Minute)
			}
		})
	}
}

// typicalResponse has the fields of a common API response, none about
// rate limits.
var typicalResponse = http.Header{
	"Content-Type": {"application/json"}, "Content-Length": {"1234"}, "Date": {"Tue, 14 Nov 2023 22:13:20 GMT"},
	"Server": {"nginx"}, "Cache-Control": {"no-store"}, "Vary": {"Accept-Encoding"}, "X-Request-Id": {"req_123"},
	"Strict-Transport-Security": {"max-age=31536000"}, "Cf-Ray": {"82abc-SJC"}, "Connection": {"keep-alive"},
}

// Typical LLM API responses: every dimension stated, nothing exhausted.
var (
	openAIResponse = http.Header{
		"Content-Type":                   {"application/json"},
		"X-Ratelimit-Limit-Requests":     {"10000"},
		"X-Ratelimit-Remaining-Requests": {"9999"},
		"X-Ratelimit-Reset-Requests":     {"6ms"},
		"X-Ratelimit-Limit-Tokens":       {"2000000"},
		"X-Ratelimit-Remaining-Tokens":   {"1999975"},
		"X-Ratelimit-Reset-Tokens":       {"0s"},
	}
	anthropicResponse = http.Header{
		"Content-Type":                           {"application/json"},
		"Anthropic-Ratelimit-Requests-Limit":     {"4000"},
		"Anthropic-Ratelimit-Requests-Remaining": {"3999"},
		"Anthropic-Ratelimit-Requests-Reset":     {"2023-11-14T22:13:21Z"},
		"Anthropic-Ratelimit-Tokens-Limit":       {"400000"},
		"Anthropic-Ratelimit-Tokens-Remaining":   {"399000"},
		"Anthropic-Ratelimit-Tokens-Reset":       {"2023-11-14T22:13:20Z"},
	}
)

func BenchmarkProviderSignals(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	for _, bc := range []struct {
		name string
		h    http.Header
	}{
		{"none", http.Header{"Content-Type": {"application/json"}}},
		{"openai", openAIResponse},
		{"anthropic", anthropicResponse},
		{"ietf_policy", http.Header{"Ratelimit-Policy": {`"burst";q=100;w=60, "day";q=1000;w=86400`}, "Ratelimit": {`"burst";r=50;t=30, "day";r=900;t=3600`}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ProviderSignals(bc.h, now)
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
