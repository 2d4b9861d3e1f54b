package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/headers"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/upstream"
)

// forward admits the request, sends it upstream (retrying what
// upstream.retry allows: one attempt, then one retry decision, as Caddy's
// proxyLoopIteration), and streams the response back.
func (x *exchange) forward() error {
	if err := x.admit(dispatch.HTTP, false); err != nil {
		return err
	}
	if err := x.prepareBody(); err != nil {
		return err
	}
	for n := 0; ; n++ {
		a := x.attempt(n)
		again, err := x.retry(n, a)
		if err != nil {
			return err
		}
		if again {
			continue
		}
		if a.err != nil {
			return a.err
		}
		return x.respond(a.resp)
	}
}

// prepareBody decides, once admitted, how the request body goes upstream:
// buffered whole when a retry may send it again (an idempotent request,
// retries on, a body of known length up to maxReplayBody), else streamed
// and watched for the client's errors: a malformed or cut body is the
// client's failure, not the upstream's.
func (x *exchange) prepareBody() error {
	r, rp := x.in, &x.pol.retry
	x.canRetry = rp.attempts > 0 && idempotent(r.Method)
	if x.canRetry {
		body, ok, err := x.replayBody()
		if err != nil {
			return fmt.Errorf("%w: reading the request body: %w", upstream.ErrClientGone, err)
		}
		x.replay, x.canRetry = body, ok
	}
	if x.replay == nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		x.body = &clientBody{ReadCloser: x.inBody()}
	}
	if rp.attempts > 0 {
		// With retries off nothing is counted: the budget only ever
		// under-counts then, which errs on the side of fewer retries, for
		// at most its 10 s window after a reload turns retries on (and
		// budgetFloor retries stay allowed).
		x.h.retries.request()
	}
	return nil
}

// outbound is the request one attempt sends (httputil's ProxyRequest.Out):
// built from the inbound one, which stays as received (hop-by-hop headers,
// the proxy credentials among them, and proxyd's own headers are left
// out, Via is added); a buffered body is sent again from its start.
func (x *exchange) outbound() *http.Request {
	drop := x.drop
	if drop == nil {
		drop = x.pol.drop
	}
	out := upstream.Outbound(x.in.Context(), x.in, x.target, drop)
	switch {
	case x.replay != nil:
		out.Body = io.NopCloser(bytes.NewReader(x.replay))
	case x.body != nil:
		out.Body = x.body
	}
	return out
}

// attemptResult is what one attempt got back.
type attemptResult struct {
	resp       *http.Response // nil when err is set
	err        error
	at         time.Time // when it came back
	pauseUntil time.Time // the destination's pause its response asked for; zero: none
}

// attempt sends the request upstream once (n: 0 for the first) and applies
// the back-pressure its response carries: a pause of the destination, a
// provider cap (provider.go).
func (x *exchange) attempt(n int) attemptResult {
	h, ctx := x.h, x.in.Context()
	out := x.outbound()
	as := h.traceAttempt(ctx, out, n)
	sent := h.clock.Now()
	resp, err := x.fwd.RoundTrip(out, h.upstreamTimeout(x.pol, x.deadline))
	if err != nil && x.body != nil {
		if berr := x.body.failed(); berr != nil {
			err = bodyError(ctx, berr)
		}
	}
	as.end(resp, err)
	now := h.clock.Now()
	x.rec.Upstream = now.Sub(sent)
	a := attemptResult{resp: resp, err: err, at: now}
	if err == nil {
		if until, ok := headers.Backpressure(resp.StatusCode, resp.Header, now, x.pol.maxPause); ok {
			h.disp.Pause(x.destKey, until)
			a.pauseUntil = until
			x.rec.Pauses++
		}
		// What is left caps what goes next (provider.go).
		h.capProvider(x.destKey, resp.Header, now, x.pol.maxPause)
	}
	return a
}

