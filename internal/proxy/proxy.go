package proxy

import (
	"context"
	"errors"
	"log"
	"net/http"
	"strconv"
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
	"github.com/proxyd/proxyd/internal/mitm"
	"github.com/proxyd/proxyd/internal/outcome"
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
	Observe func(*outcome.Record)
	// Tracer traces requests (trace.go); nil or a no-op provider: no
	// tracing, at no cost.
	Tracer trace.TracerProvider
	// PricingMemory bounds the bytes of request bodies held at once to
	// price them (hosts[].cost estimate: body; cost.go); 0:
	// DefaultPricingMemory.
	PricingMemory int64
}

// Handler is the proxy's http.Handler. Create it with New.
type Handler struct {
	disp    *dispatch.Dispatcher
	fwd     *upstream.Forwarder
	gateway *upstream.Forwarder
	egress  *egress.Guard
	clock   clock.Clock
	log     *zap.Logger
	obs     func(*outcome.Record)
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
	// pricing counts the body bytes held to price requests (cost.go).
	pricing pricingBudget

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
	h.pricing.limit = deps.PricingMemory
	if h.pricing.limit <= 0 {
		h.pricing.limit = DefaultPricingMemory
	}
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
