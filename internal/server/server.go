package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyd/proxyd/internal/admin"
	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/metrics"
	"github.com/proxyd/proxyd/internal/proxy"
	"github.com/proxyd/proxyd/internal/store"
	"github.com/proxyd/proxyd/internal/tracing"
	"github.com/proxyd/proxyd/internal/upstream"
)

// Deps are what a Server takes besides its configuration.
type Deps struct {
	// LogOutput receives the log lines (log.format); nil: they are
	// discarded.
	LogOutput io.Writer
	// Registry holds the metrics /metrics serves; proxyd's own are
	// registered on it. nil: a new, private registry.
	Registry *prometheus.Registry
	// Clock is the dispatcher's and the admin API's time source; nil: the
	// real clock.
	Clock clock.Clock
	// Load builds the configuration again, from the same sources, for a
	// reload (Reload, and the watch of ConfigFile). nil: Reload fails.
	Load func() (config.Config, error)
	// ConfigFile is the configuration file to watch: a change of its
	// content reloads. "": no watch.
	ConfigFile string
	// ConfigSum is the SHA-256 of ConfigFile as it was loaded for New: the
	// watch starts from it, so that an edit made in between is applied.
	// nil: the file as the watch first finds it.
	ConfigSum []byte
	// Version is proxyd's version, for tracing's service.version.
	Version string
}

// ConfigError is an error of the configuration given to New (a value or
// a file it names), as opposed to one of serving (an address in use).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Server is a running proxyd: both listeners and everything behind them.
// Its methods are safe for concurrent use.
type Server struct {
	deps    Deps
	log     *zap.Logger
	level   zap.AtomicLevel
	logSync *zapcore.BufferedWriteSyncer // flushed and stopped when Run returns

	mu  sync.Mutex // guards cfg (reloads, the admin API, the fleet's limits)
	cfg config.Config

	draining atomic.Bool                     // stopping: reloads are ignored
	runDone  atomic.Pointer[<-chan struct{}] // Run's ctx.Done(), once Run started
	abort    chan struct{}
	stopOnce sync.Once

	disp    *dispatch.Dispatcher
	fwd     *upstream.Forwarder
	gateway *upstream.Forwarder // routes' upstreams: trusted by the egress policy
	egress  *egress.Guard
	store   *store.Store // limits.store: redis; nil for memory
	certs   certCounts   // TLS interception's leaf counters, across reloads
	handler *proxy.Handler
	admin   *admin.Server
	metrics *metrics.Metrics
	tracing *tracing.Tracing // flushed at the end of the drain

	proxySrv         *h1.Server
	adminSrv         *http.Server
	proxyLn, adminLn net.Listener
}

// The admin API reads and changes the live limits through the server.
var _ admin.Backend = (*Server)(nil)

// logFlushInterval bounds how long a log line may sit in the buffer: the
// access log writes one line per request, and a write(2) per line would
// cost more than the proxying itself at high rates.
const logFlushInterval = 200 * time.Millisecond

func newLogger(c config.Log, out io.Writer) (*zap.Logger, zap.AtomicLevel, *zapcore.BufferedWriteSyncer, error) {
	level, err := zap.ParseAtomicLevel(c.Level)
	if err != nil {
		return nil, level, nil, &ConfigError{fmt.Errorf("log.level: %w", err)}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.SecondsDurationEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	if out == nil {
		out = io.Discard
	}
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(out), Size: 256 << 10, FlushInterval: logFlushInterval}
	core := zapcore.NewCore(enc, ws, level)
	return zap.New(core), level, ws, nil
}

