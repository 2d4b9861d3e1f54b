package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/headers"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/upstream"
)

// Errors the proxy finds in a request itself.
var (
	errBadHeader = errors.New("bad header")
	errBadTarget = errors.New("bad request target")
	errBadBody   = errors.New("bad request body")
	errLoop      = errors.New("proxy loop")
	errNoRoute   = errors.New("no route")
)

// errPanic is a panic of the request's goroutine, recovered: the proxy's
// own failure.
var errPanic = errors.New("panic serving the request")

// answer is how one error is told to the client.
type answer struct {
	status     int
	errType    string        // RFC 9209 error token
	details    string        // Proxy-Status details, and in the body and reason phrase
	hint       string        // the setting that would change the outcome: body and reason phrase only
	retryAfter time.Duration // > 0: send Retry-After
	outcome    string
}

// classify maps any error of a request's path to its answer: the one place
// that does so (docs/operations.md, "Proxy-Status errors": every row has
// its details and, where one exists, the setting that would change the
// outcome).
func classify(err error, rejectStatus int) answer {
	var re *dispatch.RejectError
	if errors.As(err, &re) {
		retry := "retry after " + headers.RetryAfterSeconds(re.RetryAfter) + "s"
		switch {
		case errors.Is(err, dispatch.ErrCostExceedsQuota):
			// No Retry-After: waiting will not help (docs/shaping.md,
			// "LLM APIs: pricing requests").
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "cost exceeds quota",
				"its price in tokens is above a tokens quota's limit; see hosts[].quotas, hosts[].cost, X-Proxy-Cost", 0, outcome.Rejected}
		case errors.Is(err, dispatch.ErrClientQueueFull):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "client queue full",
				retry + "; see clients[].queue_size", re.RetryAfter, outcome.Rejected}
		case errors.Is(err, dispatch.ErrQueueFull):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "queue full",
				retry + "; see limits.rate, limits.queue_size", re.RetryAfter, outcome.Rejected}
		case errors.Is(err, dispatch.ErrShed):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "shed",
				"a more urgent request took its place; " + retry, re.RetryAfter, outcome.Shed}
		case errors.Is(err, dispatch.ErrQueueTimeout):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "queue timeout",
				retry + "; see limits.max_wait, upstream.timeout_header", re.RetryAfter, outcome.QueueTimeout}
		case errors.Is(err, dispatch.ErrDraining):
			return answer{http.StatusServiceUnavailable, headers.ErrorTypeProxyInternalResponse, "draining",
				"proxyd is shutting down; " + retry, re.RetryAfter, outcome.Draining}
		}
	}
	var denial *egress.Denial
	if errors.As(err, &denial) {
		errType := headers.ErrorTypeHTTPRequestDenied
		if denial.Address {
			errType = headers.ErrorTypeDestinationIPProhibited
		}
		var hint string
		switch denial.Reason {
		case egress.ReasonLoopback, egress.ReasonPrivate, egress.ReasonLinkLocal, egress.ReasonSpecial:
			hint = "see egress.allow"
		case egress.ReasonDeny:
			hint = "see egress.deny"
		}
		return answer{http.StatusForbidden, errType, denial.Details, hint, 0, outcome.Denied}
	}
	switch {
	case errors.Is(err, errProxyAuth):
		return answer{http.StatusProxyAuthRequired, headers.ErrorTypeHTTPRequestDenied, "",
			"proxy authentication required: user:password in the proxy URL; see auth.htpasswd", 0, outcome.Denied}
	case errors.Is(err, context.Canceled), errors.Is(err, upstream.ErrClientGone):
		return answer{status: outcome.StatusClientClosed, outcome: outcome.Canceled}
	case errors.Is(err, errPanic):
		return answer{http.StatusBadGateway, headers.ErrorTypeProxyInternalError, "",
			"a bug: see the log for X-Request-Id", 0, outcome.Error}
	case errors.Is(err, errBadHeader), errors.Is(err, errBadTarget), errors.Is(err, errBadBody):
		return answer{http.StatusBadRequest, headers.ErrorTypeHTTPRequestError, detailOf(err), "", 0, outcome.Denied}
	case errors.Is(err, errLoop):
		return answer{http.StatusLoopDetected, headers.ErrorTypeProxyLoopDetected, "",
			"Via names proxyd already: does a route or a proxy variable point back at it?", 0, outcome.Denied}
	case errors.Is(err, errNoRoute):
		return answer{http.StatusNotFound, headers.ErrorTypeDestinationNotFound, "",
			"no routes prefix matches the path; a proxy client sends absolute URLs", 0, outcome.Denied}
	case errors.Is(err, upstream.ErrDNS):
		return answer{http.StatusBadGateway, headers.ErrorTypeDNSError, causeOf(err, upstream.ErrDNS), "", 0, outcome.Error}
	case errors.Is(err, upstream.ErrConnRefused):
		return answer{http.StatusBadGateway, headers.ErrorTypeConnectionRefused, causeOf(err, upstream.ErrConnRefused),
			"", 0, outcome.Error}
	case errors.Is(err, upstream.ErrConnectTimeout):
		return answer{http.StatusGatewayTimeout, headers.ErrorTypeConnectionTimeout, causeOf(err, upstream.ErrConnectTimeout),
			"see upstream.dial_timeout", 0, outcome.Error}
	case errors.Is(err, upstream.ErrResponseTimeout):
		return answer{http.StatusGatewayTimeout, headers.ErrorTypeHTTPResponseTimeout, causeOf(err, upstream.ErrResponseTimeout),
			"see upstream.timeout, upstream.timeout_header", 0, outcome.Error}
	case errors.Is(err, upstream.ErrTLSCertificate):
		var hint string
		if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
			hint = "a private CA? see tls.upstream_ca"
		}
		return answer{http.StatusBadGateway, headers.ErrorTypeTLSCertificateError, causeOf(err, upstream.ErrTLSCertificate),
			hint, 0, outcome.Error}
	case errors.Is(err, upstream.ErrTLSProtocol):
		var hint string
		if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
			hint = "not TLS: is it an http:// port?"
		}
		return answer{http.StatusBadGateway, headers.ErrorTypeTLSProtocolError, causeOf(err, upstream.ErrTLSProtocol),
			hint, 0, outcome.Error}
	case errors.Is(err, upstream.ErrUpstream):
		return answer{http.StatusBadGateway, headers.ErrorTypeDestinationUnavailable, causeOf(err, upstream.ErrUpstream),
			"", 0, outcome.Error}
	}
	return answer{http.StatusBadGateway, headers.ErrorTypeProxyInternalError, "",
		"see the log for X-Request-Id", 0, outcome.Error}
}

