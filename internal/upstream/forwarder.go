package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for a zero Config.
const (
	DefaultDialTimeout         = 5 * time.Second
	DefaultMaxIdleConnsPerHost = 64
)

// Config configures a Forwarder. Its zero value is ready to use: every zero
// (or negative) field takes the default named in its comment.
type Config struct {
	// DialTimeout bounds a TCP connect (DNS included). 0 means 5s.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// MaxIdleConnsPerHost is the number of keep-alive connections kept
	// pooled per destination. 0 means 64.
	MaxIdleConnsPerHost int `mapstructure:"max_idle_conns_per_host"`
	// TLSClientConfig is used for https upstreams; it is cloned. nil means
	// the defaults (system roots). Not a configuration key: tests (and
	// proxybench) need it to trust their own upstreams.
	TLSClientConfig *tls.Config `mapstructure:"-"`
	// DialContext opens the TCP connections (pooled ones and tunnels'). nil
	// means a net.Dialer with DialTimeout. It is the seam for dial-time
	// policy (egress rules) and for tests that map names to loopback.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error) `mapstructure:"-"`
	// Control, when set, is called before each connect(2) of the built-in
	// dialer (not of a DialContext given above) with the target dialed
	// ("host:port", before name resolution), the network and the address
	// about to be connected ("ip:port"); an error refuses that address
	// (the dial error wraps it) and nothing is sent to it. It is the seam
	// for the egress policy: every pooled connection, transport connection
	// and tunnel passes it.
	Control func(target, network, address string) error `mapstructure:"-"`
	// Resolver resolves names for the built-in dialer; nil means
	// net.DefaultResolver. Tests point it at a DNS server they control.
	Resolver *net.Resolver `mapstructure:"-"`
	// ExtraRoots are trusted for https upstreams on top of the system roots
	// (or of TLSClientConfig.RootCAs when set): tls.upstream_ca.
	// SetExtraRoots changes them live.
	ExtraRoots []*x509.Certificate `mapstructure:"-"`
}

func (c Config) withDefaults() Config {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	return c
}

// controlledDial dials with a copy of d whose Control asks control about
// every address the target resolves to.
func controlledDial(d *net.Dialer, control func(target, network, address string) error) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dd := *d
		dd.Control = func(network, address string, _ syscall.RawConn) error {
			return control(addr, network, address)
		}
		return dd.DialContext(ctx, network, addr)
	}
}

// Forwarder sends requests upstream over one pooled transport and opens
// tunnels. It is safe for concurrent use. Create it with New; release its
// idle connections with Close.
type Forwarder struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	dialTimeout time.Duration
	transport   *http.Transport
	pool        *connPool // bodiless plain-http requests
	// tlsBase is the TLS client configuration of https upstreams; roots,
	// when set, replaces its RootCAs (base roots plus ExtraRoots).
	tlsBase *tls.Config
	roots   atomic.Pointer[x509.CertPool]
}

// New returns a Forwarder with one pooled transport: keep-alive, HTTP/1.1,
// and HTTP/2 when the upstream offers it through TLS ALPN.
func New(cfg Config) *Forwarder {
	cfg = cfg.withDefaults()
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second, Resolver: cfg.Resolver}
	dial := cfg.DialContext
	switch {
	case dial != nil:
	case cfg.Control != nil:
		dial = controlledDial(d, cfg.Control)
	default:
		dial = d.DialContext
	}
	t := &http.Transport{
		// Never chain to HTTP_PROXY/HTTPS_PROXY: the processes using proxyd
		// set them to proxyd, so we would forward to ourselves.
		Proxy:       nil,
		DialContext: dial,
		// A custom DialContext turns HTTP/2 off unless forced.
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        max(1024, 4*cfg.MaxIdleConnsPerHost),
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     idleConnTimeout,
		TLSHandshakeTimeout: 10 * time.Second,
		// Wait at most this long for "100 Continue" before sending the body
		// anyway (RFC 9110 §10.1.1).
		ExpectContinueTimeout: 1 * time.Second,
		// Pass Content-Encoding and bodies through untouched.
		DisableCompression: true,

		// Find dead HTTP/2 connections instead of hanging on them.
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	pool := &connPool{dial: dial, dialTimeout: cfg.DialTimeout, maxPerHost: cfg.MaxIdleConnsPerHost, maxIdle: t.MaxIdleConns, idleTimeout: idleConnTimeout}
	f := &Forwarder{dial: dial, dialTimeout: cfg.DialTimeout, transport: t, pool: pool}
	f.tlsBase = cfg.TLSClientConfig.Clone()
	if f.tlsBase == nil {
		f.tlsBase = &tls.Config{}
	}
	f.tlsBase.MinVersion = max(f.tlsBase.MinVersion, tls.VersionTLS12)
	f.tlsBase.NextProtos = []string{"h2", "http/1.1"}
	// proxyd dials TLS itself, so that every handshake reads the live
	// roots (tls.upstream_ca is reloadable) and is bounded by the dial
	// timeout together with its TCP connect.
	t.DialTLSContext = f.dialTLS
	if len(cfg.ExtraRoots) > 0 {
		_ = f.SetExtraRoots(cfg.ExtraRoots)
	}
	return f
}