// New builds everything cfg (valid: config.Load's or config.Validate's)
// describes and binds both listeners. Its errors are *ConfigError when the
// configuration is at fault. Run serves; a Server that is never run keeps
// its listeners until the process ends.
func New(cfg config.Config, deps Deps) (_ *Server, err error) {
	log, level, logSync, err := newLogger(cfg.Log, deps.LogOutput)
	if err != nil {
		return nil, err
	}
	s := &Server{deps: deps, log: log, level: level, logSync: logSync, cfg: cfg, abort: make(chan struct{})}
	defer func() {
		if err != nil {
			s.flushTraces()
			_ = logSync.Stop()
		}
	}()
	dcfg, err := dispatch.ConfigOf(cfg)
	if err != nil {
		return nil, &ConfigError{err}
	}
	s.disp = dispatch.New(dcfg, dispatch.Deps{Clock: deps.Clock})
	users, err := loadUsers(cfg.Auth)
	if err != nil {
		return nil, &ConfigError{err}
	}
	pol, err := egress.New(cfg.Egress)
	if err != nil {
		return nil, &ConfigError{err}
	}
	s.egress = egress.NewGuard(pol)
	auth, roots, err := loadTLS(cfg.TLS)
	if err != nil {
		return nil, &ConfigError{err}
	}
	s.certs.set(auth)
	fc := upstream.Config{DialTimeout: cfg.Upstream.DialTimeout, MaxIdleConnsPerHost: cfg.Upstream.MaxIdleConnsPerHost, Control: s.egress.Control, ExtraRoots: roots}
	s.fwd = upstream.New(fc)
	fc.Control = s.egress.ControlTrusted
	s.gateway = upstream.New(fc)
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.metrics, err = metrics.New(reg, metrics.Deps{Stats: s.disp.Stats, Certificates: s.certs.stats,
		Unsolicited: func() uint64 { return s.fwd.UnsolicitedResponses() + s.gateway.UnsolicitedResponses() }}); err != nil {
		return nil, err
	}
	if s.tracing, err = tracing.New(cfg.Tracing, tracing.Deps{Logger: log.Named("tracing"), Version: deps.Version}); err != nil {
		return nil, &ConfigError{err}
	}
	s.handler, err = proxy.New(cfg, proxy.Deps{Dispatcher: s.disp, Forwarder: s.fwd, Gateway: s.gateway, Egress: s.egress, Authority: auth, Users: users, Logger: log.Named("access"), Observe: s.metrics.Observe,
		Tracer: s.tracing.Provider()})
	if err != nil {
		return nil, &ConfigError{err}
	}
	if cfg.Limits.Store == config.StoreRedis {
		s.store, err = store.New(cfg.Redis, s.disp, store.Hooks{Limits: s.applySharedLimits}, log.Named("store"), reg)
		if err != nil {
			return nil, &ConfigError{err}
		}
	}
	s.admin = admin.New(admin.Config{Token: cfg.Admin.Token, AllowedHosts: cfg.Admin.AllowedHosts}, admin.Deps{
		Logger:  log.Named("admin"),
		Backend: s,
		Clock:   deps.Clock,
		Counts:  s.metrics.Counts,
		Store:   s.storeStatus,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log.Named("metrics"))}),
	})

	if s.proxyLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		s.proxyLn.Close()
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	// docs/configuration.md, "Egress policy": proxyd's own listeners are never reachable through it.
	if err := s.egress.SetSelf([]net.Addr{s.proxyLn.Addr(), s.adminLn.Addr()}, nil); err != nil {
		s.proxyLn.Close()
		s.adminLn.Close()
		return nil, err
	}
	errLog := zap.NewStdLog(log.Named("http"))
	// The proxy listener runs on the h1 server (HTTP/1.1, net/http's
	// parser, less per-request overhead: see internal/h1); the admin one on
	// net/http's.
	s.proxySrv = &h1.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
		// client_write_timeout, live: the handler has the value of the
		// last reload.
		WriteStallTimeout: s.handler.ClientWriteTimeout,
	}
	// ReadTimeout bounds a slow request body too (the API reads up to
	// 64 KiB), so a client cannot hold an admin connection open for ever.
	s.adminSrv = &http.Server{
		Handler:           s.admin,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		ErrorLog:          errLog,
	}
	if s.store != nil {
		s.store.Start(cfg.Limits.Rate, cfg.Limits.Burst)
	}
	return s, nil
}

// Logger is the server's logger (log.*), for the command's own lines.
func (s *Server) Logger() *zap.Logger { return s.log }

// Addr is the proxy listener's address; AdminAddr the admin listener's.
func (s *Server) Addr() net.Addr      { return s.proxyLn.Addr() }
func (s *Server) AdminAddr() net.Addr { return s.adminLn.Addr() }

// storeStatus is the shared store's state for the admin API; false
// without one.
func (s *Server) storeStatus() (admin.StoreStatus, bool) {
	if s.store == nil {
		return admin.StoreStatus{}, false
	}
	st := s.store.Status()
	return admin.StoreStatus{Store: config.StoreRedis, Up: st.Up, Replicas: st.Replicas, Since: st.Since}, true
}

// applySharedLimits applies the fleet's rate and burst, set by another
// replica (store.Hooks.Limits); it is not written back to the store.
func (s *Server) applySharedLimits(rate float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Limits.Rate == rate && s.cfg.Limits.Burst == burst {
		return
	}
	s.log.Info("fleet-wide limits changed by another replica", zap.Float64("rate", rate), zap.Int("burst", burst))
	s.cfg.Limits.Rate, s.cfg.Limits.Burst = rate, burst
	s.disp.SetLimits(dispatch.LimitsOf(s.cfg.Limits))
}

