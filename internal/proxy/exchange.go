package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/hostport"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/upstream"
)

// exchange is one request on its way through the proxy, from ServeHTTP to
// its record (docs/architecture.md, "A request's path"). Its steps are its
// methods, in order:
//
//	identify   who sent it (clients.go)
//	resolve    the target and its destination, parsed once; the loop check
//	admit      urgency and budget (before admission), then the queue
//	forward    attempts and retry decisions (forward.go), the response copy
//	connect    a CONNECT: one tunnel opening (tunnel.go), then splice or
//	           intercept (intercept.go)
//	finish     the answer of an error, the access log, the metrics
//
// The inbound request is never modified: what goes upstream is built for
// each attempt (outbound), as httputil's ProxyRequest{In, Out}.
type exchange struct {
	h   *Handler
	w   http.ResponseWriter
	in  *http.Request // as received, with the server span in its context (trace.go)
	pol *policy       // one policy for the whole request: a reload while it waits must not apply new header names (drop-list, timeout header) to a request read with the old ones
	rec outcome.Record

	client *clientID   // who sent it (identify); nil when authentication failed
	ti     *tunnelInfo // the intercepted tunnel it was read from; nil: none

	// The target, resolved once (resolve).
	target  *url.URL            // where it is forwarded; nil for a CONNECT
	dest    hostport.HostPort   // the target's host and port
	destKey string              // dest.String(): the dispatcher's key
	fwd     *upstream.Forwarder // h.gateway for a route's upstream, else h.fwd

	// Admission (admit).
	deadline   time.Time        // the caller's budget ends; zero: no budget
	permit     *dispatch.Permit // held until the response body, or the tunnel, is done
	tunnelOpen bool             // counted by Handler.tunnelStarted

	// Pricing (cost.go): the cost it was priced at (0: not priced), its
	// rule's pricing, the start of the body read to price it (all of it
	// with prefixAll), and the headers never forwarded (nil: the
	// policy's).
	cost        int64
	costRule    *priceRule
	prefix      []byte
	prefixAll   bool
	drop        []string
	pricingHeld int64 // bytes of the pricing budget held for prefix

	// Forwarding (forward.go).
	canRetry bool        // idempotent, retries on, and its body can be sent again
	replay   []byte      // the buffered body each attempt sends; nil: none
	body     *clientBody // the body as it streams upstream (not buffered); nil: none

	wrote bool       // the response (or tunnel) started: no error answer possible
	span  trace.Span // the request's server span (trace.go); nil: tracing off
}

// ServeHTTP answers one proxy request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{h: h, w: w, pol: h.policy.Load(), ti: tunnelOf(r)}
	x.rec = outcome.Record{Start: h.clock.Now(), Method: r.Method, ID: h.ids.next(r), Priority: -1}
	x.in = h.traceRequest(r, x)
	w.Header().Set("X-Request-Id", x.rec.ID)
	var err error
	// Deferred so that a response cut mid-body (panic(http.ErrAbortHandler))
	// is still logged and counted, and so that any other panic is answered
	// (or, once the response has started, recorded as a cut).
	defer func() {
		v := recover()
		if v != nil && v != http.ErrAbortHandler {
			h.log.Error("panic serving a request", zap.String("request_id", x.rec.ID),
				zap.Any("panic", v), zap.Stack("stack"))
			err = fmt.Errorf("%w: %v", errPanic, v)
			if x.wrote {
				// Too late for an answer: the client sees its stream cut.
				x.rec.Cut = true
				v = http.ErrAbortHandler
			} else {
				v = nil // answered 502 by finish
			}
		}
		x.end()
		x.finish(err)
		if v != nil {
			panic(v)
		}
	}()
	err = x.serve()
}

// serve takes the request through its steps; an error is answered by
// finish.
func (x *exchange) serve() error {
	if err := x.identify(); err != nil {
		// Not authenticated: nothing else is looked at.
		x.rec.Host = x.in.Host
		if x.in.URL.IsAbs() {
			x.rec.Host = x.in.URL.Host
		}
		return err
	}
	if err := x.resolve(); err != nil {
		return err
	}
	if x.target == nil {
		return x.connect()
	}
	return x.forward()
}

