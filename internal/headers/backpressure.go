package headers

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// epochThreshold separates the two readings of X-RateLimit-Reset: values
// below 10^9 seconds (about 31.7 years) are a delay, others a Unix time
// (docs/shaping.md, "2. Upstream back-pressure").
const epochThreshold = 1e9 * time.Second

// Backpressure reads an upstream's back-pressure signals from a response
// (docs/shaping.md, "Upstream back-pressure" and "Provider rate-limit
// headers") and returns the time until which requests to that destination
// should be held back. ok is false when the response carries no usable
// signal.
//
// The signals, all optional and all considered:
//
//   - status 429 or 503 with Retry-After: delay-seconds or an HTTP-date
//     (RFC 9110 §10.2.3; all three date formats, see http.ParseTime), and
//     retry-after-ms: milliseconds, fractions accepted. When both are
//     present and within a second of each other, they are one delay at two
//     precisions and retry-after-ms is used; otherwise the later wins;
//   - any status with a quota dimension whose remaining count is 0 and
//     whose reset is known, as ProviderSignals reads them: X-RateLimit-*
//     (GitHub: reset a Unix time in seconds, or a delay in seconds when
//     below 10^9, fractions accepted); OpenAI x-ratelimit-remaining-
//     {requests,tokens} with x-ratelimit-reset-* durations ("1.5s",
//     "6m0s"); Anthropic anthropic-ratelimit-{requests,tokens,input-tokens,
//     output-tokens}-remaining with RFC 3339 resets; RateLimit-Remaining
//     with RateLimit-Reset (delay seconds, RFC 8941 Integers or Decimals,
//     parameters ignored); RateLimit in either draft form, the newer List
//     of policies `"default";r=0;t=30` (every exhausted policy counts) or
//     the older Dictionary `limit=100, remaining=0, reset=30`, several
//     lines combined with ", " first. RateLimit-Policy alone never pauses.
//
// A remaining count pauses only when it is exactly 0. A value that is
// malformed, negative, NaN, or too large for a time.Duration makes that
// signal ignored; Backpressure never panics. A signal whose time is not
// after now (a reset in the past, a zero delay) is ignored too. When
// several signals remain, the latest time wins, and the result is capped
// at now+maxPause (upstream.max_pause). A maxPause that is not positive
// disables back-pressure: ok is false.
func Backpressure(status int, h http.Header, now time.Time, maxPause time.Duration) (until time.Time, ok bool) {
	if maxPause <= 0 || h == nil {
		return time.Time{}, false
	}
	consider := func(t time.Time) {
		if t.After(now) && (!ok || t.After(until)) {
			until, ok = t, true
		}
	}

	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		retryAfterBoth(h, now, consider)
	}
	exhausted := func(s Signal) {
		if s.exhausted() {
			consider(s.Reset)
		}
	}
	visitFamilies(h, now, true, exhausted)

	if !ok {
		return time.Time{}, false
	}
	if limit := now.Add(maxPause); until.After(limit) {
		until = limit
	}
	return until, true
}

// first returns the first value of h[key], for a canonical key (see
// http.CanonicalHeaderKey): http.Header.Get without the canonicalization.
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// retryAfter parses a Retry-After value (RFC 9110 §10.2.3): delay-seconds
// (1*DIGIT) or an HTTP-date.
func retryAfter(v string, now time.Time) (time.Time, bool) {
	v = trimOWS(v)
	if v == "" {
		return time.Time{}, false
	}
	if allDigits(v) {
		d, ok := parseDecimalSeconds(v)
		if !ok {
			return time.Time{}, false
		}
		return now.Add(d), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// plainSeconds parses a non-negative number of seconds written as digits
// with an optional fraction ("30", "1700000000.25").
func plainSeconds(v string) (time.Duration, bool) {
	v = trimOWS(v)
	if !isDecimalNumber(v) {
		return 0, false
	}
	return parseDecimalSeconds(v)
}

// itemSeconds converts a non-negative RFC 8941 Integer or Decimal number of
// seconds.
func itemSeconds(b bareItem) (time.Duration, bool) {
	switch {
	case b.num < 0:
		return 0, false
	case b.kind == kindInteger && b.num <= maxWholeSeconds:
		return time.Duration(b.num) * time.Second, true
	case b.kind == kindDecimal && b.num <= math.MaxInt64/int64(time.Millisecond):
		return time.Duration(b.num) * time.Millisecond, true // thousandths
	}
	return 0, false
}

// joinLines combines field lines with ", " (RFC 9110 §5.3), leaving out
// empty ones.
func joinLines(vals []string) string {
	if len(vals) == 1 {
		return trimOWS(vals[0])
	}
	var b strings.Builder
	for _, v := range vals {
		v = trimOWS(v)
		if v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}
