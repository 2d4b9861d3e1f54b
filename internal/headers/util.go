package headers

import (
	"fmt"
	"strconv"
)

// maxQuoted bounds how much of a rejected value an error message repeats:
// the value comes from a client and the message may end up in a response
// body or a log line.
const maxQuoted = 40

// valueError returns an error wrapping sentinel, naming the value (quoted,
// so that control characters cannot forge log lines, and truncated) and the
// reason it was rejected.
func valueError(sentinel error, v, reason string) error {
	q := v
	suffix := ""
	if len(q) > maxQuoted {
		q, suffix = q[:maxQuoted], "..."
	}
	return fmt.Errorf("%w %s%s: %s", sentinel, strconv.Quote(q), suffix, reason)
}

// trimOWS removes leading and trailing optional whitespace, RFC 9110
// §5.6.3: SP and HTAB.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
