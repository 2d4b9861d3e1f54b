package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/headers"
	"github.com/proxyd/proxyd/internal/mitm"
	"github.com/proxyd/proxyd/internal/upstream"
)

// Deps are the Handler's collaborators.
type Deps struct {
	Dispatcher *dispatch.Dispatcher // required
	Forwarder  *upstream.Forwarder  // required
	// Gateway forwards to the upstreams of routes, which the operator chose
	// and the egress policy trusts (only the self rule applies): its own
	// connections, so that a pooled connection opened for a route is never
	// reused for a forward-proxy request. nil: Forwarder.
	Gateway *upstream.Forwarder
	// Egress is the egress policy checked before admission (the Forwarder's
	// Control checks the addresses dialed). nil: no check before admission.
	Egress *egress.Guard
	// Authority signs the leaves of intercepted tunnels (tls.intercept);
	// nil: no CONNECT is decrypted. SetAuthority changes it (reload).
	Authority *mitm.Authority
	// Users are the users of auth.htpasswd; nil: no authentication.
	// SetUsers changes them (reload).
	Users  *auth.Users
	Clock  clock.Clock // nil: the real clock
	Logger *zap.Logger // nil: no logging
	// Observe, when set, is called once per request with its record, after
	// the access log line (metrics hook it here).
	Observe func(*Record)
	// Tracer traces requests (trace.go); nil or a no-op provider: no
	// tracing, at no cost.
	Tracer trace.TracerProvider
}

// Handler is the proxy's http.Handler. Create it with New.
type Handler struct {
	disp    *dispatch.Dispatcher
	fwd     *upstream.Forwarder
	gateway *upstream.Forwarder
	egress  *egress.Guard
	clock   clock.Clock
	log     *zap.Logger
	obs     func(*Record)
	tr      *tracer // nil: tracing off
	policy  atomic.Pointer[policy]
	// authority is the CA of TLS interception (nil: none).
	authority atomic.Pointer[mitm.Authority]
	users     atomic.Pointer[auth.Users] // nil: no authentication
	stdLog    *log.Logger                // for the servers of decrypted tunnels
	ids       requestIDs
	retries   *retryBudget
	// writeTimeout is client_write_timeout, in nanoseconds (reload).
	writeTimeout atomic.Int64

	// Tunnels end when tunnelCtx is canceled (CloseTunnels, at shutdown).
	tunnelCtx    context.Context
	closeTunnels context.CancelFunc
	tunnels      struct {
		sync.Mutex
		n    int
		idle chan struct{} // closed when n drops to 0; nil while n == 0
	}
}

// tunnelStarted counts an open tunnel; it returns false once tunnels are
// being closed.
func (h *Handler) tunnelStarted() bool {
	h.tunnels.Lock()
	defer h.tunnels.Unlock()
	if h.tunnelCtx.Err() != nil {
		return false
	}
	if h.tunnels.n == 0 {
		h.tunnels.idle = make(chan struct{})
	}
	h.tunnels.n++
	return true
}

func (h *Handler) tunnelEnded() {
	h.tunnels.Lock()
	defer h.tunnels.Unlock()
	h.tunnels.n--
	if h.tunnels.n == 0 {
		close(h.tunnels.idle)
		h.tunnels.idle = nil
	}
}

// OpenTunnels is the number of open tunnels.
func (h *Handler) OpenTunnels() int {
	h.tunnels.Lock()
	defer h.tunnels.Unlock()
	return h.tunnels.n
}

