package headers

import (
	"errors"
	"strings"
)

// Urgency bounds and default, RFC 9218 §4.1: 0 is the most urgent, 7 the
// least, and 3 is assumed when a request carries none.
const (
	MinUrgency     = 0
	MaxUrgency     = 7
	DefaultUrgency = 3
)

// ErrInvalidUrgency is wrapped by every error ParseUrgency returns.
var ErrInvalidUrgency = errors.New("invalid urgency")

// ParsePriority parses an RFC 9218 Priority header field value, an RFC 8941
// Dictionary, and returns its urgency (the "u" member) and incremental flag
// (the "i" member).
//
// ok is false when the value is not a valid Dictionary (RFC 8941 §4.2: a
// field that fails to parse is ignored whole), or when u is absent, not an
// Integer, or outside 0..7 (RFC 9218 §4.1: such a value is ignored); the
// caller then falls back to its own default. When ok is false urgency is
// DefaultUrgency, and incremental is still reported if the Dictionary was
// valid. An i that is not a Boolean counts as false (RFC 9218 §4.2).
// Unknown members and all parameters are ignored. When a member repeats,
// the last one wins (RFC 8941 §4.2.2), so "u=1, u=9" has no valid urgency.
//
// Leading and trailing whitespace (SP, HTAB) is not part of a field value
// (RFC 9110 §5.5) and is ignored. ParsePriority does not allocate for valid
// input without escaped strings or percent-encoded display strings.
func ParsePriority(v string) (urgency int, incremental bool, ok bool) {
	u := int64(-1)
	inc := false
	err := parseDictionary(trimOWS(v), func(key string, m member) {
		switch key {
		case "u":
			n, isInt := m.value.integer()
			if !isInt {
				n = -1
			}
			u = n
		case "i":
			b, isBool := m.value.boolean()
			inc = isBool && b
		}
	})
	switch {
	case err != nil:
		return DefaultUrgency, false, false
	case u < MinUrgency || u > MaxUrgency:
		return DefaultUrgency, inc, false
	}
	return int(u), inc, true
}

// ParsePriorityValues is ParsePriority for a field sent on several lines
// (http.Header.Values): the lines are combined with ", " as RFC 9110 §5.3
// and RFC 8941 §4.2 describe, then parsed as one value. Empty lines
// contribute nothing (rather than an empty member, which would make the
// whole field invalid). No lines means no priority: ok is false.
func ParsePriorityValues(vals []string) (urgency int, incremental bool, ok bool) {
	if len(vals) == 0 {
		return DefaultUrgency, false, false
	}
	return ParsePriority(joinLines(vals))
}

// ParseUrgency parses the custom priority header (priority.header, default
// X-Priority): one integer 0..7 written in ASCII digits (leading zeros
// allowed, no sign), with optional surrounding whitespace. Any other value
// is an error wrapping ErrInvalidUrgency that says what is wrong with it.
func ParseUrgency(v string) (int, error) {
	s := trimOWS(v)
	if s == "" {
		return 0, valueError(ErrInvalidUrgency, v, "empty value, want an integer 0..7")
	}
	digits := s
	if s[0] == '-' || s[0] == '+' {
		digits = s[1:]
	}
	if digits == "" || !allDigits(digits) {
		return 0, valueError(ErrInvalidUrgency, v, "not an integer, want 0..7")
	}
	if s[0] == '-' {
		return 0, valueError(ErrInvalidUrgency, v, "negative, want 0..7")
	}
	if s[0] == '+' {
		return 0, valueError(ErrInvalidUrgency, v, "sign not allowed, want 0..7")
	}
	digits = strings.TrimLeft(digits, "0")
	switch {
	case digits == "":
		return 0, nil
	case len(digits) > 1 || digits[0] > '0'+MaxUrgency:
		return 0, valueError(ErrInvalidUrgency, v, "out of range, want 0..7")
	}
	return int(digits[0] - '0'), nil
}
