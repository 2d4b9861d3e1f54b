package headers

import (
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func hdrOf(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// The reproductions, and each provider family's exhausted
// dimensions: Backpressure pauses until that dimension's reset.
func TestBackpressureProviders(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	const maxPause = time.Minute
	rfc := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	const never = time.Duration(-1)
	cases := []struct {
		name   string
		status int
		h      http.Header
		want   time.Duration
	}{
		// retry-after-ms, on 429 and 503 like Retry-After.
		{"ms alone", 429, hdrOf("retry-after-ms", "1500"), 1500 * time.Millisecond},
		{"ms on 503", 503, hdrOf("retry-after-ms", "250"), 250 * time.Millisecond},
		{"ms fraction", 429, hdrOf("retry-after-ms", "12.5"), 12500 * time.Microsecond},
		{"ms on 200 ignored", 200, hdrOf("retry-after-ms", "1500"), never},
		{"ms zero", 429, hdrOf("retry-after-ms", "0"), never},
		{"ms negative", 429, hdrOf("retry-after-ms", "-5"), never},
		{"ms garbage", 429, hdrOf("retry-after-ms", "1500ms"), never},
		{"ms exponent", 429, hdrOf("retry-after-ms", "1e3"), never},
		{"ms capped", 429, hdrOf("retry-after-ms", "3600000"), maxPause},
		{"ms refines its rounded Retry-After", 429, hdrOf("Retry-After", "2", "retry-after-ms", "1500"), 1500 * time.Millisecond},
		{"ms refines a rounded-down Retry-After", 429, hdrOf("Retry-After", "1", "retry-after-ms", "1500"), 1500 * time.Millisecond},
		{"ms and a far longer Retry-After: the later", 429, hdrOf("Retry-After", "30", "retry-after-ms", "1500"), 30 * time.Second},
		{"Retry-After and a far longer ms: the later", 429, hdrOf("Retry-After", "1", "retry-after-ms", "9000"), 9 * time.Second},
		{"garbage ms leaves Retry-After", 429, hdrOf("Retry-After", "3", "retry-after-ms", "x"), 3 * time.Second},

		// OpenAI / Azure OpenAI.
		{"openai requests", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "2s"), 2 * time.Second},
		{"openai tokens", 200, hdrOf("x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "1.5s"), 1500 * time.Millisecond},
		{"openai ms", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "12ms"), 12 * time.Millisecond},
		{"openai compound", 200, hdrOf("x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "1m2.5s"), 62500 * time.Millisecond},
		{"openai capped", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "6m0s"), maxPause},
		{"openai zero reset", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "0s"), never},
		{"openai left", 200, hdrOf("x-ratelimit-remaining-requests", "3", "x-ratelimit-reset-requests", "2s"), never},
		{"openai no reset", 200, hdrOf("x-ratelimit-remaining-requests", "0"), never},
		{"openai negative reset", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "-2s"), never},
		{"openai unitless reset", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "2"), never},
		{"openai spaced reset", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "1m 2s"), never},
		{"openai day unit", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "1d"), never},
		{"openai garbage remaining", 200, hdrOf("x-ratelimit-remaining-requests", "none", "x-ratelimit-reset-requests", "2s"), never},
		{"openai reset of the other dimension", 200, hdrOf("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-tokens", "2s"), never},
		{"openai both, the later", 200, hdrOf(
			"x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "2s",
			"x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "5s"), 5 * time.Second},
		{"openai tokens left, requests out", 200, hdrOf(
			"x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "2s",
			"x-ratelimit-remaining-tokens", "900", "x-ratelimit-reset-tokens", "5s"), 2 * time.Second},

		// Anthropic.
		{"anthropic requests", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", rfc(2*time.Second)), 2 * time.Second},
		{"anthropic whole seconds", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "2025-01-02T03:04:09Z"), 4 * time.Second},
		{"anthropic offset", 200, hdrOf("anthropic-ratelimit-tokens-remaining", "0", "anthropic-ratelimit-tokens-reset", "2025-01-02T04:04:08+01:00"), 3 * time.Second},
		{"anthropic input tokens", 200, hdrOf("anthropic-ratelimit-input-tokens-remaining", "0", "anthropic-ratelimit-input-tokens-reset", rfc(7*time.Second)), 7 * time.Second},
		{"anthropic output tokens", 200, hdrOf("anthropic-ratelimit-output-tokens-remaining", "0", "anthropic-ratelimit-output-tokens-reset", rfc(8*time.Second)), 8 * time.Second},
		{"anthropic past reset", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", rfc(-time.Second)), never},
		{"anthropic reset now", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", rfc(0)), never},
		{"anthropic capped", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", rfc(time.Hour)), maxPause},
		{"anthropic left", 200, hdrOf("anthropic-ratelimit-requests-remaining", "1", "anthropic-ratelimit-requests-reset", rfc(2*time.Second)), never},
		{"anthropic HTTP-date reset", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", now.Add(2*time.Second).Format(http.TimeFormat)), never},
		{"anthropic epoch reset", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", strconv.FormatInt(now.Unix()+2, 10)), never},
		{"anthropic no zone", 200, hdrOf("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "2025-01-02T03:04:09"), never},

		// IETF RateLimit-Policy alone says nothing of what is left.
		{"policy alone", 200, hdrOf("RateLimit-Policy", `"default";q=100;w=60`), never},
		{"policy with exhausted RateLimit", 200, hdrOf("RateLimit-Policy", `"default";q=100;w=60`, "RateLimit", `"default";r=0;t=20`), 20 * time.Second},

		// Families combine: the latest wins.
		{"every family", 429, hdrOf(
			"Retry-After", "1", "retry-after-ms", "1200",
			"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "3",
			"x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "4s",
			"anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", rfc(5*time.Second)), 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			until, ok := Backpressure(tc.status, tc.h, now, maxPause)
			want := tc.want
			if want > maxPause {
				want = maxPause
			}
			switch {
			case want == never && ok:
				t.Fatalf("paused %v, want no pause", until.Sub(now))
			case want != never && !ok:
				t.Fatalf("no pause, want %v", want)
			case want != never && !until.Equal(now.Add(want)):
				t.Fatalf("paused %v, want %v", until.Sub(now), want)
			}
		})
	}
}

func TestParseResetDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"6m0s": 6 * time.Minute, "1.5s": 1500 * time.Millisecond, "12ms": 12 * time.Millisecond,
		"1h2m3.5s": time.Hour + 2*time.Minute + 3500*time.Millisecond, "0s": 0, " 2s\t": 2 * time.Second,
		"7us": 7 * time.Microsecond, "7µs": 7 * time.Microsecond, "9ns": 9, "2562047h47m16.854775807s": 1<<63 - 1,
		"17.999s": 17999 * time.Millisecond, ".5s": 500 * time.Millisecond,
	} {
		if got, ok := ParseResetDuration(in); !ok || got != want {
			t.Errorf("ParseResetDuration(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{
		"", "0", "2", "-2s", "+2s", "1m 2s", "2 s", "1d", "2S", "s", "1.2.3s", "NaN", "Inf", "1e3s",
		"2562047h47m16.854775808s", "9999999999h", "2s,", "2s;q=1",
	} {
		if got, ok := ParseResetDuration(in); ok {
			t.Errorf("ParseResetDuration(%q) = %v, ok; want not ok", in, got)
		}
	}
}

func TestProviderSignals(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return now.Add(d) }
	sig := func(f Family, name string, u Unit, rem, lim int64, reset time.Time) Signal {
		return Signal{Family: f, Name: name, Unit: u, Remaining: rem, Limit: lim, Reset: reset}
	}
	none := time.Time{}
	cases := []struct {
		name string
		h    http.Header
		want []Signal
	}{
		{"nothing", hdrOf("Content-Type", "text/plain", "Retry-After", "5"), nil},
		{"nil", nil, nil},
		{"github", hdrOf("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999", "X-RateLimit-Used", "1",
			"X-RateLimit-Reset", strconv.FormatInt(now.Unix()+3600, 10), "X-RateLimit-Resource", "core"),
			[]Signal{sig(FamilyXRateLimit, "core", UnitRequests, 4999, 5000, at(time.Hour))}},
		{"github delta", hdrOf("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1.5"),
			[]Signal{sig(FamilyXRateLimit, "", UnitRequests, 0, -1, at(1500*time.Millisecond))}},
		{"github past reset drops the count", hdrOf("X-RateLimit-Limit", "60", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(now.Unix()-1, 10)),
			[]Signal{sig(FamilyXRateLimit, "", UnitRequests, -1, 60, none)}},
		{"github garbage", hdrOf("X-RateLimit-Remaining", "-1", "X-RateLimit-Reset", "soon"), nil},
		{"openai", hdrOf(
			"x-ratelimit-limit-requests", "60", "x-ratelimit-remaining-requests", "59", "x-ratelimit-reset-requests", "1s",
			"x-ratelimit-limit-tokens", "150000", "x-ratelimit-remaining-tokens", "149984", "x-ratelimit-reset-tokens", "6m0s"),
			[]Signal{
				sig(FamilyOpenAI, "requests", UnitRequests, 59, 60, at(time.Second)),
				sig(FamilyOpenAI, "tokens", UnitTokens, 149984, 150000, at(6*time.Minute)),
			}},
		{"azure: remaining only", hdrOf("x-ratelimit-remaining-requests", "119", "x-ratelimit-remaining-tokens", "119000"),
			[]Signal{
				sig(FamilyOpenAI, "requests", UnitRequests, 119, -1, none),
				sig(FamilyOpenAI, "tokens", UnitTokens, 119000, -1, none),
			}},
		{"openai 0s reset: the window ended", hdrOf("x-ratelimit-limit-requests", "60", "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "0s"),
			[]Signal{sig(FamilyOpenAI, "requests", UnitRequests, -1, 60, none)}},
		{"openai garbage reset is absent", hdrOf("x-ratelimit-remaining-requests", "5", "x-ratelimit-reset-requests", "soon"),
			[]Signal{sig(FamilyOpenAI, "requests", UnitRequests, 5, -1, none)}},
		{"openai overflowing count", hdrOf("x-ratelimit-remaining-requests", "99999999999999999999"), nil},
		{"anthropic", hdrOf(
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "49",
			"anthropic-ratelimit-requests-reset", "2025-01-02T03:05:05Z",
			"anthropic-ratelimit-tokens-limit", "90000", "anthropic-ratelimit-tokens-remaining", "0",
			"anthropic-ratelimit-tokens-reset", "2025-01-02T03:04:06.5Z",
			"anthropic-ratelimit-input-tokens-limit", "80000", "anthropic-ratelimit-input-tokens-remaining", "79000",
			"anthropic-ratelimit-input-tokens-reset", "2025-01-02T03:04:06Z",
			"anthropic-ratelimit-output-tokens-limit", "10000", "anthropic-ratelimit-output-tokens-remaining", "0",
			"anthropic-ratelimit-output-tokens-reset", "2025-01-02T03:04:01Z"),
			[]Signal{
				sig(FamilyAnthropic, "requests", UnitRequests, 49, 50, at(time.Minute)),
				sig(FamilyAnthropic, "tokens", UnitTokens, 0, 90000, at(1500*time.Millisecond)),
				sig(FamilyAnthropic, "input-tokens", UnitTokens, 79000, 80000, at(time.Second)),
				sig(FamilyAnthropic, "output-tokens", UnitTokens, -1, 10000, none), // reset in the past
			}},
		{"ietf list with policies", hdrOf(
			"RateLimit-Policy", `"burst";q=100;w=60, "daily";q=1000;w=86400;qu="requests", "bytes";q=5000;qu="content-bytes"`,
			"RateLimit", `"burst";r=0;t=30, "daily";r=900;t=3600, "bytes";r=10;t=5, "unknown";r=1`),
			[]Signal{
				sig(FamilyIETF, "burst", UnitRequests, 0, 100, at(30*time.Second)),
				sig(FamilyIETF, "daily", UnitRequests, 900, 1000, at(time.Hour)),
				sig(FamilyIETF, "bytes", UnitOther, 10, 5000, at(5*time.Second)),
				sig(FamilyIETF, "unknown", UnitRequests, 1, -1, none),
			}},
		{"ietf dictionary", hdrOf("RateLimit", "limit=100, remaining=7, reset=30"),
			[]Signal{sig(FamilyIETF, "", UnitRequests, 7, 100, at(30*time.Second))}},
		{"ietf separate fields", hdrOf("RateLimit-Limit", "10", "RateLimit-Remaining", "3", "RateLimit-Reset", "2.5"),
			[]Signal{sig(FamilyIETF, "", UnitRequests, 3, 10, at(2500*time.Millisecond))}},
		{"ietf invalid field", hdrOf("RateLimit", `"a";r=0;t=5,`), nil},
		{"ietf policy alone", hdrOf("RateLimit-Policy", `"a";q=5;w=1`), nil},
		{"families in order", hdrOf(
			"RateLimit", `"p";r=2;t=2`,
			"anthropic-ratelimit-requests-remaining", "3",
			"x-ratelimit-remaining-tokens", "4",
			"X-RateLimit-Remaining", "5"),
			[]Signal{
				sig(FamilyXRateLimit, "", UnitRequests, 5, -1, none),
				sig(FamilyOpenAI, "tokens", UnitTokens, 4, -1, none),
				sig(FamilyAnthropic, "requests", UnitRequests, 3, -1, none),
				sig(FamilyIETF, "p", UnitRequests, 2, -1, at(2*time.Second)),
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ProviderSignals(tc.h, now)
			if !equalSignals(got, tc.want) {
				t.Fatalf("ProviderSignals:\n got %s\nwant %s", fmtSignals(got), fmtSignals(tc.want))
			}
		})
	}
}

// equalSignals compares with time.Time.Equal: the location of a reset
// does not matter.
func equalSignals(a, b []Signal) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Family != y.Family || x.Name != y.Name || x.Unit != y.Unit || x.Remaining != y.Remaining || x.Limit != y.Limit || !x.Reset.Equal(y.Reset) {
			return false
		}
	}
	return true
}

func fmtSignals(ss []Signal) string {
	s := "["
	for _, x := range ss {
		reset := "-"
		if !x.Reset.IsZero() {
			reset = x.Reset.Format(time.RFC3339Nano)
		}
		s += fmt.Sprintf("{%v %q %v rem=%d lim=%d reset=%s} ", x.Family, x.Name, x.Unit, x.Remaining, x.Limit, reset)
	}
	return s + "]"
}

func TestRateLimitPolicies(t *testing.T) {
	cases := []struct {
		name string
		h    http.Header
		want []RateLimitPolicy
	}{
		{"named", hdrOf("RateLimit-Policy", `"default";q=100;w=60`),
			[]RateLimitPolicy{{Name: "default", Quota: 100, Unit: UnitRequests, Window: time.Minute}}},
		{"several, two lines, units", hdrOf("RateLimit-Policy", `"a";q=10;w=1, b;q=5000;w=3600;qu="content-bytes"`, "RateLimit-Policy", `"c";q=7;qu="tokens"`),
			[]RateLimitPolicy{
				{Name: "a", Quota: 10, Unit: UnitRequests, Window: time.Second},
				{Name: "b", Quota: 5000, Unit: UnitOther, Window: time.Hour},
				{Name: "c", Quota: 7, Unit: UnitTokens},
			}},
		{"older unnamed form", hdrOf("RateLimit-Policy", `100;w=60, 1000;w=3600;burst=1000`),
			[]RateLimitPolicy{{Quota: 100, Unit: UnitRequests, Window: time.Minute}, {Quota: 1000, Unit: UnitRequests, Window: time.Hour}}},
		{"members without a valid quota skipped", hdrOf("RateLimit-Policy", `"a";w=60, "b";q=-1, "c";q=1.5, "d";q=3;w=-1`),
			[]RateLimitPolicy{{Name: "d", Quota: 3, Unit: UnitRequests}}},
		{"invalid field", hdrOf("RateLimit-Policy", `"a";q=1;w=60,`), nil},
		{"absent", hdrOf("RateLimit", `"a";r=1`), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := RateLimitPolicies(tc.h); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
