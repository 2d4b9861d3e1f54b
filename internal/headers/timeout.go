package headers

import (
	"errors"
	"math"
	"strings"
	"time"
)

// ErrInvalidTimeout is wrapped by every error ParseTimeout returns.
var ErrInvalidTimeout = errors.New("invalid timeout")

// ParseTimeout parses the caller's budget header (upstream.timeout_header,
// default X-Proxy-Timeout): either a Go duration ("2.5s", "500ms", "1m30s",
// see time.ParseDuration) or a plain number of seconds ("3", "0.25"), with
// optional surrounding whitespace. Plain seconds are converted exactly, with
// digits below a nanosecond dropped.
//
// The result is positive and finite. Zero, negative values, values that do
// not fit a time.Duration (about 292 years), NaN, Inf, exponents ("1e3")
// and anything else are errors wrapping ErrInvalidTimeout that say why.
// Capping the budget (upstream.max_timeout) is the caller's job.
func ParseTimeout(v string) (time.Duration, error) {
	s := trimOWS(v)
	if s == "" {
		return 0, valueError(ErrInvalidTimeout, v, "empty value")
	}
	num, neg := s, false
	if num[0] == '+' || num[0] == '-' {
		num, neg = num[1:], num[0] == '-'
	}
	if isDecimalNumber(num) {
		d, ok := parseDecimalSeconds(num)
		switch {
		case neg && (d != 0 || !ok):
			return 0, valueError(ErrInvalidTimeout, v, "negative, must be positive")
		case !ok:
			return 0, valueError(ErrInvalidTimeout, v, "too large")
		case d == 0:
			// Also when the value is below a nanosecond ("0.0000000001").
			return 0, valueError(ErrInvalidTimeout, v, "zero, must be positive")
		}
		return d, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && isDurationSyntax(num):
		// time.ParseDuration says "invalid duration" for overflow too.
		return 0, valueError(ErrInvalidTimeout, v, "too large")
	case err != nil:
		return 0, valueError(ErrInvalidTimeout, v,
			`not a duration ("2.5s", "500ms") or a number of seconds ("3", "0.25")`)
	case d < 0:
		return 0, valueError(ErrInvalidTimeout, v, "negative, must be positive")
	case d == 0:
		return 0, valueError(ErrInvalidTimeout, v, "zero, must be positive")
	}
	return d, nil
}

// isDecimalNumber reports whether s is ASCII digits with at most one '.'
// and at least one digit ("3", "0.25", ".5", "5.").
func isDecimalNumber(s string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isDigit(c):
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// maxWholeSeconds is the most whole seconds a time.Duration holds.
const maxWholeSeconds = math.MaxInt64 / int64(time.Second)

// parseDecimalSeconds converts s, for which isDecimalNumber holds, to a
// duration with integer arithmetic, truncating below a nanosecond. ok is
// false when the value does not fit a time.Duration.
func parseDecimalSeconds(s string) (d time.Duration, ok bool) {
	whole, frac, _ := strings.Cut(s, ".")
	var sec int64
	for i := 0; i < len(whole); i++ {
		sec = sec*10 + int64(whole[i]-'0')
		if sec > maxWholeSeconds {
			return 0, false
		}
	}
	var nsec int64
	for i := 0; i < 9; i++ {
		nsec *= 10
		if i < len(frac) {
			nsec += int64(frac[i] - '0')
		}
	}
	if sec == maxWholeSeconds && nsec > math.MaxInt64%int64(time.Second) {
		return 0, false
	}
	return time.Duration(sec)*time.Second + time.Duration(nsec), true
}

// isDurationSyntax reports whether s (without its sign) is well-formed for
// time.ParseDuration: one or more numbers, each followed by a unit. It
// tells an out-of-range duration from garbage.
func isDurationSyntax(s string) bool {
	if s == "" {
		return false
	}
	for s != "" {
		n := 0
		for n < len(s) && (isDigit(s[n]) || s[n] == '.') {
			n++
		}
		if !isDecimalNumber(s[:n]) {
			return false
		}
		s = s[n:]
		unit := 0
		for unit < len(s) && !isDigit(s[unit]) && s[unit] != '.' {
			unit++
		}
		switch s[:unit] {
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h":
		default:
			return false
		}
		s = s[unit:]
	}
	return true
}