// detailed is an error whose detail is safe and useful to show a client.
type detailed struct {
	kind   error
	detail string
}

func (e *detailed) Error() string { return e.kind.Error() + ": " + e.detail }
func (e *detailed) Unwrap() error { return e.kind }

func badHeader(detail string) error { return &detailed{errBadHeader, detail} }
func badTarget(detail string) error { return &detailed{errBadTarget, detail} }

func detailOf(err error) string {
	var d *detailed
	if errors.As(err, &d) {
		return d.detail
	}
	return ""
}

// causeOf is what an upstream error says beyond its sentinel: the most
// telling of its causes ("x509: certificate signed by unknown authority",
// "lookup api.example: no such host", "dial tcp 10.0.0.7:443: connect:
// connection refused"), for the client to read. The upstream's own words
// (its certificate's names, its alert) are not secret from its client.
func causeOf(err, sentinel error) string {
	var dnsErr *net.DNSError
	var cert *tls.CertificateVerificationError
	switch {
	case errors.As(err, &dnsErr):
		// Without the resolver's address ("on 127.0.0.53:53"): proxyd's
		// own, of no use to the client.
		msg := "lookup " + dnsErr.Name + ": " + dnsErr.Err
		if dnsErr.IsTimeout {
			msg += " (timeout)"
		}
		return msg
	case errors.As(err, &cert):
		return cert.Err.Error()
	}
	msg := err.Error()
	// The sentinel is the answer's error type already; what follows it is
	// the cause. A wrapper before it (a retry's words) is kept.
	if i := strings.Index(msg, sentinel.Error()+": "); i >= 0 {
		msg = msg[:i] + msg[i+len(sentinel.Error())+2:]
	}
	return roundWithin(msg)
}

// roundWithin rounds the duration of "… within 149.911622ms" (a timeout
// of what was left of the caller's budget) to the millisecond.
func roundWithin(msg string) string {
	const within = "within "
	i := strings.Index(msg, within)
	if i < 0 {
		return msg
	}
	rest := msg[i+len(within):]
	n := strings.IndexAny(rest, " :,")
	if n < 0 {
		n = len(rest)
	}
	d, err := time.ParseDuration(rest[:n])
	if err != nil || d < time.Millisecond {
		return msg
	}
	return msg[:i+len(within)] + d.Round(time.Millisecond).String() + rest[n:]
}

// maxReason bounds a reason phrase: short enough for a log line or an
// exception message (RFC 9112 §4 sets no limit).
const maxReason = 120

// phrase is the answer told in one line: the error type, its details and
// the hint ("tls_certificate_error: x509: certificate signed by unknown
// authority (a private CA? see tls.upstream_ca)"). Within limit bytes,
// details are shortened first, the hint being what the user acts on.
func (a *answer) phrase(limit int) string {
	hint := ""
	if a.hint != "" {
		hint = " (" + a.hint + ")"
	}
	details := a.details
	if details != "" {
		details = ": " + details
	}
	if limit > 0 && len(a.errType)+len(details)+len(hint) > limit {
		const ellipsis = "..."
		keep := limit - len(a.errType) - len(hint) - len(ellipsis)
		if keep >= len(": x") {
			details = strings.ToValidUTF8(details[:keep], "") + ellipsis
		} else {
			return truncate(a.errType+details+hint, limit)
		}
	}
	return a.errType + details + hint
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// reasonSetter is the h1 server's ResponseWriter: SetReason sets the
// status line's reason phrase. HTTP/2 has none (RFC 9113 §8.3.2): there
// the body alone tells the answer.
type reasonSetter interface{ SetReason(string) }

// writeAnswer sends the proxy's own response for a: Proxy-Status with the
// error type and details, and a reason phrase and a text body that also
// carry the hint (what the client prints: docs/operations.md,
// "Proxy-Status errors").
func writeAnswer(w http.ResponseWriter, a answer) {
	h := w.Header()
	h.Set("Proxy-Status", headers.ProxyStatus(a.errType, a.details))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if a.retryAfter > 0 {
		h.Set("Retry-After", headers.RetryAfterSeconds(a.retryAfter))
	}
	if a.status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", auth.Challenge)
	}
	if rs, ok := w.(reasonSetter); ok {
		rs.SetReason(a.phrase(maxReason))
	}
	body := strconv.Itoa(a.status) + " " + a.phrase(maxBody) + "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(a.status)
	_, _ = w.Write([]byte(body))
}

// maxBody bounds the text body's line: details quote what the client sent
// (a header value, a target), which the header size limit alone bounds.
const maxBody = 300
