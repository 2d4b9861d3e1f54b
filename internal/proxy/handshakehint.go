package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// clientHandshakeHint says what a failed TLS handshake with a client in an
// intercepted tunnel most likely means, for the tls_handshake_failed log
// line (docs/tls-interception.md, "What breaks"). Go's own error names
// the TLS symptom ("tls: bad record MAC"), not its usual cause.
func clientHandshakeHint(err error) string {
	const untrusted = "the client does not trust proxyd's CA: add ca.pem to its trust store (docs/tls-interception.md), or leave the host out of tls.intercept if the client pins certificates"
	msg := err.Error()
	var oe *net.OpError
	remote := errors.As(err, &oe) && oe.Op == "remote error" // an alert the client sent
	switch {
	case remote && containsAny(msg, "unknown certificate authority", "bad certificate", "certificate unknown", "unsupported certificate", "access denied"):
		return "the client refused proxyd's certificate: " + untrusted
	case remote && strings.Contains(msg, "certificate expired"):
		return "the client finds proxyd's certificate expired: check the CA's validity (openssl x509 -enddate -in ca.pem) and the clocks"
	case strings.Contains(msg, "bad record MAC"):
		// TLS 1.3: the client rejected the certificate and sent its alert
		// in clear, where proxyd expected an encrypted record (RFC 8446
		// §5.2); Go reports the record it could not decrypt.
		return "most likely the client refused proxyd's certificate (its alert arrived unencrypted): " + untrusted
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the client hung up during the handshake, most likely because " + untrusted
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "the client does not speak TLS inside the tunnel: a CONNECT to an intercepted host must be followed by a TLS handshake (an https:// URL)"
	case errors.Is(err, context.DeadlineExceeded), containsAny(msg, "i/o timeout"):
		return "the client did not complete the handshake within 10s"
	case containsAny(msg, "protocol version", "no cipher suite", "no application protocol"):
		return "the client's TLS settings do not match proxyd's (TLS 1.2 or later; ALPN h2 or http/1.1)"
	case remote:
		return "the client ended the handshake with an alert: most likely " + untrusted
	}
	return "the client does not trust proxyd's CA, pins certificates, or does not speak TLS (docs/tls-interception.md)"
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