// SetExtraRoots makes certs trusted for https upstreams from the next
// handshake on, on top of the base roots (TLSClientConfig.RootCAs, else
// the system's); none means the base roots alone. Pooled connections stay.
func (f *Forwarder) SetExtraRoots(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		f.roots.Store(nil)
		return nil
	}
	var pool *x509.CertPool
	if f.tlsBase.RootCAs != nil {
		pool = f.tlsBase.RootCAs.Clone()
	} else {
		sys, err := x509.SystemCertPool()
		if err != nil {
			return fmt.Errorf("upstream: reading the system roots: %w", err)
		}
		pool = sys.Clone()
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	f.roots.Store(pool)
	return nil
}

// dialTLS opens a TLS connection to addr for the transport: TCP through
// the Forwarder's dialer (egress Control included), then a handshake
// verified against the live roots with addr's host as the name, both
// within the dial timeout.
func (f *Forwarder) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, f.dialTimeout)
	defer cancel()
	raw, err := f.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := f.tlsBase.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	if p := f.roots.Load(); p != nil {
		cfg.RootCAs = p
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

// Close closes the idle pooled connections. Connections in use are closed
// when their requests finish. The Forwarder stays usable.
func (f *Forwarder) Close() {
	f.transport.CloseIdleConnections()
	f.pool.close()
}

// UnsolicitedResponses is how many idle pooled connections were closed
// because the upstream sent bytes on them while no request was
// outstanding (an unsolicited response, a body after a HEAD or 204): a
// sign of a broken or hostile upstream. None of those bytes reached a
// client. Safe for concurrent use.
func (f *Forwarder) UnsolicitedResponses() uint64 { return f.pool.unsolicited.Load() }

// RoundTrip sends out (built by Outbound) and returns the response as soon
// as its headers have arrived, with the hop-by-hop header fields removed.
// The caller must close resp.Body (CopyResponse does).
//
// headerTimeout > 0 bounds the time from the call until the response
// headers, dialling included; 0 means no bound beyond out's context. When
// it expires the request is canceled and the error wraps
// ErrConnectTimeout if no connection had been obtained yet, else
// ErrResponseTimeout. The timer stops once the headers are in: the body is
// not cut, it streams until it ends, the caller closes it, or out's context
// ends.
//
// Errors wrap one of ErrDNS, ErrConnRefused, ErrConnectTimeout,
// ErrResponseTimeout or ErrUpstream, plus the cause; a deadline of out's
// context counts as a timeout too. If out's context was canceled (the
// client went away) the error wraps context.Canceled and no sentinel.
func (f *Forwarder) RoundTrip(out *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	if fastPath(out) {
		return f.roundTripH1(out, headerTimeout)
	}
	parent := out.Context()
	ctx, cancel := context.WithCancelCause(parent)

	// connected is true while the request holds a connection. GetConn
	// resets it: the transport retries a request that failed on a dead
	// pooled connection on a new one, and a timeout while dialling that one
	// is a connect timeout again.
	var connected atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn: func(string) { connected.Store(false) },
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	}
	req := out.WithContext(httptrace.WithClientTrace(ctx, trace))

	var timer *time.Timer
	if headerTimeout > 0 {
		timer = time.AfterFunc(headerTimeout, func() { cancel(headerTimeoutError{headerTimeout}) })
	}
	resp, err := f.transport.RoundTrip(req)
	// Stop reports false once the timer has fired: then ctx is (being)
	// canceled, even if the headers won the race, and the body would be cut
	// at its first read. Treat that as the timeout it nearly is.
	timedOut := timer != nil && !timer.Stop()
	if err == nil && timedOut {
		resp.Body.Close()
		resp, err = nil, headerTimeoutError{headerTimeout}
	}
	if err != nil {
		cancel(nil)
		return nil, classify(parent, err, timedOut, connected.Load(), headerTimeout)
	}
	RemoveHopByHop(resp.Header)
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases the request's context when the body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// Dial opens a TCP connection to addr ("host:port") for a CONNECT tunnel,
// bounded by the dial timeout and ctx. Errors are classified as RoundTrip's
// (ErrDNS, ErrConnRefused, ErrConnectTimeout, ErrUpstream, or
// context.Canceled when ctx was canceled).
func (f *Forwarder) Dial(ctx context.Context, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, f.dialTimeout)
	defer cancel()
	conn, err := f.dial(dctx, "tcp", addr)
	if err != nil {
		return nil, classify(ctx, err, false, false, 0)
	}
	return conn, nil
}
