package headers

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// epochThreshold separates the two readings of X-RateLimit-Reset: values
// below 10^9 seconds (about 31.7 years) are a delay, others a Unix time
// (SPEC §4).
const epochThreshold = 1e9 * time.Second

// Backpressure reads an upstream's back-pressure signals from a response
// (SPEC §4, "Upstream back-pressure") and returns the time until which
// requests to that destination should be held back. ok is false when the
// response carries no usable signal.
//
// The signals, all optional and all considered:
//
//   - status 429 or 503 with Retry-After: delay-seconds or an HTTP-date
//     (RFC 9110 §10.2.3; all three date formats, see http.ParseTime);
//   - any status with X-RateLimit-Remaining: 0 and X-RateLimit-Reset: a
//     Unix time in seconds, or a delay in seconds when below 10^9; fractional
//     seconds are accepted;
//   - any status with RateLimit-Remaining: 0 and RateLimit-Reset: a delay
//     in seconds (draft-ietf-httpapi-ratelimit-headers up to -06, RFC 8941
//     Integers or Decimals, parameters ignored);
//   - any status with a RateLimit field in either draft form: the newer
//     List of policies with parameters, `"default";r=0;t=30` (r remaining,
//     t seconds until reset; every exhausted policy counts), or the older
//     Dictionary `limit=100, remaining=0, reset=30`. Several RateLimit lines
//     are combined with ", " first.
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
		if t, found := retryAfter(first(h, "Retry-After"), now); found {
			consider(t)
		}
	}

	if isZeroCount(first(h, "X-Ratelimit-Remaining")) {
		if d, found := plainSeconds(first(h, "X-Ratelimit-Reset")); found {
			if d < epochThreshold {
				consider(now.Add(d))
			} else {
				consider(time.Unix(0, int64(d)))
			}
		}
	}

	if remaining, err := parseItem(first(h, "Ratelimit-Remaining")); err == nil {
		if n, isInt := remaining.value.integer(); isInt && n == 0 {
			if reset, err := parseItem(first(h, "Ratelimit-Reset")); err == nil {
				if d, found := itemSeconds(reset.value); found {
					consider(now.Add(d))
				}
			}
		}
	}

	if vals := h["Ratelimit"]; len(vals) > 0 {
		for _, d := range rateLimitResets(vals) {
			consider(now.Add(d))
		}
	}

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

// isZeroCount reports whether v is a count of zero ("0", "00").
func isZeroCount(v string) bool {
	v = trimOWS(v)
	return v != "" && strings.Trim(v, "0") == ""
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

// rateLimitResets returns the delays until reset of every exhausted quota
// in a RateLimit field (lines combined with ", "). It tries the newer List
// form first, where each member has parameters r (remaining) and t (reset);
// when that does not parse, the older Dictionary form, whose remaining and
// reset members describe one quota (and whose members may carry r and t
// too). An invalid field yields nothing.
func rateLimitResets(vals []string) []time.Duration {
	field := joinLines(vals)
	var resets []time.Duration
	fromParams := func(m member) {
		r, hasR := m.param("r")
		t, hasT := m.param("t")
		if !hasR || !hasT {
			return
		}
		if n, isInt := r.integer(); !isInt || n != 0 {
			return
		}
		if d, ok := itemSeconds(t); ok {
			resets = append(resets, d)
		}
	}
	if err := parseList(field, fromParams); err == nil {
		return resets
	}

	resets = resets[:0]
	var remaining, reset bareItem
	err := parseDictionary(field, func(key string, m member) {
		switch key {
		case "remaining":
			remaining = m.value
		case "reset":
			reset = m.value
		}
		fromParams(m)
	})
	if err != nil {
		return nil
	}
	if n, isInt := remaining.integer(); isInt && n == 0 {
		if d, ok := itemSeconds(reset); ok {
			resets = append(resets, d)
		}
	}
	return resets
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