// New builds a Handler from validated configuration.
func New(cfg config.Config, deps Deps) (*Handler, error) {
	if deps.Dispatcher == nil || deps.Forwarder == nil {
		return nil, errors.New("proxy: Dispatcher and Forwarder are required")
	}
	h := &Handler{disp: deps.Dispatcher, fwd: deps.Forwarder, gateway: deps.Gateway, egress: deps.Egress,
		clock: deps.Clock, log: deps.Logger, obs: deps.Observe, tr: newTracer(deps.Tracer)}
	if h.gateway == nil {
		h.gateway = h.fwd
	}
	if h.clock == nil {
		h.clock = clock.Real{}
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	if err := h.SetPolicy(cfg); err != nil {
		return nil, err
	}
	h.authority.Store(deps.Authority)
	h.users.Store(deps.Users)
	h.stdLog = zap.NewStdLog(h.log.Named("tunnel"))
	h.ids = newRequestIDs()
	h.retries = &retryBudget{clock: h.clock}
	h.tunnelCtx, h.closeTunnels = context.WithCancel(context.Background())
	return h, nil
}

// SetPolicy swaps the priority, timeout and rejection settings (reload).
func (h *Handler) SetPolicy(cfg config.Config) error {
	p, err := compilePolicy(cfg)
	if err != nil {
		return err
	}
	h.policy.Store(p)
	h.writeTimeout.Store(int64(cfg.ClientWriteTimeout))
	return nil
}

// ClientWriteTimeout is client_write_timeout as last set (SetPolicy): the
// h1 servers' WriteStallTimeout, the proxy listener's included.
func (h *Handler) ClientWriteTimeout() time.Duration {
	return time.Duration(h.writeTimeout.Load())
}

// WaitTunnels waits until every open tunnel has ended, or ctx is done.
func (h *Handler) WaitTunnels(ctx context.Context) {
	h.tunnels.Lock()
	idle := h.tunnels.idle
	h.tunnels.Unlock()
	if idle == nil {
		return
	}
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

// CloseTunnels cuts every open tunnel, refuses new ones, and waits until
// they are gone.
func (h *Handler) CloseTunnels() {
	h.closeTunnels()
	h.WaitTunnels(context.Background())
}

// ServeHTTP answers one proxy request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.clock.Now()
	// One policy for the whole request: a reload while it waits must not
	// apply new header names (drop-list, timeout header) to a request read
	// with the old ones.
	pol := h.policy.Load()
	rec := &Record{Start: start, Method: r.Method, ID: h.ids.next(r), Priority: -1}
	r = h.traceRequest(r, rec)
	w.Header().Set("X-Request-Id", rec.ID)
	var err error
	// Deferred so that a response cut mid-body (panic(http.ErrAbortHandler))
	// is still logged and counted, and so that any other panic is answered
	// (or, once the response has started, recorded as a cut).
	defer func() {
		v := recover()
		if v != nil && v != http.ErrAbortHandler {
			h.log.Error("panic serving a request", zap.String("request_id", rec.ID),
				zap.Any("panic", v), zap.Stack("stack"))
			err = fmt.Errorf("%w: %v", errPanic, v)
			if rec.wrote {
				// Too late for an answer: the client sees its stream cut.
				rec.Cut = true
				v = http.ErrAbortHandler
			} else {
				v = nil // answered 502 by finish
			}
		}
		h.finish(w, rec, pol, err)
		if v != nil {
			panic(v)
		}
	}()
	ti, _ := r.Context().Value(tunnelKey{}).(*tunnelInfo)
	rec.client, err = h.identify(r, pol, ti, rec)
	if rec.client != nil {
		rec.Client, rec.ClientLabel = rec.client.key, rec.client.label()
	}
	switch {
	case err != nil:
		// Not authenticated: nothing else is looked at.
		rec.Host = r.Host
		if r.URL.IsAbs() {
			rec.Host = r.URL.Host
		}
	case ti != nil:
		// Read from a decrypted tunnel (docs/tls-interception.md, "What happens to a request"): the same path as a plain
		// request, to https://<CONNECT host:port><path>.
		rec.Host, rec.Tunnel, rec.Intercepted = r.URL.Host, ti.id, true
		if err = ti.check(r); err == nil {
			err = h.forward(w, r, rec, pol, r.URL, h.fwd)
		}
	case r.Method == http.MethodConnect:
		rec.Host = r.Host
		err = h.tunnel(w, r, rec, pol)
	case r.URL.IsAbs():
		rec.Host = r.URL.Host
		err = h.forward(w, r, rec, pol, r.URL, h.fwd)
	default:
		// Gateway mode: an origin-form request goes where its route says.
		rec.Host = r.Host
		if hasDotSegment(r.URL.Path) {
			err = badTarget("dot segment in path")
			break
		}
		escaped := r.URL.EscapedPath()
		rt, n := matchRoute(pol.routes, escaped)
		if rt == nil {
			err = errNoRoute
			break
		}
		target := rt.target(escaped, n, r.URL.RawQuery)
		rec.Host = target.Host
		err = h.forward(w, r, rec, pol, target, h.gateway)
	}
}

// finish answers err (if any, and if nothing was written yet), then logs
// and observes the record.
func (h *Handler) finish(w http.ResponseWriter, rec *Record, pol *policy, err error) {
	if rec.Priority < 0 {
		rec.Priority = pol.defaultUrgency
	}
	if err != nil {
		a := classify(err, pol.rejectStatus)
		rec.Outcome = a.outcome
		var d *egress.Denial
		if errors.As(err, &d) {
			rec.EgressDenied = d.Reason
		}
		if !rec.wrote {
			rec.Status = a.status
			if a.status != StatusClientClosed {
				writeAnswer(w, a)
			}
		}
		rec.Err = err
	}
	rec.Duration = h.clock.Now().Sub(rec.Start)
	h.traceFinish(rec)
	h.logRecord(rec)
	if h.obs != nil {
		h.obs(rec)
	}
}

// admit resolves urgency and budget, then waits for a permit.
// req carries the Kind, Dest and NoToken of the admission; urgency and
// deadline come from r.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, rec *Record, pol *policy, req dispatch.Request, path string) (*dispatch.Permit, time.Time, error) {
	var user string
	if c := rec.client; c != nil {
		user, req.Client = c.user, c.key
		if c.pol != nil {
			req.ClientQueueSize = c.pol.queueSize
		}
	}
	u, err := pol.urgency(r, req.Dest, path, user)
	if err != nil {
		return nil, time.Time{}, err
	}
	if c := rec.client; c != nil && c.pol != nil && u < c.pol.maxPriority {
		u = c.pol.maxPriority // lowered to the client's max_priority, not refused
	}
	rec.Priority = u
	if upstream.IsLoop(r.Header) {
		return nil, time.Time{}, errLoop
	}
	budget, err := pol.budget(r)
	if err != nil {
		return nil, time.Time{}, err
	}
	var deadline time.Time
	if budget > 0 {
		deadline = rec.Start.Add(budget)
	}
	req.Urgency, req.Deadline = u, deadline
	qs := h.traceQueue()
	p, err := h.acquire(w, r, req)
	h.traceQueued(r.Context(), qs, req, p, err)
	if err != nil {
		return nil, time.Time{}, err
	}
	rec.QueueWait = p.Waited()
	rec.Admitted = true
	return p, deadline, nil
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

// upstreamTimeout is the header timeout for this attempt: what is left of
// the caller's budget, else upstream.timeout.
func (h *Handler) upstreamTimeout(pol *policy, deadline time.Time) time.Duration {
	if deadline.IsZero() {
		return pol.timeout
	}
	return max(deadline.Sub(h.clock.Now()), time.Millisecond)
}

// destination is a target's "host:port" (lower case, the scheme's default
// port when none is given): the unit of back-pressure and hosts rules.
func destination(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// forward admits the request, sends it through fwd (retrying what
// upstream.retry allows), and streams the response back. fwd is h.gateway
// for a route's upstream (trusted by the egress policy), else h.fwd.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, rec *Record, pol *policy, target *url.URL, fwd *upstream.Forwarder) error {
	if target.Scheme != "http" && target.Scheme != "https" {
		return badTarget("unsupported scheme " + strconv.Quote(target.Scheme))
	}
	if err := checkHostPort(target.Hostname(), target.Port()); err != nil {
		return err
	}
	dest := destination(target)
	if fwd == h.fwd {
		if err := h.checkEgress(dest, false); err != nil {
			return err
		}
	}
	p, deadline, err := h.admit(w, r, rec, pol, dispatch.Request{Kind: dispatch.HTTP, Dest: dest}, target.Path)
	if err != nil {
		return err
	}
	// Released after the body is done: the slot is held while it streams.
	defer func() {
		if p != nil {
			p.Release()
		}
	}()
	rp := &pol.retry
	canRetry := rp.attempts > 0 && idempotent(r.Method)
	var body []byte
	if canRetry {
		var ok bool
		if body, ok, err = replayBody(r); err != nil {
			return fmt.Errorf("%w: reading the request body: %w", upstream.ErrClientGone, err)
		}
		canRetry = ok
	}
	// A body read as it streams upstream is watched for the client's
	// errors: a malformed or cut body is the client's failure, not the
	// upstream's. (A buffered one was read whole above.)
	var cb *clientBody
	if body == nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		cb = &clientBody{ReadCloser: r.Body}
	}
	if rp.attempts > 0 {
		// With retries off nothing is counted: the budget only ever
		// under-counts then, which errs on the side of fewer retries, for
		// at most its 10 s window after a reload turns retries on (and
		// budgetFloor retries stay allowed).
		h.retries.request()
	}
	for attempt := 0; ; attempt++ {
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		out := upstream.Outbound(r.Context(), r, target, pol.drop)
		if cb != nil {
			out.Body = cb
		}
		as := h.traceAttempt(r.Context(), out, attempt)
		sent := h.clock.Now()
		resp, err := fwd.RoundTrip(out, h.upstreamTimeout(pol, deadline))
		if err != nil && cb != nil {
			if berr := cb.failed(); berr != nil {
				err = bodyError(r.Context(), berr)
			}
		}
		as.end(resp, err)
		now := h.clock.Now()
		rec.Upstream = now.Sub(sent)
		var pauseUntil time.Time
		if err == nil {
			if until, ok := headers.Backpressure(resp.StatusCode, resp.Header, now, pol.maxPause); ok {
				h.disp.Pause(dest, until)
				pauseUntil = until
				rec.Pauses++
			}
			// What is left caps what goes next (provider.go).
			h.capProvider(dest, resp.Header, now, pol.maxPause)
		}
		if canRetry && attempt < rp.attempts && rp.retryable(resp, err) && r.Context().Err() == nil {
			wait := rp.backoff(attempt, jitter)
			fits := h.retryFits(now, wait, pauseUntil, deadline)
			switch {
			case !fits:
			case !h.retries.allow(pol.retryBudget):
				rec.RetryDenied = true
			default:
				if resp != nil {
					discard(resp)
				}
				arrival, seq := p.Arrival(), p.Seq()
				p.Release()
				if !h.sleep(r.Context(), wait) {
					return context.Canceled
				}
				req := dispatch.Request{
					Urgency: rec.Priority, Kind: dispatch.HTTP, Deadline: deadline, Dest: dest, Arrival: arrival, Seq: seq,
				}
				qs := h.traceQueue()
				p, err = h.acquire(w, r, req)
				h.traceQueued(r.Context(), qs, req, p, err)
				if err != nil {
					p = nil
					return err
				}
				rec.QueueWait += p.Waited()
				rec.Retries++
				continue
			}
		}
		if err != nil {
			return err
		}
		return h.writeResponse(w, rec, resp)
	}
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

// checkEgress judges dest ("host:port") by the egress policy before
// admission; connect is set for a CONNECT. A refusal is a *egress.Denial.
func (h *Handler) checkEgress(dest string, connect bool) error {
	if h.egress == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(dest)
	if err != nil {
		return badTarget("bad destination " + strconv.Quote(dest))
	}
	n, _ := strconv.Atoi(port)
	if d := h.egress.CheckTarget(host, n, connect); d != nil {
		return d
	}
	return nil
}

// checkHostPort validates a target's host and port, as split from its
// authority: the host must not be empty, and the port, when there is one,
// must be a number from 1 to 65535. Such a target is the client's mistake
// (400), refused before it takes a token or a slot.
func checkHostPort(host, port string) error {
	if host == "" {
		return badTarget("no host in request target")
	}
	if port == "" {
		return nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return badTarget("port out of range: " + strconv.Quote(port))
	}
	return nil
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

func (h *Handler) writeResponse(w http.ResponseWriter, rec *Record, resp *http.Response) error {
	defer resp.Body.Close()
	rec.Status = resp.StatusCode
	rec.Outcome = OutcomeForwarded
	rec.wrote = true
	timing := headers.ServerTiming(rec.QueueWait, rec.Upstream)
	n, err := upstream.CopyResponse(w, resp, func(hd http.Header) {
		upstream.AppendVia(hd, resp.ProtoMajor, resp.ProtoMinor)
		hd.Add("Server-Timing", timing)
		hd.Set("X-Request-Id", rec.ID)
	})
	rec.Bytes = n
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

// requestIDs hands out request ids: the client's X-Request-Id when it
// sends a sane one, else a per-process random prefix and a counter.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() requestIDs {
	return requestIDs{prefix: strconv.FormatInt(time.Now().UnixNano()&0xffffffffff, 36)}
}

func (g *requestIDs) next(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && printable(id) {
		return id
	}
	return g.prefix + "-" + strconv.FormatUint(g.n.Add(1), 36)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
