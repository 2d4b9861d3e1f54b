package headers

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ProxyName is the proxy's name in Proxy-Status (RFC 9209 §2) and Via.
const ProxyName = "proxyd"

// Proxy-Status error types, RFC 9209 §2.3: those docs/operations.md ("Proxy-Status errors") names and a few
// close relatives. ProxyStatus accepts any other valid token as well.
const (
	ErrorTypeDNSTimeout              = "dns_timeout"
	ErrorTypeDNSError                = "dns_error"
	ErrorTypeDestinationNotFound     = "destination_not_found"
	ErrorTypeDestinationUnavailable  = "destination_unavailable"
	ErrorTypeDestinationIPProhibited = "destination_ip_prohibited"
	ErrorTypeConnectionRefused       = "connection_refused"
	ErrorTypeConnectionTerminated    = "connection_terminated"
	ErrorTypeConnectionTimeout       = "connection_timeout"
	ErrorTypeConnectionLimitReached  = "connection_limit_reached"
	ErrorTypeTLSProtocolError        = "tls_protocol_error"
	ErrorTypeTLSCertificateError     = "tls_certificate_error"
	ErrorTypeHTTPRequestError        = "http_request_error"
	ErrorTypeHTTPRequestDenied       = "http_request_denied"
	ErrorTypeHTTPResponseIncomplete  = "http_response_incomplete"
	ErrorTypeHTTPResponseTimeout     = "http_response_timeout"
	ErrorTypeHTTPProtocolError       = "http_protocol_error"
	ErrorTypeProxyInternalResponse   = "proxy_internal_response"
	ErrorTypeProxyInternalError      = "proxy_internal_error"
	ErrorTypeProxyLoopDetected       = "proxy_loop_detected"
)

// ProxyStatus formats an RFC 9209 Proxy-Status field value for ProxyName,
// for example
//
//	proxyd; error=connection_limit_reached; details="queue full"
//
// errType is an RFC 9209 §2.3 error type; "" omits the error parameter, and
// a value that is not a valid RFC 8941 Token is replaced by
// ErrorTypeProxyInternalError so that the field stays valid. details, when
// not "", is written as an RFC 8941 String (§4.1.6): '"' and '\' are
// escaped and every character outside printable ASCII (controls, DEL,
// non-ASCII runes, invalid UTF-8 bytes) becomes one '?'. The result is
// always a valid RFC 8941 List of one member.
func ProxyStatus(errType, details string) string {
	var b strings.Builder
	b.Grow(len(ProxyName) + len("; error=") + len(errType) + len(`; details=""`) + len(details) + 8)
	b.WriteString(ProxyName)
	if errType != "" {
		if !isToken(errType) {
			errType = ErrorTypeProxyInternalError
		}
		b.WriteString("; error=")
		b.WriteString(errType)
	}
	if details != "" {
		b.WriteString(`; details="`)
		for i := 0; i < len(details); {
			c := details[i]
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
				i++
			case c >= 0x20 && c <= 0x7e:
				b.WriteByte(c)
				i++
			default:
				_, size := utf8.DecodeRuneInString(details[i:])
				b.WriteByte('?')
				i += size
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}

// isToken reports whether s is an RFC 8941 Token (§3.3.4).
func isToken(s string) bool {
	if s == "" || (s[0] != '*' && !isAlpha(s[0])) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isTChar(c) && c != ':' && c != '/' {
			return false
		}
	}
	return true
}

// RetryAfterSeconds renders a wait as a Retry-After delay-seconds value
// (RFC 9110 §10.2.3): whole seconds rounded up, at least 1, so that a
// client that waits as told does not come back too early. Zero and
// negative waits give "1".
func RetryAfterSeconds(d time.Duration) string {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// ServerTiming formats the Server-Timing field value proxyd adds to every
// forwarded response (docs/clients.md, "When proxyd says no"):
//
//	queue;dur=0.125, upstream;dur=12.5
//
// dur is in milliseconds (W3C Server Timing), rounded to the nearest
// microsecond and written with up to three decimals and no trailing zeros.
// Negative durations are written as 0.
func ServerTiming(queue, upstream time.Duration) string {
	buf := make([]byte, 0, 64)
	buf = append(buf, "queue;dur="...)
	buf = appendMillis(buf, queue)
	buf = append(buf, ", upstream;dur="...)
	buf = appendMillis(buf, upstream)
	return string(buf)
}

func appendMillis(buf []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	us := int64(d.Round(time.Microsecond) / time.Microsecond)
	buf = strconv.AppendInt(buf, us/1000, 10)
	frac := us % 1000
	if frac == 0 {
		return buf
	}
	digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 3
	for digits[n-1] == '0' {
		n--
	}
	buf = append(buf, '.')
	return append(buf, digits[:n]...)
}