// resolve finds where the request goes: a CONNECT's authority, an
// absolute URL, a route's upstream (gateway mode), or, read from an
// intercepted tunnel, https://<CONNECT host:port><path>. The destination is
// parsed here once; priority rules, hosts rules, the egress policy and
// tunnels take it as it is. A request whose Via already names proxyd is a
// loop, answered 508 whatever its other headers say.
func (x *exchange) resolve() error {
	r := x.in
	switch {
	case x.ti != nil:
		// docs/tls-interception.md, "What happens to a request".
		x.rec.Tunnel, x.rec.Intercepted = x.ti.id, true
		x.rec.Host = x.ti.dest.String()
		if r.URL.IsAbs() {
			x.rec.Host = r.URL.Host
		}
	case r.Method != http.MethodConnect && r.URL.IsAbs():
		x.rec.Host = r.URL.Host
	default:
		x.rec.Host = r.Host
	}
	if err := x.resolveTarget(); err != nil {
		return err
	}
	if upstream.IsLoop(r.Header) {
		// Recorded with its urgency when its headers give a valid one
		// (the metrics' priority label); a bad one changes nothing.
		if u, err := x.urgency(x.path()); err == nil {
			x.rec.Priority = u
		}
		return errLoop
	}
	return nil
}

// resolveTarget sets the target and destination, and judges the
// destination by the egress policy.
func (x *exchange) resolveTarget() error {
	r := x.in
	switch {
	case x.ti != nil:
		target, err := x.ti.check(r)
		if err != nil {
			return err
		}
		return x.setTarget(target, x.h.fwd)
	case r.Method == http.MethodConnect:
		dest, err := hostport.Parse(r.Host)
		if err != nil {
			if pe, ok := errors.AsType[*hostport.PortError](err); ok {
				return badTarget(pe.Error())
			}
			return badTarget("CONNECT needs host:port, got " + strconv.Quote(r.Host))
		}
		x.dest, x.destKey = dest, dest.String()
		return x.h.checkEgress(dest, true)
	case r.URL.IsAbs():
		return x.setTarget(r.URL, x.h.fwd)
	}
	// Gateway mode: an origin-form request goes where its route says.
	if hasDotSegment(r.URL.Path) {
		return badTarget("dot segment in path")
	}
	escaped := r.URL.EscapedPath()
	rt, n := matchRoute(x.pol.routes, escaped)
	if rt == nil {
		return errNoRoute
	}
	target := rt.target(escaped, n, r.URL.RawQuery)
	x.rec.Host = target.Host
	return x.setTarget(target, x.h.gateway)
}

// path is what priority rules match: the target's path ("" for a
// CONNECT).
func (x *exchange) path() string {
	if x.target == nil {
		return ""
	}
	return x.target.Path
}

// setTarget validates a forwarded request's target and parses its
// destination. fwd is h.gateway for a route's upstream (trusted by the
// egress policy: only its dial-time checks apply), else h.fwd. A bad
// target is the client's mistake (400), refused before it takes a token or
// a slot.
func (x *exchange) setTarget(target *url.URL, fwd *upstream.Forwarder) error {
	if target.Scheme != "http" && target.Scheme != "https" {
		return badTarget("unsupported scheme " + strconv.Quote(target.Scheme))
	}
	dest, err := hostport.FromURL(target)
	if err != nil {
		return badTarget(err.Error())
	}
	x.target, x.dest, x.destKey, x.fwd = target, dest, dest.String(), fwd
	if fwd == x.h.fwd {
		return x.h.checkEgress(dest, false)
	}
	return nil
}

// checkEgress judges dest by the egress policy before admission; connect
// is set for a CONNECT. A refusal is a *egress.Denial.
func (h *Handler) checkEgress(dest hostport.HostPort, connect bool) error {
	if h.egress == nil {
		return nil
	}
	if d := h.egress.CheckTarget(dest.Host, dest.Port, connect); d != nil {
		return d
	}
	return nil
}

// admit decides what the request asks of admission (admission), then
// waits in the queue for a permit.
func (x *exchange) admit(kind dispatch.Kind, noToken bool) error {
	req, err := x.admission(kind, noToken)
	if err != nil {
		return err
	}
	return x.acquire(req)
}

