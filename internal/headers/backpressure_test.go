package headers

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestBackpressure(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	const maxPause = time.Minute
	epoch := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	const never = time.Duration(-1) // ok=false

	cases := []struct {
		name   string
		status int
		h      http.Header
		want   time.Duration // until - now; never = ok false
	}{
		// Retry-After, RFC 9110 §10.2.3.
		{name: "429 delay", status: 429, h: hdr("Retry-After", "5"), want: 5 * time.Second},
		{name: "503 delay", status: 503, h: hdr("Retry-After", "5"), want: 5 * time.Second},
		{name: "200 delay ignored", status: 200, h: hdr("Retry-After", "5"), want: never},
		{name: "500 delay ignored", status: 500, h: hdr("Retry-After", "5"), want: never},
		{name: "301 delay ignored", status: 301, h: hdr("Retry-After", "5"), want: never},
		{name: "zero delay", status: 429, h: hdr("Retry-After", "0"), want: never},
		{name: "delay capped", status: 429, h: hdr("Retry-After", "120"), want: maxPause},
		{name: "delay whitespace", status: 429, h: hdr("Retry-After", " 7 "), want: 7 * time.Second},
		{name: "delay leading zeros", status: 429, h: hdr("Retry-After", "007"), want: 7 * time.Second},
		{name: "negative delay", status: 429, h: hdr("Retry-After", "-5"), want: never},
		{name: "fractional delay", status: 429, h: hdr("Retry-After", "1.5"), want: never},
		{name: "garbage delay", status: 429, h: hdr("Retry-After", "soon"), want: never},
		{name: "empty delay", status: 429, h: hdr("Retry-After", ""), want: never},
		{name: "NaN delay", status: 429, h: hdr("Retry-After", "NaN"), want: never},
		{name: "largest delay", status: 429, h: hdr("Retry-After", "9223372036"), want: maxPause},
		{name: "overflowing delay", status: 429, h: hdr("Retry-After", "9223372037"), want: never},
		{name: "huge delay", status: 429, h: hdr("Retry-After", "99999999999999999999999"), want: never},
		{name: "IMF-fixdate", status: 429, h: hdr("Retry-After", now.Add(10*time.Second).Format(http.TimeFormat)), want: 10 * time.Second},
		{name: "RFC 850 date", status: 503, h: hdr("Retry-After", now.Add(20*time.Second).Format(time.RFC850)), want: 20 * time.Second},
		{name: "asctime date", status: 503, h: hdr("Retry-After", now.Add(30*time.Second).Format(time.ANSIC)), want: 30 * time.Second},
		{name: "date capped", status: 429, h: hdr("Retry-After", now.Add(time.Hour).Format(http.TimeFormat)), want: maxPause},
		{name: "past date", status: 429, h: hdr("Retry-After", now.Add(-time.Hour).Format(http.TimeFormat)), want: never},
		{name: "date now", status: 429, h: hdr("Retry-After", now.Format(http.TimeFormat)), want: never},
		{name: "bad date", status: 429, h: hdr("Retry-After", "Mon, 32 Foo 2025 99:99:99 GMT"), want: never},

		// X-RateLimit-*.
		{name: "x epoch", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch(20*time.Second)), want: 20 * time.Second},
		{name: "x epoch fractional", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch(20*time.Second)+".5"), want: 20500 * time.Millisecond},
		{name: "x delta", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "20"), want: 20 * time.Second},
		{name: "x delta on 429", status: 429, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "20"), want: 20 * time.Second},
		{name: "x delta fractional", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0.25"), want: 250 * time.Millisecond},
		{name: "x largest delta", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "999999999"), want: maxPause},
		{name: "x 1e9 is an epoch (2001)", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1000000000"), want: never},
		{name: "x epoch capped", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch(time.Hour)), want: maxPause},
		{name: "x epoch past", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch(-time.Second)), want: never},
		{name: "x epoch now", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch(0)), want: never},
		{name: "x zero delta", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0"), want: never},
		{name: "x remaining 00", status: 200, h: hdr("X-RateLimit-Remaining", "00", "X-RateLimit-Reset", "20"), want: 20 * time.Second},
		{name: "x remaining whitespace", status: 200, h: hdr("X-RateLimit-Remaining", " 0 ", "X-RateLimit-Reset", " 20 "), want: 20 * time.Second},
		{name: "x remaining left", status: 200, h: hdr("X-RateLimit-Remaining", "5", "X-RateLimit-Reset", "20"), want: never},
		{name: "x remaining negative", status: 200, h: hdr("X-RateLimit-Remaining", "-1", "X-RateLimit-Reset", "20"), want: never},
		{name: "x remaining garbage", status: 200, h: hdr("X-RateLimit-Remaining", "none", "X-RateLimit-Reset", "20"), want: never},
		{name: "x remaining empty", status: 200, h: hdr("X-RateLimit-Remaining", "", "X-RateLimit-Reset", "20"), want: never},
		{name: "x no remaining", status: 200, h: hdr("X-RateLimit-Reset", "20"), want: never},
		{name: "x no reset", status: 200, h: hdr("X-RateLimit-Remaining", "0"), want: never},
		{name: "x reset negative", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "-20"), want: never},
		{name: "x reset NaN", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "NaN"), want: never},
		{name: "x reset exponent", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1e3"), want: never},
		{name: "x reset overflow", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "99999999999999999999"), want: never},
		{name: "x reset milliseconds epoch", status: 200, h: hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1735787045000"), want: never},

		// RateLimit-Remaining / RateLimit-Reset (drafts up to -06).
		{name: "rl delta", status: 200, h: hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "10"), want: 10 * time.Second},
		{name: "rl decimal delta", status: 200, h: hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "1.5"), want: 1500 * time.Millisecond},
		{name: "rl parameters", status: 200, h: hdr("RateLimit-Remaining", "0;w=60", "RateLimit-Reset", "10;x"), want: 10 * time.Second},
		{name: "rl delta capped", status: 200, h: hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "3600"), want: maxPause},
		{name: "rl epoch-looking value is a delay", status: 200, h: hdr("RateLimit-Remaining", "0", "RateLimit-Reset", epoch(20*time.Second)), want: maxPause},
		{name: "rl remaining left", status: 200, h: hdr("RateLimit-Remaining", "1", "RateLimit-Reset", "10"), want: never},
		{name: "rl remaining decimal", status: 200, h: hdr("RateLimit-Remaining", "0.0", "RateLimit-Reset", "10"), want: never},
		{name: "rl remaining garbage", status: 200, h: hdr("RateLimit-Remaining", "zero", "RateLimit-Reset", "10"), want: never},
		{name: "rl reset negative", status: 200, h: hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "-10"), want: never},
		{name: "rl reset garbage", status: 200, h: hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "10s"), want: never},
		{name: "rl reset zero", status: 200, h: hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "0"), want: never},
		{name: "rl no reset", status: 200, h: hdr("RateLimit-Remaining", "0"), want: never},

		// RateLimit, newer List form.
		{name: "policy exhausted", status: 200, h: hdr("RateLimit", `"default";r=0;t=30`), want: 30 * time.Second},
		{name: "policy left", status: 200, h: hdr("RateLimit", `"default";r=5;t=30`), want: never},
		{name: "policy token name", status: 200, h: hdr("RateLimit", `default;r=0;t=30`), want: 30 * time.Second},
		{name: "policy decimal t", status: 200, h: hdr("RateLimit", `"default";r=0;t=2.5`), want: 2500 * time.Millisecond},
		{name: "policy capped", status: 200, h: hdr("RateLimit", `"default";r=0;t=3600`), want: maxPause},
		{name: "policy one of two exhausted", status: 200, h: hdr("RateLimit", `"a";r=5;t=10, "b";r=0;t=40`), want: 40 * time.Second},
		{name: "policy latest of two", status: 200, h: hdr("RateLimit", `"a";r=0;t=40, "b";r=0;t=10`), want: 40 * time.Second},
		{name: "policy on two lines", status: 200, h: hdr("RateLimit", `"a";r=5;t=1`, "RateLimit", `"b";r=0;t=9`), want: 9 * time.Second},
		{name: "policy on an inner list", status: 200, h: hdr("RateLimit", `("a" "b");r=0;t=12`), want: 12 * time.Second},
		{name: "policy without t", status: 200, h: hdr("RateLimit", `"default";r=0`), want: never},
		{name: "policy without r", status: 200, h: hdr("RateLimit", `"default";t=30`), want: never},
		{name: "policy negative t", status: 200, h: hdr("RateLimit", `"default";r=0;t=-1`), want: never},
		{name: "policy zero t", status: 200, h: hdr("RateLimit", `"default";r=0;t=0`), want: never},
		{name: "policy string t", status: 200, h: hdr("RateLimit", `"default";r=0;t="30"`), want: never},
		{name: "policy boolean r", status: 200, h: hdr("RateLimit", `"default";r;t=30`), want: never},
		{name: "policy overflowing t", status: 200, h: hdr("RateLimit", `"default";r=0;t=999999999999999`), want: never},
		{name: "policy overflowing decimal t", status: 200, h: hdr("RateLimit", `"default";r=0;t=999999999999.999`), want: never},
		{name: "policy largest t", status: 200, h: hdr("RateLimit", `"default";r=0;t=9223372036`), want: maxPause},
		{name: "policy invalid field", status: 200, h: hdr("RateLimit", `"default";r=0;t=30,`), want: never},

		// RateLimit, older Dictionary form.
		{name: "dictionary exhausted", status: 200, h: hdr("RateLimit", "limit=100, remaining=0, reset=30"), want: 30 * time.Second},
		{name: "dictionary reset first", status: 200, h: hdr("RateLimit", "reset=30, remaining=0"), want: 30 * time.Second},
		{name: "dictionary left", status: 200, h: hdr("RateLimit", "limit=100, remaining=1, reset=30"), want: never},
		{name: "dictionary no reset", status: 200, h: hdr("RateLimit", "limit=100, remaining=0"), want: never},
		{name: "dictionary reset not a number", status: 200, h: hdr("RateLimit", "remaining=0, reset=soon"), want: never},
		{name: "dictionary duplicate, last wins", status: 200, h: hdr("RateLimit", "remaining=0, reset=30, remaining=5"), want: never},
		{name: "dictionary on two lines", status: 200, h: hdr("RateLimit", "limit=100, remaining=0", "RateLimit", "reset=25"), want: 25 * time.Second},
		{name: "dictionary with policy parameters", status: 200, h: hdr("RateLimit", "p=?1;r=0;t=15, limit=5"), want: 15 * time.Second},
		{name: "dictionary trailing comma", status: 200, h: hdr("RateLimit", "limit=100, remaining=0, reset=30,"), want: never},
		{name: "garbage", status: 200, h: hdr("RateLimit", "!!!"), want: never},
		{name: "empty", status: 200, h: hdr("RateLimit", ""), want: never},

		// Several signals: the latest wins.
		{name: "latest wins", status: 429, h: hdr(
			"Retry-After", "10",
			"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "20",
			"RateLimit", `"d";r=0;t=30`,
			"RateLimit-Remaining", "0", "RateLimit-Reset", "5"), want: 30 * time.Second},
		{name: "latest wins, Retry-After", status: 503, h: hdr(
			"Retry-After", "50",
			"RateLimit", `"d";r=0;t=30`), want: 50 * time.Second},
		{name: "a past signal does not hide a future one", status: 429, h: hdr(
			"Retry-After", now.Add(-time.Hour).Format(http.TimeFormat),
			"RateLimit", `"d";r=0;t=3`), want: 3 * time.Second},
		{name: "invalid signals do not hide a valid one", status: 429, h: hdr(
			"Retry-After", "garbage",
			"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "NaN",
			"RateLimit-Remaining", "0", "RateLimit-Reset", "4"), want: 4 * time.Second},
		{name: "no headers", status: 429, h: http.Header{}, want: never},
		{name: "nil header", status: 429, h: nil, want: never},
		{name: "lower-case keys are canonicalised by Add", status: 200, h: hdr("x-ratelimit-remaining", "0", "x-ratelimit-reset", "8"), want: 8 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkBackpressure(t, tc.status, tc.h, now, maxPause, tc.want, never)
		})
	}
}

