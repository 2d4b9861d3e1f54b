package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/headers"
	"github.com/proxyd/proxyd/internal/upstream"
)

// Outcomes, the values of the outcome label and log field (SPEC §7).
const (
	OutcomeForwarded    = "forwarded"
	OutcomeRejected     = "rejected"
	OutcomeShed         = "shed"
	OutcomeQueueTimeout = "queue_timeout"
	OutcomeCanceled     = "canceled"
	OutcomeDenied       = "denied"
	OutcomeError        = "error"
	OutcomeDraining     = "draining"
)

// Outcomes lists every outcome value, for metrics that pre-create series.
var Outcomes = []string{OutcomeForwarded, OutcomeRejected, OutcomeShed, OutcomeQueueTimeout,
	OutcomeCanceled, OutcomeDenied, OutcomeError, OutcomeDraining}

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

// StatusClientClosed is logged (never sent) for a client that left first.
const StatusClientClosed = 499

// answer is how one error is told to the client.
type answer struct {
	status     int
	errType    string // RFC 9209 error token
	details    string
	retryAfter time.Duration // > 0: send Retry-After
	outcome    string
}

// classify maps any error of a request's path to its answer: the one place
// that does so (SPEC §5).
func classify(err error, rejectStatus int) answer {
	var re *dispatch.RejectError
	if errors.As(err, &re) {
		switch {
		case errors.Is(err, dispatch.ErrClientQueueFull):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "client queue full", re.RetryAfter, OutcomeRejected}
		case errors.Is(err, dispatch.ErrQueueFull):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "queue full", re.RetryAfter, OutcomeRejected}
		case errors.Is(err, dispatch.ErrShed):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "shed", re.RetryAfter, OutcomeShed}
		case errors.Is(err, dispatch.ErrQueueTimeout):
			return answer{rejectStatus, headers.ErrorTypeConnectionLimitReached, "queue timeout", re.RetryAfter, OutcomeQueueTimeout}
		case errors.Is(err, dispatch.ErrDraining):
			return answer{http.StatusServiceUnavailable, headers.ErrorTypeProxyInternalResponse, "draining", re.RetryAfter, OutcomeDraining}
		}
	}
	var denial *egress.Denial
	if errors.As(err, &denial) {
		errType := headers.ErrorTypeHTTPRequestDenied
		if denial.Address {
			errType = headers.ErrorTypeDestinationIPProhibited
		}
		return answer{http.StatusForbidden, errType, denial.Details, 0, OutcomeDenied}
	}
	switch {
	case errors.Is(err, errProxyAuth):
		return answer{http.StatusProxyAuthRequired, headers.ErrorTypeHTTPRequestDenied, "", 0, OutcomeDenied}
	case errors.Is(err, context.Canceled), errors.Is(err, upstream.ErrClientGone):
		return answer{status: StatusClientClosed, outcome: OutcomeCanceled}
	case errors.Is(err, errPanic):
		return answer{http.StatusBadGateway, headers.ErrorTypeProxyInternalError, "", 0, OutcomeError}
	case errors.Is(err, errBadHeader), errors.Is(err, errBadTarget), errors.Is(err, errBadBody):
		return answer{http.StatusBadRequest, headers.ErrorTypeHTTPRequestError, detailOf(err), 0, OutcomeDenied}
	case errors.Is(err, errLoop):
		return answer{http.StatusLoopDetected, headers.ErrorTypeProxyLoopDetected, "", 0, OutcomeDenied}
	case errors.Is(err, errNoRoute):
		return answer{http.StatusNotFound, headers.ErrorTypeDestinationNotFound, "", 0, OutcomeDenied}
	case errors.Is(err, upstream.ErrDNS):
		return answer{http.StatusBadGateway, headers.ErrorTypeDNSError, "", 0, OutcomeError}
	case errors.Is(err, upstream.ErrConnRefused):
		return answer{http.StatusBadGateway, headers.ErrorTypeConnectionRefused, "", 0, OutcomeError}
	case errors.Is(err, upstream.ErrConnectTimeout):
		return answer{http.StatusGatewayTimeout, headers.ErrorTypeConnectionTimeout, "", 0, OutcomeError}
	case errors.Is(err, upstream.ErrResponseTimeout):
		return answer{http.StatusGatewayTimeout, headers.ErrorTypeHTTPResponseTimeout, "", 0, OutcomeError}
	case errors.Is(err, upstream.ErrTLSCertificate):
		return answer{http.StatusBadGateway, headers.ErrorTypeTLSCertificateError, "", 0, OutcomeError}
	case errors.Is(err, upstream.ErrTLSProtocol):
		return answer{http.StatusBadGateway, headers.ErrorTypeTLSProtocolError, "", 0, OutcomeError}
	case errors.Is(err, upstream.ErrUpstream):
		return answer{http.StatusBadGateway, headers.ErrorTypeDestinationUnavailable, "", 0, OutcomeError}
	}
	return answer{http.StatusBadGateway, headers.ErrorTypeProxyInternalError, "", 0, OutcomeError}
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

// writeAnswer sends the proxy's own response for a.
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
	body := strconv.Itoa(a.status) + " " + http.StatusText(a.status)
	if a.details != "" {
		body += ": " + a.details
	}
	body += "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(a.status)
	_, _ = w.Write([]byte(body))
}