// retry decides whether attempt n's result is sent again
// (docs/shaping.md): a retryable failure of a request that can be
// replayed, whose back-off and pause fit its budget and limits.max_wait,
// within the retry budget. Then it throws the result away, gives the
// permit back, waits the back-off and queues again with the request's
// original place, and reports true; err is set when the request ends
// meanwhile (its client left, or admission refused it).
func (x *exchange) retry(n int, a attemptResult) (again bool, err error) {
	h, rp, ctx := x.h, &x.pol.retry, x.in.Context()
	if !x.canRetry || n >= rp.attempts || !rp.retryable(a.resp, a.err) || ctx.Err() != nil {
		return false, nil
	}
	wait := rp.backoff(n, jitter)
	if !h.retryFits(a.at, wait, a.pauseUntil, x.deadline) {
		return false, nil
	}
	if !h.retries.allow(x.pol.retryBudget) {
		x.rec.RetryDenied = true
		return false, nil
	}
	if a.resp != nil {
		discard(a.resp)
	}
	arrival, seq := x.permit.Arrival(), x.permit.Seq()
	x.release()
	if !h.sleep(ctx, wait) {
		return false, context.Canceled
	}
	req := dispatch.Request{
		Urgency: x.rec.Priority, Kind: dispatch.HTTP, Deadline: x.deadline, Dest: x.destKey, Arrival: arrival, Seq: seq, Cost: x.cost,
	}
	if err := x.acquire(req); err != nil {
		return false, err
	}
	x.rec.Retries++
	return true, nil
}

// upstreamTimeout is the header timeout for this attempt: what is left of
// the caller's budget, else upstream.timeout.
func (h *Handler) upstreamTimeout(pol *policy, deadline time.Time) time.Duration {
	if deadline.IsZero() {
		return pol.timeout
	}
	return max(deadline.Sub(h.clock.Now()), time.Millisecond)
}

// retryFits reports whether a retry after wait, held in the queue until
// pauseUntil (the destination's pause: Retry-After, a rate-limit reset),
// can be admitted: both must come before the caller's deadline and before
// the live limits.max_wait from now. One that cannot would end in the
// proxy's own queue timeout, the upstream's answer thrown away: that answer
// is forwarded instead.
func (h *Handler) retryFits(now time.Time, wait time.Duration, pauseUntil, deadline time.Time) bool {
	limit := now.Add(h.disp.Limits().MaxWait)
	if !deadline.IsZero() && deadline.Before(limit) {
		limit = deadline
	}
	return now.Add(wait).Before(limit) && (pauseUntil.IsZero() || pauseUntil.Before(limit))
}

// respond copies the upstream's response to the client: its headers with
// Via, Server-Timing and X-Request-Id, then its body as it streams.
func (x *exchange) respond(resp *http.Response) error {
	defer resp.Body.Close()
	h, rec := x.h, &x.rec
	rec.Status = resp.StatusCode
	rec.Outcome = outcome.Forwarded
	x.wrote = true
	timing := headers.ServerTiming(rec.QueueWait, rec.Upstream)
	mb := x.meter(resp) // its usage, read as it streams (cost.go)
	n, err := upstream.CopyResponse(x.w, resp, func(hd http.Header) {
		upstream.AppendVia(hd, resp.ProtoMajor, resp.ProtoMinor)
		hd.Add("Server-Timing", timing)
		hd.Set("X-Request-Id", rec.ID)
	})
	rec.Bytes = n
	x.settle(mb)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, upstream.ErrBodyCut):
		// docs/metrics.md (proxyd_responses_cut_total): the stream is cut, logged and counted. The response is
		// forwarded (its headers went out); the error shows in the log.
		rec.Err = err
		rec.Cut = true
		h.log.Warn("upstream response cut mid-body", zap.String("request_id", rec.ID), zap.Error(err))
		panic(http.ErrAbortHandler)
	case errors.Is(err, h1.ErrWriteTimeout):
		// The client stopped reading for client_write_timeout: the
		// response is cut (the server resets the connection, or the
		// HTTP/2 stream) and the permit released. Forwarded, as for a
		// client that leaves mid-body; the log and a counter tell it.
		rec.Err = err
		rec.ClientWriteTimeout = true
		h.log.Warn("client write timeout: response cut", zap.String("request_id", rec.ID), zap.Error(err))
		return nil
	default:
		// The client went away mid-body.
		rec.Err = err
		return nil
	}
}

// clientBody is a request body as it streams upstream. It keeps the first
// read error other than io.EOF (read in the transport's goroutine, so
// atomically), so that a failed exchange can be blamed on the client.
type clientBody struct {
	io.ReadCloser
	err atomic.Pointer[error]
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// failed returns the body's read error, or nil.
func (b *clientBody) failed() error {
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}

// bodyError is the error of an exchange that failed reading the client's
// body: the client left (its context is done, or the body ended early:
// only a connection closing can do that) or sent a malformed body (400).
func bodyError(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: reading the request body: %w", upstream.ErrClientGone, err)
	}
	return fmt.Errorf("%w: %w", &detailed{errBadBody, "malformed request body"}, err)
}

// discard drains a little of a response that will not be forwarded, so
// its connection can be reused, and closes it.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

// sleep waits d on the handler's clock, or until ctx ends (false).
func (h *Handler) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	done := make(chan struct{})
	t := h.clock.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}