func checkBackpressure(t *testing.T, status int, h http.Header, now time.Time, maxPause, want, never time.Duration) {
	t.Helper()
	until, ok := Backpressure(status, h, now, maxPause)
	if want == never {
		if ok {
			t.Fatalf("Backpressure(%d, %v) = now%+v, true; want ok=false", status, h, until.Sub(now))
		}
		if !until.IsZero() {
			t.Fatalf("Backpressure(%d, %v) = %v, false; want the zero time", status, h, until)
		}
		return
	}
	if !ok {
		t.Fatalf("Backpressure(%d, %v) ok=false; want now%+v", status, h, want)
	}
	if got := until.Sub(now); got != want {
		t.Fatalf("Backpressure(%d, %v) = now%+v, want now%+v", status, h, got, want)
	}
}

func TestBackpressureMaxPause(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := http.Header{"Retry-After": {"30"}}
	cases := []struct {
		name     string
		maxPause time.Duration
		want     time.Duration
	}{
		{name: "above the signal", maxPause: time.Hour, want: 30 * time.Second},
		{name: "equal to the signal", maxPause: 30 * time.Second, want: 30 * time.Second},
		{name: "below the signal", maxPause: time.Second, want: time.Second},
		{name: "one nanosecond", maxPause: 1, want: 1},
		{name: "zero disables", maxPause: 0, want: -1},
		{name: "negative disables", maxPause: -time.Second, want: -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkBackpressure(t, http.StatusTooManyRequests, h, now, tc.maxPause, tc.want, -1)
		})
	}
}

func TestBackpressureDoesNotModifyHeader(t *testing.T) {
	h := http.Header{"Retry-After": {"5"}, "Ratelimit": {`"a";r=0;t=3`, `"b";r=0;t=4`}}
	before := h.Clone()
	Backpressure(429, h, time.Unix(0, 0), time.Minute)
	if len(h) != len(before) || h.Get("Retry-After") != "5" || len(h.Values("Ratelimit")) != 2 {
		t.Fatalf("header changed: %v, was %v", h, before)
	}
}

func TestBackpressureHeaderKeysAreCanonical(t *testing.T) {
	for _, k := range []string{"Retry-After", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Ratelimit-Remaining", "Ratelimit-Reset", "Ratelimit"} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("key %q is not canonical (%q)", k, c)
		}
	}
}
