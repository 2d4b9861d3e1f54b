package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

// connect serves CONNECT host:port (RFC 9110 §9.3.6, authority-form per RFC
// 9112 §3.2.3): a tunnel whose bytes are spliced both ways until either
// side closes or the proxy shuts down, or, for a destination tls.intercept
// names, decrypted (intercept.go). Both open through openTunnel.
func (x *exchange) connect() error {
	hj, ok := x.w.(http.Hijacker)
	if !ok {
		return badTarget("CONNECT is supported over HTTP/1.1 only")
	}
	if auth := x.h.authority.Load(); auth != nil && x.pol.intercepts(x.dest) {
		return x.intercept(hj, auth)
	}
	client, brw, up, err := x.openTunnel(hj, true)
	if err != nil || client == nil {
		return err
	}
	upBytes, downBytes, err := spliceTunnel(x.h.tunnelCtx, client, brw, up)
	x.rec.Bytes = downBytes
	x.rec.BytesIn = upBytes
	if err != nil {
		x.rec.Err = err
		x.h.log.Debug("tunnel ended with error", zap.String("request_id", x.rec.ID), zap.Error(err))
	}
	return nil
}

// openTunnel is what every CONNECT does before its tunnel carries bytes:
// admission (one rate token and a tunnel slot, held for the tunnel's life;
// an intercepted tunnel, dial false, takes the slot only), the tunnel
// counted open (so that shutdown waits for one being set up, and refuses
// it once tunnels are being closed), the upstream dialled (dial), the
// client's connection hijacked and answered 200. A nil client with a nil
// error: the 200 could not be written (recorded); the tunnel is over.
func (x *exchange) openTunnel(hj http.Hijacker, dial bool) (client net.Conn, brw *bufio.ReadWriter, up net.Conn, err error) {
	h := x.h
	if err := x.admit(dispatch.Tunnel, !dial); err != nil {
		return nil, nil, nil, err
	}
	if !h.tunnelStarted() {
		return nil, nil, nil, &dispatch.RejectError{Err: dispatch.ErrDraining, RetryAfter: time.Second}
	}
	x.tunnelOpen = true
	if dial {
		// The dial counts as the upstream time; it is bounded by the
		// remaining budget as well as the dial timeout.
		sent := h.clock.Now()
		dctx, cancel := context.WithTimeout(x.in.Context(), h.upstreamTimeout(x.pol, x.deadline))
		ds := h.traceDial(x.in.Context(), x.destKey)
		up, err = h.fwd.Dial(dctx, x.destKey)
		cancel()
		ds.end(nil, err)
		x.rec.Upstream = h.clock.Now().Sub(sent)
		if err != nil {
			return nil, nil, nil, err
		}
	}
	client, brw, err = hj.Hijack()
	if err != nil {
		if up != nil {
			up.Close()
		}
		return nil, nil, nil, err
	}
	x.rec.Status = http.StatusOK
	x.rec.Outcome = outcome.Forwarded
	x.wrote = true
	if _, err = brw.WriteString("HTTP/1.1 200 Connection established\r\nVia: 1.1 proxyd\r\n\r\n"); err == nil {
		err = brw.Flush()
	}
	if err != nil {
		client.Close()
		if up != nil {
			up.Close()
		}
		x.rec.Err = err
		return nil, nil, nil, nil
	}
	return client, brw, up, nil
}