// shareLimits writes rate and burst to the shared store when they changed
// here (a PATCH, PUT or reload), so that every replica applies them. While
// the store cannot be reached the change applies here at once (at this
// replica's share of the rate) and the store writes it when it answers
// again (docs/shared-quota.md).
func (s *Server) shareLimits(old, cur config.Limits) {
	if s.store == nil || old.Rate == cur.Rate && old.Burst == cur.Burst {
		return
	}
	if err := s.store.SetLimits(context.Background(), cur.Rate, cur.Burst); err != nil {
		s.log.Warn("fleet-wide limits not written yet: the shared store cannot be reached; they are written when it answers again", zap.Error(err))
	}
}

// Run serves until ctx is done, then drains (docs/operations.md,
// "Graceful shutdown"): not ready, no new connections, waiting requests
// keep their place and in-flight ones (tunnels too) go on for up to
// shutdown_timeout, or until Abort; then what still waits is answered
// "draining" and what is in flight is cut. It returns nil after a drain,
// or the error of a listener that failed on its own (after stopping
// everything). Call it once.
func (s *Server) Run(ctx context.Context) error {
	defer s.logSync.Stop() //nolint:errcheck // flushes; the output's errors are meaningless here
	done := ctx.Done()
	s.runDone.Store(&done)
	errc := make(chan error, 2)
	go func() { errc <- s.proxySrv.Serve(s.proxyLn) }()
	go func() { errc <- s.adminSrv.Serve(s.adminLn) }()
	s.mu.Lock()
	token := s.cfg.Admin.Token // a reload may write s.cfg at any time
	s.mu.Unlock()
	if token == "" && !isLoopback(s.adminLn.Addr()) {
		s.log.Warn("the admin API is reachable from other hosts without a token: anyone who can reach it can change the limits; set admin.token (PROXYD_ADMIN_TOKEN)",
			zap.String("admin_listen", s.adminLn.Addr().String()))
	}
	if path := s.deps.ConfigFile; path != "" {
		stop, done := make(chan struct{}), make(chan struct{})
		if err := s.watchConfig(path, stop, done); err != nil {
			s.log.Warn("cannot watch the config file; SIGHUP still reloads", zap.String("file", path), zap.Error(err))
		} else {
			defer func() { close(stop); <-done }()
		}
	}
	s.admin.SetReady(true)
	s.log.Info("proxyd serving",
		zap.String("listen", s.proxyLn.Addr().String()),
		zap.String("admin_listen", s.adminLn.Addr().String()))

	select {
	case <-ctx.Done():
		s.draining.Store(true)
		s.shutdown()
		<-errc
		<-errc
		return nil
	case err := <-errc:
		// A listener failed on its own: stop everything.
		s.draining.Store(true)
		s.shutdownNow()
		<-errc
		return err
	}
}

// Abort cuts a drain short: what waits is answered "draining" at once and
// what is in flight is cut. Before the drain it only marks the next one
// as cut at once.
func (s *Server) Abort() {
	s.stopOnce.Do(func() { close(s.abort) })
}

// Reload builds the configuration again (Deps.Load) and applies what can
// change live: limits, priority settings, timeouts, log level, the files
// of tls.* and auth.htpasswd. It changes nothing when the new
// configuration is invalid, and logs the outcome. During the drain it
// does nothing.
func (s *Server) Reload() error {
	if s.stopping() {
		// A reload (systemd ExecReload, a config tool) must not cut the
		// drain short.
		s.log.Info("reload ignored while draining")
		return nil
	}
	err := s.reload()
	if err != nil {
		s.log.Error("reload failed; keeping the current configuration", zap.Error(err))
	}
	return err
}

// stopping reports whether the drain has begun (Run's context is done).
func (s *Server) stopping() bool {
	if s.draining.Load() {
		return true
	}
	if d := s.runDone.Load(); d != nil {
		select {
		case <-*d:
			return true
		default:
		}
	}
	return false
}

