package admin

import (
	"net/http"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/metrics"
)

// Config configures the admin server.
type Config struct {
	// Token, when not empty, is required as "Authorization: Bearer <token>"
	// on /api/. /healthz, /readyz and /metrics stay open.
	Token string
	// AllowedHosts are the host names, besides IP literals and localhost,
	// whose requests are answered; any other Host gets 421 (host.go). nil:
	// none.
	AllowedHosts []string
}

// Deps are the admin server's collaborators.
type Deps struct {
	Logger *zap.Logger // nil: no logging
	// Backend serves /api/v1/; nil: no API routes.
	Backend Backend
	// Metrics serves /metrics; nil: no metrics route.
	Metrics http.Handler
	// Clock tells the time of remaining_seconds in /api/v1/queue; nil: the
	// system clock.
	Clock clock.Clock
	// Counts returns the request counters and queue-wait histograms for
	// /api/v1/stats; nil: they read as zero.
	Counts func() metrics.Counts
	// Store returns the shared limiter store's state for /api/v1/stats,
	// false when there is none; nil: none ("store": null).
	Store func() (StoreStatus, bool)
}

// Server is the admin HTTP handler. Create it with New; it is safe for
// concurrent use. It starts not ready: call SetReady(true) once serving.
type Server struct {
	log     *zap.Logger
	clock   clock.Clock
	mux     *http.ServeMux
	ready   atomic.Bool
	token   string
	hosts   hostCheck
	backend Backend
	counts  func() metrics.Counts
	store   func() (StoreStatus, bool)
}

// New returns an admin server.
func New(cfg Config, deps Deps) *Server {
	s := &Server{log: deps.Logger, clock: deps.Clock, mux: http.NewServeMux(), token: cfg.Token, hosts: newHostCheck(cfg.AllowedHosts), backend: deps.Backend, counts: deps.Counts, store: deps.Store}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	// The page is open (docs/admin-api.md, "GET /dashboard"); the data it fetches is under /api/.
	s.mux.HandleFunc("GET /dashboard", s.dashboard)
	s.mux.HandleFunc("GET /dashboard/{asset}", s.dashboard)
	if deps.Metrics != nil {
		s.mux.Handle("GET /metrics", deps.Metrics)
	}
	if s.backend != nil {
		api := http.NewServeMux()
		api.HandleFunc("GET /api/v1/limits", s.getLimits)
		api.HandleFunc("PATCH /api/v1/limits", s.updateLimits(false))
		api.HandleFunc("PUT /api/v1/limits", s.updateLimits(true))
		api.HandleFunc("GET /api/v1/queue", s.getQueue)
		api.HandleFunc("GET /api/v1/stats", s.getStats)
		api.HandleFunc("GET /api/v1/store", s.getStore)
		s.mux.Handle("/api/", s.requireToken(api))
	}
	return s
}

// SetReady sets what /readyz answers: 200 when true, 503 when false.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// ServeHTTP serves the admin routes, every one of them only to a request
// whose Host passes the DNS-rebinding check (host.go); any other is
// answered 421 before routing.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.hosts.allowed(r.Host) {
		s.misdirected(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	text(w, http.StatusOK, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.ready.Load() {
		text(w, http.StatusOK, "ready\n")
		return
	}
	text(w, http.StatusServiceUnavailable, "draining\n")
}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
