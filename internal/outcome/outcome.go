// Package outcome is what is known of one proxied request when it ends: the
// Record that internal/proxy fills in and writes to the access log, and that
// internal/metrics and internal/admin read, without importing the proxy
// (docs/architecture.md, "Packages"). It is a leaf: it imports nothing of
// proxyd's.
package outcome

import "time"

// Values of Record.Outcome: the outcome label and log field
// (docs/metrics.md, "Outcomes").
const (
	Forwarded    = "forwarded"
	Rejected     = "rejected"
	Shed         = "shed"
	QueueTimeout = "queue_timeout"
	Canceled     = "canceled"
	Denied       = "denied"
	Error        = "error"
	Draining     = "draining"
)

// All lists every outcome value, for metrics that pre-create series; an
// outcome's index in All is stable within a process.
var All = []string{Forwarded, Rejected, Shed, QueueTimeout, Canceled, Denied, Error, Draining}

// StatusClientClosed is Record.Status (logged, never sent) for a client
// that left first.
const StatusClientClosed = 499

// Values of Record.AuthFailed (the reason label of
// proxyd_auth_failures_total).
const (
	AuthMissing = "missing" // no Proxy-Authorization
	AuthInvalid = "invalid" // a wrong scheme, user or password
)

// ClientOther is Record.ClientLabel of a client that no clients entry
// names.
const ClientOther = "other"

// Record is what is known of one request when it ends: the access log
// line and the metrics are made from it.
type Record struct {
	ID        string
	Start     time.Time
	Method    string
	Host      string // as requested, with its port when the request had one
	Priority  int    // the request's urgency; priority.default when it was never resolved (e.g. a bad header)
	Admitted  bool   // a permit was granted (QueueWait is meaningful)
	Status    int    // sent, or StatusClientClosed
	Outcome   string // one of All
	QueueWait time.Duration
	Upstream  time.Duration // until response headers (or the tunnel's dial)
	Duration  time.Duration // whole request
	Bytes     int64         // response body bytes (tunnel: upstream → client)
	BytesIn   int64         // tunnel: client → upstream
	Err       error
	// Retries is how many times the request was sent again
	// (upstream.retry); RetryDenied is set when the retry budget refused one.
	Retries     int
	RetryDenied bool
	Pauses      int  // upstream responses (of any attempt) that paused the destination
	Cut         bool // the upstream broke off the response body (the client's stream was cut)
	// ClientWriteTimeout: the client read nothing of the response for
	// client_write_timeout, and the response was cut.
	ClientWriteTimeout bool
	// EgressDenied is the egress.Denial reason of a destination the egress
	// policy refused ("private", "self", …), else empty.
	EgressDenied string
	// Intercepted is set on a CONNECT whose tunnel was decrypted
	// (docs/tls-interception.md) and on every request read from such a
	// tunnel; Tunnel is then, on the requests, the request id of their
	// CONNECT.
	Intercepted bool
	Tunnel      string
	// HandshakeFailed: the client's TLS handshake in an intercepted tunnel
	// failed (it does not trust proxyd's CA, or pins certificates).
	HandshakeFailed bool
	// Client is who sent the request (docs/configuration.md, "Clients:
	// `auth`, `clients`, `fairness`"): the authenticated user, else the
	// source address; ClientLabel is its metric label (a clients entry's
	// name, or ClientOther). AuthFailed is AuthMissing or AuthInvalid when
	// the request was refused 407.
	Client      string
	ClientLabel string
	AuthFailed  string
	// CostEstimate is the tokens a request was priced at before admission
	// (docs/shaping.md, "LLM APIs: pricing requests"), 0 when it was not
	// priced; CostRule the match of the hosts rule that priced it.
	// CostActual is what its response reported using, when CostReported.
	CostEstimate int64
	CostRule     string
	CostActual   int64
	CostReported bool
}
