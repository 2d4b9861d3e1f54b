package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/hostport"
	"github.com/proxyd/proxyd/internal/mitm"
)

// Limits of a decrypted tunnel's own server; the same as the proxy
// listener's (cmd/proxyd).
const (
	tunnelHandshakeTimeout = 10 * time.Second
	tunnelHeaderTimeout    = 10 * time.Second
	tunnelIdleTimeout      = 2 * time.Minute
)

// SetAuthority sets the CA that signs the leaves of intercepted tunnels
// (tls.ca_cert, tls.ca_key), or nil for none: then every CONNECT is
// spliced, whatever tls.intercept says. Tunnels already open keep theirs.
func (h *Handler) SetAuthority(a *mitm.Authority) { h.authority.Store(a) }

// tunnelInfo travels in the context of each request read from a
// decrypted tunnel.
type tunnelInfo struct {
	dest   hostport.HostPort // the CONNECT target
	id     string            // the CONNECT's request id
	client *clientID         // the CONNECT's (authenticated) client
	// defaults are the CONNECT's priority and timeout headers: a request
	// read from the tunnel that has none of its own takes them
	// (policy.urgency, policy.budget). nil: none.
	defaults http.Header
}

type tunnelKey struct{}

// check refuses what a decrypted tunnel must not carry (400,
// docs/tls-interception.md): a CONNECT; a target other than
// https://<CONNECT host:port> (an absolute-form target with another
// scheme, host or port, the scheme's default port counting as named: RFC
// 9112 §3.2.2; an HTTP/2 request whose :scheme is not https: RFC 9113
// §8.3.1); a Host naming another host than the tunnel's, or another port.
// Nothing leaves an intercepted tunnel in clear, nor for another port than
// the one the CONNECT was judged for (egress.connect_ports). When it
// accepts r, it returns its target: exactly https://<CONNECT host:port>,
// r's path and query kept (an origin-form target is the tunnel's).
func (ti *tunnelInfo) check(r *http.Request) (*url.URL, error) {
	if r.Method == http.MethodConnect {
		return nil, badTarget("CONNECT inside an intercepted tunnel")
	}
	want, wantPort := ti.dest.String(), strconv.Itoa(ti.dest.Port)
	if r.ProtoMajor == 2 && r.TLS == nil {
		// golang.org/x/net/http2 sets r.TLS only when :scheme is https
		// (and accepts no :scheme but http and https).
		return nil, badTarget(":scheme http in an intercepted tunnel: only https://" + want)
	}
	u := *r.URL
	if !u.IsAbs() {
		u.Scheme, u.Host = "https", want
	}
	port := u.Port()
	if port == "" && u.Scheme == "https" {
		port = "443"
	}
	if u.Scheme != "https" || !sameHost(u.Hostname(), ti.dest.Host) || port != wantPort {
		return nil, badTarget(fmt.Sprintf("target %s is not https://%s", strconv.Quote(u.Scheme+"://"+u.Host), want))
	}
	host, port := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		host, port = h, p
	}
	if !sameHost(strings.Trim(host, "[]"), ti.dest.Host) || port != "" && port != wantPort {
		return nil, badTarget(fmt.Sprintf("Host %s is not the tunnel's host %s", strconv.Quote(r.Host), strconv.Quote(want)))
	}
	u.Scheme, u.Host = "https", want
	return &u, nil
}

// sameHost reports whether host (no brackets) names the tunnel's host,
// in any case and with or without a trailing dot.
func sameHost(host, tunnel string) bool {
	return strings.EqualFold(strings.TrimSuffix(host, "."), strings.TrimSuffix(tunnel, "."))
}

// intercept serves a CONNECT to an intercepted host
// (docs/tls-interception.md, "What happens to a request"): a tunnel slot
// but no rate token, 200 (openTunnel), a TLS handshake with a leaf for the
// host, then every request read from the tunnel (HTTP/1.1 or HTTP/2) goes
// through ServeHTTP like a plain one, to https://host:port.
func (x *exchange) intercept(hj http.Hijacker, auth *mitm.Authority) error {
	h, rec := x.h, &x.rec
	rec.Intercepted = true
	raw, brw, _, err := x.openTunnel(hj, false)
	if err != nil || raw == nil {
		return err
	}
	conn := &tunnelConn{Conn: raw, br: brw.Reader}
	defer conn.Close()
	// Shutdown (CloseTunnels) cuts the tunnel, as it does a spliced one.
	stop := context.AfterFunc(h.tunnelCtx, func() { conn.Close() })
	defer stop()

	leafHost := x.dest.Host
	tc := tls.Server(conn, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			// The CONNECT's host names the leaf, whatever the SNI says: a
			// request for another host is refused anyway.
			return auth.Certificate(leafHost)
		},
	})
	hctx, cancel := context.WithTimeout(h.tunnelCtx, tunnelHandshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		// Logged once per tunnel: the client does not trust proxyd's CA,
		// pins its certificates, or is not speaking TLS.
		rec.HandshakeFailed = true
		rec.Err = fmt.Errorf("TLS handshake with the client: %w", err)
		h.log.Warn("tls_handshake_failed", zap.String("request_id", rec.ID), zap.String("host", x.in.Host), zap.Error(err),
			zap.String("hint", clientHandshakeHint(err)))
		return nil
	}
	ti := &tunnelInfo{dest: x.dest, id: rec.ID, client: x.client, defaults: x.pol.connectDefaults(x.in.Header)}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tunnelKey{}, ti)))
	})
	if tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
		// client_write_timeout: per stream (clientwrite.go), and for a
		// socket that takes nothing, WriteByteTimeout (as of the
		// tunnel's start).
		srv := &http2.Server{IdleTimeout: tunnelIdleTimeout}
		srv.ServeConn(tc, &http2.ServeConnOpts{
			Context: h.tunnelCtx,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inner(stallBounded(w, h.ClientWriteTimeout), r)
			}),
			BaseConfig: &http.Server{ReadHeaderTimeout: tunnelHeaderTimeout, ErrorLog: h.stdLog,
				HTTP2: &http.HTTP2Config{WriteByteTimeout: h.ClientWriteTimeout()}},
		})
	} else {
		srv := &h1.Server{Handler: inner, ReadHeaderTimeout: tunnelHeaderTimeout, IdleTimeout: tunnelIdleTimeout, ErrorLog: h.stdLog,
			WriteStallTimeout: h.ClientWriteTimeout}
		srv.ServeConn(tc)
	}
	rec.Bytes, rec.BytesIn = conn.out.Load(), conn.in.Load()
	return nil
}

// tunnelConn is the client's side of a decrypted tunnel: reads go through
// the CONNECT's buffered reader (which may hold the start of the
// ClientHello), and the bytes both ways are counted.
type tunnelConn struct {
	net.Conn
	br      *bufio.Reader
	in, out atomic.Int64
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *tunnelConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