// admission is everything decided before the request enters the queue:
// its urgency (priority.go; lowered to its client's max_priority, not
// refused) and its budget, read from its own headers, and its price in
// tokens (cost.go). A bad value of any is a 400, and the request is never
// queued.
func (x *exchange) admission(kind dispatch.Kind, noToken bool) (dispatch.Request, error) {
	req := dispatch.Request{Kind: kind, Dest: x.destKey, NoToken: noToken}
	if c := x.client; c != nil {
		req.Client = c.key
		if c.pol != nil {
			req.ClientQueueSize = c.pol.queueSize
		}
	}
	u, err := x.urgency(x.path())
	if err != nil {
		return req, err
	}
	x.rec.Priority = u
	budget, err := x.pol.budget(x.in, x.ti)
	if err != nil {
		return req, err
	}
	if budget > 0 {
		x.deadline = x.rec.Start.Add(budget)
	}
	req.Urgency, req.Deadline = u, x.deadline
	if x.target != nil {
		// Its price in tokens (cost.go), the body read for it if need be.
		if x.cost, err = x.price(); err != nil {
			return req, err
		}
		req.Cost, x.rec.CostEstimate = x.cost, x.cost
	}
	return req, nil
}

// urgency is the request's urgency (priority.go), lowered to its client's
// max_priority (not refused).
func (x *exchange) urgency(path string) (int, error) {
	var user string
	if x.client != nil {
		user = x.client.user
	}
	u, err := x.pol.urgency(x.in, x.ti, x.dest, path, user)
	if err != nil {
		return 0, err
	}
	if c := x.client; c != nil && c.pol != nil && u < c.pol.maxPriority {
		u = c.pol.maxPriority
	}
	return u, nil
}

// acquire waits for a permit for req (the first admission, or a retry's)
// and holds it in x.permit.
func (x *exchange) acquire(req dispatch.Request) error {
	qs := x.h.traceQueue()
	p, err := x.h.acquire(x.w, x.in, req)
	x.h.traceQueued(x.in.Context(), qs, req, p, err)
	if err != nil {
		return err
	}
	x.permit = p
	x.rec.QueueWait += p.Waited()
	x.rec.Admitted = true
	return nil
}

// release gives the permit back, if one is held.
func (x *exchange) release() {
	if x.permit != nil {
		x.permit.Release()
		x.permit = nil
	}
}

// end gives back what the exchange holds: the tunnel's count, then its
// permit (the concurrency slot is held while the body streams, the tunnel
// slot while the tunnel lasts).
func (x *exchange) end() {
	if x.tunnelOpen {
		x.tunnelOpen = false
		x.h.tunnelEnded()
	}
	x.release()
	x.releasePricing()
}

// clientWatcher is the h1 server's ResponseWriter: WatchClient makes it
// watch the connection for the client going away at once, instead of only
// once the request has run for a while (net/http's server always does).
type clientWatcher interface{ WatchClient() }

// acquire waits for a permit. A request that cannot be admitted at once
// has its client watched while it waits, so that a client that leaves
// takes it out of the queue at once (docs/operations.md, "Framing and header limits").
func (h *Handler) acquire(w http.ResponseWriter, r *http.Request, req dispatch.Request) (*dispatch.Permit, error) {
	ctx := r.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.NoToken {
		// An intercepted CONNECT needs only a tunnel slot: a free one is
		// taken at once, even with the queue full, and evicts nobody
		// (docs/tls-interception.md).
		if p, ok := h.disp.AcquireFree(req); ok {
			return p, nil
		}
	}
	t, err := h.disp.Enqueue(req)
	if err != nil {
		return nil, err
	}
	if p, err := t.Poll(); !errors.Is(err, dispatch.ErrPending) {
		return p, err
	}
	if cw, ok := w.(clientWatcher); ok {
		cw.WatchClient()
	}
	return t.Wait(ctx)
}

// finish answers err (if any, and if nothing was written yet), then logs
// and observes the record.
func (x *exchange) finish(err error) {
	h, rec := x.h, &x.rec
	if rec.Priority < 0 {
		rec.Priority = x.pol.defaultUrgency
	}
	if err != nil {
		a := classify(err, x.pol.rejectStatus)
		rec.Outcome = a.outcome
		var d *egress.Denial
		if errors.As(err, &d) {
			rec.EgressDenied = d.Reason
		}
		if !x.wrote {
			rec.Status = a.status
			if a.status != outcome.StatusClientClosed {
				writeAnswer(x.w, a)
			}
		}
		rec.Err = err
	}
	rec.Duration = h.clock.Now().Sub(rec.Start)
	h.traceFinish(rec, x.span)
	h.logRecord(rec, x.span)
	if h.obs != nil {
		h.obs(rec)
	}
}
