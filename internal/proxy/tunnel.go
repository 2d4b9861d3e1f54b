package proxy

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/dispatch"
)

// tunnel serves CONNECT host:port (RFC 9110 §9.3.6, authority-form per RFC
// 9112 §3.2.3): admitted like any request (one rate token, a tunnel slot
// held for the tunnel's life), then bytes are spliced both ways until either
// side closes or the proxy shuts down.
func (h *Handler) tunnel(w http.ResponseWriter, r *http.Request, rec *Record, pol *policy) error {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil || host == "" || port == "" {
		return badTarget("CONNECT needs host:port, got " + strconv.Quote(r.Host))
	}
	if err := checkHostPort(host, port); err != nil {
		return err
	}
	if err := h.checkEgress(net.JoinHostPort(host, port), true); err != nil {
		return err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return badTarget("CONNECT is supported over HTTP/1.1 only")
	}
	if auth := h.authority.Load(); auth != nil && pol.intercepts(host, port) {
		return h.intercept(w, r, rec, pol, hj, auth, host, port)
	}
	p, deadline, err := h.admit(w, r, rec, pol, dispatch.Request{Kind: dispatch.Tunnel, Dest: strings.ToLower(r.Host)}, "")
	if err != nil {
		return err
	}
	defer p.Release() // the tunnel slot is held until the tunnel ends
	// Counted from before the dial, so that shutdown waits for a tunnel
	// being set up, and refused once tunnels are being closed.
	if !h.tunnelStarted() {
		return &dispatch.RejectError{Err: dispatch.ErrDraining, RetryAfter: time.Second}
	}
	defer h.tunnelEnded()

	// The dial counts as the upstream time; it is bounded by the remaining
	// budget as well as the dial timeout.
	sent := h.clock.Now()
	dctx, cancel := context.WithTimeout(r.Context(), h.upstreamTimeout(pol, deadline))
	ds := h.traceDial(r.Context(), r.Host)
	up, err := h.fwd.Dial(dctx, r.Host)
	cancel()
	ds.end(nil, err)
	rec.Upstream = h.clock.Now().Sub(sent)
	if err != nil {
		return err
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return err
	}
	rec.Status = http.StatusOK
	rec.Outcome = OutcomeForwarded
	rec.wrote = true
	if _, err := brw.WriteString("HTTP/1.1 200 Connection established\r\nVia: 1.1 proxyd\r\n\r\n"); err == nil {
		err = brw.Flush()
	}
	if err != nil {
		client.Close()
		up.Close()
		rec.Err = err
		return nil
	}
	upBytes, downBytes, err := spliceTunnel(h.tunnelCtx, client, brw, up)
	rec.Bytes = downBytes
	rec.BytesIn = upBytes
	if err != nil {
		rec.Err = err
		h.log.Debug("tunnel ended with error", zap.String("request_id", rec.ID), zap.Error(err))
	}
	return nil
}