func (s *Server) reload() (err error) {
	defer func() { s.metrics.Reloaded(err == nil) }()
	if s.deps.Load == nil {
		return errors.New("no configuration source to reload from")
	}
	cfg, err := s.deps.Load()
	if err != nil {
		return err
	}
	// The CA and upstream roots are read again on every reload (docs/tls-interception.md, "Set it up"),
	// before anything changes.
	auth, roots, err := loadTLS(cfg.TLS)
	if err != nil {
		return err
	}
	users, err := loadUsers(cfg.Auth) // reloaded with the config (docs/configuration.md, "Clients")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cfg
	if err := s.applyLocked(cfg); err != nil {
		return err
	}
	for _, f := range []*upstream.Forwarder{s.fwd, s.gateway} {
		if err := f.SetExtraRoots(roots); err != nil {
			s.log.Error("tls.upstream_ca not applied", zap.Error(err))
		}
	}
	s.handler.SetAuthority(auth)
	s.certs.set(auth)
	s.handler.SetUsers(users)
	if lvl, err := zap.ParseAtomicLevel(cfg.Log.Level); err == nil {
		s.level.SetLevel(lvl.Level())
	}
	if cfg.Listen != old.Listen || cfg.Admin.Listen != old.Admin.Listen || cfg.Admin.Token != old.Admin.Token || !slices.Equal(cfg.Admin.AllowedHosts, old.Admin.AllowedHosts) || cfg.Log.Format != old.Log.Format ||
		cfg.Upstream.DialTimeout != old.Upstream.DialTimeout || cfg.Upstream.MaxIdleConnsPerHost != old.Upstream.MaxIdleConnsPerHost {
		s.log.Warn("listen, admin.listen, admin.token, admin.allowed_hosts, log.format, upstream.dial_timeout and upstream.max_idle_conns_per_host change only on restart")
	}
	warnTracingRestart(s.log, old.Tracing, cfg.Tracing)
	s.log.Info("configuration reloaded",
		zap.Any("old_limits", dispatch.LimitsOf(old.Limits)), zap.Any("new_limits", dispatch.LimitsOf(cfg.Limits)))
	return nil
}

// applyLocked makes cfg live: priority and timeout policy, limits, hosts,
// aging. cfg is valid. s.mu is held.
func (s *Server) applyLocked(cfg config.Config) error {
	dcfg, err := dispatch.ConfigOf(cfg)
	if err != nil {
		return err
	}
	pol, err := egress.New(cfg.Egress)
	if err != nil {
		return err
	}
	if err := s.handler.SetPolicy(cfg); err != nil {
		return err
	}
	s.egress.SetPolicy(pol)
	if !reflect.DeepEqual(cfg.Egress, s.cfg.Egress) {
		// Idle pooled connections were judged by the old policy: the next
		// request to their destination dials (and is judged) again.
		s.fwd.Close()
	}
	// One step: limits, hosts, aging, reserve and fairness together
	// (a store outage's local share stays: the store owns it).
	s.disp.Reconfigure(dcfg)
	s.shareLimits(s.cfg.Limits, cfg.Limits)
	s.cfg = cfg
	return nil
}

// shutdown drains; see Run. A SIGHUP during it is ignored (Reload).
func (s *Server) shutdown() {
	s.admin.SetReady(false)
	s.disp.Drain()
	s.mu.Lock()
	timeout := s.cfg.ShutdownTimeout
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-s.abort:
			s.log.Warn("second signal: stopping now")
			cancel()
		case <-ctx.Done():
		}
	}()

	done := make(chan struct{})
	go func() {
		_ = s.proxySrv.Shutdown(ctx) // closes the listener, waits for handlers
		s.handler.WaitTunnels(ctx)   // hijacked tunnels are not tracked by Shutdown
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Out of time (or all done): answer the waiting, cut the rest.
	s.disp.Close()
	s.handler.CloseTunnels()
	grace, cancelGrace := context.WithTimeout(context.Background(), time.Second)
	_ = s.proxySrv.Shutdown(grace) // lets the "draining" answers go out
	cancelGrace()
	_ = s.proxySrv.Close()
	<-done
	s.flushTraces()
	s.stopAdmin()
	s.closeStore()
	s.fwd.Close()
	s.gateway.Close()
	s.log.Info("stopped")
}

func (s *Server) shutdownNow() {
	s.admin.SetReady(false)
	s.disp.Close()
	s.handler.CloseTunnels()
	_ = s.proxySrv.Close()
	s.flushTraces()
	s.stopAdmin()
	s.closeStore()
	s.fwd.Close()
	s.gateway.Close()
}

func (s *Server) closeStore() {
	if s.store != nil {
		s.store.Close()
	}
}

func (s *Server) stopAdmin() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.adminSrv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("admin shutdown", zap.Error(err))
	}
	_ = s.adminSrv.Close()
}

// Limits returns the live limits (admin.Backend).
func (s *Server) Limits() (config.Limits, []config.HostRule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Limits, append([]config.HostRule(nil), s.cfg.Hosts...)
}

// UpdateLimits applies limits changed through the admin API
// (admin.Backend). change validates them (internal/admin owns that
// validation, so it is not repeated here); when it fails nothing changes.
// They last until the next reload, which applies the file's.
func (s *Server) UpdateLimits(change func(*config.Limits, *[]config.HostRule) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	cfg.Hosts = append([]config.HostRule(nil), s.cfg.Hosts...)
	if err := change(&cfg.Limits, &cfg.Hosts); err != nil {
		return err
	}
	return s.applyLocked(cfg)
}

// Stats is the dispatcher's snapshot (admin.Backend).
func (s *Server) Stats() dispatch.Stats { return s.disp.Stats() }

// isLoopback reports whether a listener's address is only reachable from
// this host.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
