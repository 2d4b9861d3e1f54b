package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors of RoundTrip and Dial. Each returned error wraps exactly
// one of them together with the original cause; test with errors.Is.
// A caller whose context was canceled gets an error wrapping
// context.Canceled instead (and none of these).
var (
	// ErrDNS: the destination's name did not resolve (a *net.DNSError).
	ErrDNS = errors.New("upstream: DNS lookup failed")
	// ErrConnRefused: the destination refused the TCP connection.
	ErrConnRefused = errors.New("upstream: connection refused")
	// ErrConnectTimeout: no connection (TCP and, for https, TLS) within the
	// dial timeout or the header timeout.
	ErrConnectTimeout = errors.New("upstream: connect timeout")
	// ErrResponseTimeout: connected, but the response headers did not
	// arrive within the header timeout.
	ErrResponseTimeout = errors.New("upstream: response timeout")
	// ErrTLSCertificate: the https upstream's certificate did not verify
	// (unknown authority, wrong name, expired).
	ErrTLSCertificate = errors.New("upstream: TLS certificate not verified")
	// ErrTLSProtocol: the TLS handshake with the upstream failed otherwise
	// (an alert, no common version or cipher, not TLS at all).
	ErrTLSProtocol = errors.New("upstream: TLS handshake failed")
	// ErrUpstream: any other failure before the response headers: a reset,
	// a malformed response.
	ErrUpstream = errors.New("upstream: request failed")
)

// Errors of CopyResponse.
var (
	// ErrBodyCut: reading the upstream body failed midway. The client has
	// already got a status line, so the only honest answer is to cut its
	// stream too: panic(http.ErrAbortHandler).
	ErrBodyCut = errors.New("upstream: response body cut")
	// ErrClientGone: writing to the client failed, or the client's request
	// context ended while the body was being copied.
	ErrClientGone = errors.New("upstream: client gone")
)

// headerTimeoutError is the cancellation cause RoundTrip's timer sets, and
// the cause its timeout errors carry. It is a deadline (errors.Is
// context.DeadlineExceeded holds), never a cancellation, so a timeout can
// not be mistaken for a client that left.
type headerTimeoutError struct{ d time.Duration }

func (e headerTimeoutError) Error() string {
	return fmt.Sprintf("no response headers within %v", e.d)
}
func (headerTimeoutError) Timeout() bool        { return true }
func (headerTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// classify turns a transport or dial error into one wrapping a sentinel.
// parent is the caller's context; timedOut reports that RoundTrip's own
// header timer fired; connected that a connection had been obtained (so a
// timeout is a response timeout, not a connect timeout).
func classify(parent context.Context, err error, timedOut, connected bool, d time.Duration) error {
	if perr := parent.Err(); perr != nil {
		if errors.Is(perr, context.DeadlineExceeded) {
			// The caller's own budget ran out: a timeout like ours.
			cause := err
			if cause == nil || errors.Is(cause, context.Canceled) {
				cause = context.Cause(parent)
			}
			return timeoutErr(connected, cause)
		}
		return canceledErr(err)
	}
	if timedOut {
		return timeoutErr(connected, headerTimeoutError{d})
	}
	return classifyNet(err, connected)
}

// classifyNet classifies an error with no context involved.
func classifyNet(err error, connected bool) error {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr):
		// Checked first: a DNS timeout is a DNS failure (502 dns_error),
		// not a connect timeout.
		return fmt.Errorf("%w: %w", ErrDNS, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %w", ErrConnRefused, err)
	case errors.As(err, &netErr) && netErr.Timeout():
		// net.Dialer.Timeout ("dial tcp …: i/o timeout") or the
		// transport's TLS handshake timeout.
		return timeoutErr(connected, err)
	case isCertError(err):
		return fmt.Errorf("%w: %w", ErrTLSCertificate, err)
	case isTLSProtocolError(err):
		return fmt.Errorf("%w: %w", ErrTLSProtocol, err)
	default:
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	}
}

// isCertError reports a certificate that did not verify.
func isCertError(err error) bool {
	var (
		cve      *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &cve) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// isTLSProtocolError reports a TLS handshake that failed for another
// reason: the peer's alert, a reply that is not TLS, no common version or
// cipher suite. crypto/tls returns most of these as plain "tls: …" errors.
func isTLSProtocolError(err error) bool {
	var (
		rh    tls.RecordHeaderError
		alert tls.AlertError
		op    *net.OpError
	)
	return errors.As(err, &rh) || errors.As(err, &alert) ||
		errors.As(err, &op) && op.Op == "remote error" ||
		strings.Contains(err.Error(), "tls: ")
}

func timeoutErr(connected bool, cause error) error {
	if connected {
		return fmt.Errorf("%w: %w", ErrResponseTimeout, cause)
	}
	return fmt.Errorf("%w: %w", ErrConnectTimeout, cause)
}

// canceledErr reports a caller that went away. The transport returns
// context.Cause of the request context, which is context.Canceled unless
// the caller canceled with a cause of its own; both stay visible.
func canceledErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		if err == nil {
			err = context.Canceled
		}
		return fmt.Errorf("upstream: canceled by caller: %w", err)
	}
	return fmt.Errorf("upstream: canceled by caller: %w: %w", context.Canceled, err)
}
