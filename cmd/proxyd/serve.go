package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyd/proxyd/internal/admin"
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

// app is a running proxyd: both listeners and everything behind them.
type app struct {
	opts    loadOptions
	log     *zap.Logger
	level   zap.AtomicLevel
	logSync *zapcore.BufferedWriteSyncer // flushed and stopped when serve returns

	mu  sync.Mutex // guards cfg (reloads)
	cfg config.Config
	// loadedSum is the SHA-256 of the config file as first loaded: where
	// the file watcher starts from.
	loadedSum []byte

	disp    *dispatch.Dispatcher
	fwd     *upstream.Forwarder
	gateway *upstream.Forwarder // routes' upstreams: trusted by the egress policy
	egress  *egress.Guard
	store   *store.Store // limits.store: redis; nil for memory
	certs   certCounts   // TLS interception's leaf counters, across reloads
	handler *proxy.Handler
	admin   *admin.Server
	metrics *metrics.Metrics
	reg     *prometheus.Registry
	tracing *tracing.Tracing // flushed at the end of the drain

	proxySrv         *h1.Server
	adminSrv         *http.Server
	proxyLn, adminLn net.Listener
}

// limitsOf converts configuration to the dispatcher's live limits.
func limitsOf(l config.Limits) dispatch.Limits { return dispatch.LimitsOf(l) }

// logFlushInterval bounds how long a log line may sit in the buffer: the
// access log writes one line per request, and a write(2) per line would
// cost more than the proxying itself at high rates.
const logFlushInterval = 200 * time.Millisecond

func newLogger(c config.Log, out io.Writer) (*zap.Logger, zap.AtomicLevel, *zapcore.BufferedWriteSyncer, error) {
	level, err := zap.ParseAtomicLevel(c.Level)
	if err != nil {
		return nil, level, nil, &configError{fmt.Errorf("log.level: %w", err)}
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
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(out), Size: 256 << 10, FlushInterval: logFlushInterval}
	core := zapcore.NewCore(enc, ws, level)
	return zap.New(core), level, ws, nil
}

// newApp builds everything and binds both listeners.
func newApp(cfg config.Config, opts loadOptions, logOut io.Writer) (_ *app, err error) {
	log, level, logSync, err := newLogger(cfg.Log, logOut)
	if err != nil {
		return nil, err
	}
	a := &app{opts: opts, log: log, level: level, logSync: logSync, cfg: cfg}
	defer func() {
		if err != nil {
			a.flushTraces()
			_ = logSync.Stop()
		}
	}()
	dcfg, err := dispatch.ConfigOf(cfg)
	if err != nil {
		return nil, &configError{err}
	}
	a.disp = dispatch.New(dcfg, dispatch.Deps{})
	users, err := loadUsers(cfg.Auth)
	if err != nil {
		return nil, &configError{err}
	}
	pol, err := egress.New(cfg.Egress)
	if err != nil {
		return nil, &configError{err}
	}
	a.egress = egress.NewGuard(pol)
	auth, roots, err := loadTLS(cfg.TLS)
	if err != nil {
		return nil, &configError{err}
	}
	a.certs.set(auth)
	fc := upstream.Config{DialTimeout: cfg.Upstream.DialTimeout, MaxIdleConnsPerHost: cfg.Upstream.MaxIdleConnsPerHost, Control: a.egress.Control, ExtraRoots: roots}
	a.fwd = upstream.New(fc)
	fc.Control = a.egress.ControlTrusted
	a.gateway = upstream.New(fc)
	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if a.metrics, err = metrics.New(a.reg, metrics.Deps{Stats: a.disp.Stats, Certificates: a.certs.stats,
		Unsolicited: func() uint64 { return a.fwd.UnsolicitedResponses() + a.gateway.UnsolicitedResponses() }}); err != nil {
		return nil, err
	}
	if a.tracing, err = newTracing(cfg.Tracing, log); err != nil {
		return nil, &configError{err}
	}
	a.handler, err = proxy.New(cfg, proxy.Deps{Dispatcher: a.disp, Forwarder: a.fwd, Gateway: a.gateway, Egress: a.egress, Authority: auth, Users: users, Logger: log.Named("access"), Observe: a.metrics.Observe,
		Tracer: a.tracing.Provider()})
	if err != nil {
		return nil, &configError{err}
	}
	if cfg.Limits.Store == config.StoreRedis {
		a.store, err = store.New(cfg.Redis, a.disp, store.Hooks{Limits: a.applySharedLimits}, log.Named("store"), a.reg)
		if err != nil {
			return nil, &configError{err}
		}
	}
	a.admin = admin.New(admin.Config{Token: cfg.Admin.Token, AllowedHosts: cfg.Admin.AllowedHosts}, admin.Deps{
		Logger:  log.Named("admin"),
		Backend: a,
		Counts:  a.metrics.Counts,
		Store:   a.storeStatus,
		Metrics: promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log.Named("metrics"))}),
	})

	if a.proxyLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if a.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		a.proxyLn.Close()
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	// docs/configuration.md, "Egress policy": proxyd's own listeners are never reachable through it.
	if err := a.egress.SetSelf([]net.Addr{a.proxyLn.Addr(), a.adminLn.Addr()}, nil); err != nil {
		a.proxyLn.Close()
		a.adminLn.Close()
		return nil, err
	}
	errLog := zap.NewStdLog(log.Named("http"))
	// The proxy listener runs on the h1 server (HTTP/1.1, net/http's
	// parser, less per-request overhead: see internal/h1); the admin one on
	// net/http's.
	a.proxySrv = &h1.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
		// client_write_timeout, live: the handler has the value of the
		// last reload.
		WriteStallTimeout: a.handler.ClientWriteTimeout,
	}
	// ReadTimeout bounds a slow request body too (the API reads up to
	// 64 KiB), so a client cannot hold an admin connection open for ever.
	a.adminSrv = &http.Server{
		Handler:           a.admin,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		ErrorLog:          errLog,
	}
	if a.store != nil {
		a.store.Start(cfg.Limits.Rate, cfg.Limits.Burst)
	}
	return a, nil
}

// storeStatus is the shared store's state for the admin API; false
// without one.
func (a *app) storeStatus() (admin.StoreStatus, bool) {
	if a.store == nil {
		return admin.StoreStatus{}, false
	}
	st := a.store.Status()
	return admin.StoreStatus{Store: config.StoreRedis, Up: st.Up, Replicas: st.Replicas, Since: st.Since}, true
}

// applySharedLimits applies the fleet's rate and burst, set by another
// replica (store.Hooks.Limits); it is not written back to the store.
func (a *app) applySharedLimits(rate float64, burst int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg.Limits.Rate == rate && a.cfg.Limits.Burst == burst {
		return
	}
	a.log.Info("fleet-wide limits changed by another replica", zap.Float64("rate", rate), zap.Int("burst", burst))
	a.cfg.Limits.Rate, a.cfg.Limits.Burst = rate, burst
	a.disp.SetLimits(limitsOf(a.cfg.Limits))
}

// shareLimits writes rate and burst to the shared store when they changed
// here (a PATCH, PUT or reload), so that every replica applies them. While
// the store cannot be reached the change applies here at once (at this
// replica's share of the rate) and the store writes it when it answers
// again (docs/shared-quota.md).
func (a *app) shareLimits(old, cur config.Limits) {
	if a.store == nil || old.Rate == cur.Rate && old.Burst == cur.Burst {
		return
	}
	if err := a.store.SetLimits(context.Background(), cur.Rate, cur.Burst); err != nil {
		a.log.Warn("fleet-wide limits not written yet: the shared store cannot be reached; they are written when it answers again", zap.Error(err))
	}
}

// serve runs until SIGTERM or SIGINT arrives on sig, then drains. SIGHUP
// reloads.
func (a *app) serve(sig <-chan os.Signal) error {
	defer a.logSync.Stop() //nolint:errcheck // flushes; stderr errors are meaningless
	errc := make(chan error, 2)
	go func() { errc <- a.proxySrv.Serve(a.proxyLn) }()
	go func() { errc <- a.adminSrv.Serve(a.adminLn) }()
	// Read before the file watch starts: a reload writes a.cfg (under a.mu).
	if a.cfg.Admin.Token == "" && !isLoopback(a.adminLn.Addr()) {
		a.log.Warn("the admin API is reachable from other hosts without a token: anyone who can reach it can change the limits; set admin.token (PROXYD_ADMIN_TOKEN)",
			zap.String("admin_listen", a.adminLn.Addr().String()))
	}
	if path := a.configPath(); path != "" {
		stop, done := make(chan struct{}), make(chan struct{})
		if err := a.watchConfig(path, stop, done); err != nil {
			a.log.Warn("cannot watch the config file; SIGHUP still reloads", zap.String("file", path), zap.Error(err))
		} else {
			defer func() { close(stop); <-done }()
		}
	}
	a.admin.SetReady(true)
	a.log.Info("proxyd serving",
		zap.String("listen", a.proxyLn.Addr().String()),
		zap.String("admin_listen", a.adminLn.Addr().String()))

	for {
		select {
		case s := <-sig:
			switch s {
			case syscall.SIGHUP:
				if err := a.reload(); err != nil {
					a.log.Error("reload failed; keeping the current configuration", zap.Error(err))
				}
			default:
				a.log.Info("shutting down", zap.String("signal", s.String()))
				a.shutdown(sig)
				<-errc
				<-errc
				return nil
			}
		case err := <-errc:
			// A listener failed on its own: stop everything.
			a.shutdownNow()
			<-errc
			return err
		}
	}
}

// reload loads the configuration again (same file, environment and flags)
// and applies what can change live: limits, priority settings, timeouts,
// log level. It changes nothing when the new configuration is invalid.
func (a *app) reload() (err error) {
	defer func() { a.metrics.Reloaded(err == nil) }()
	cfg, err := loadConfig(a.opts)
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
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg
	if err := a.applyLocked(cfg); err != nil {
		return err
	}
	for _, f := range []*upstream.Forwarder{a.fwd, a.gateway} {
		if err := f.SetExtraRoots(roots); err != nil {
			a.log.Error("tls.upstream_ca not applied", zap.Error(err))
		}
	}
	a.handler.SetAuthority(auth)
	a.certs.set(auth)
	a.handler.SetUsers(users)
	if lvl, err := zap.ParseAtomicLevel(cfg.Log.Level); err == nil {
		a.level.SetLevel(lvl.Level())
	}
	if cfg.Listen != old.Listen || cfg.Admin.Listen != old.Admin.Listen || cfg.Admin.Token != old.Admin.Token || !slices.Equal(cfg.Admin.AllowedHosts, old.Admin.AllowedHosts) || cfg.Log.Format != old.Log.Format ||
		cfg.Upstream.DialTimeout != old.Upstream.DialTimeout || cfg.Upstream.MaxIdleConnsPerHost != old.Upstream.MaxIdleConnsPerHost {
		a.log.Warn("listen, admin.listen, admin.token, admin.allowed_hosts, log.format, upstream.dial_timeout and upstream.max_idle_conns_per_host change only on restart")
	}
	warnTracingRestart(a.log, old.Tracing, cfg.Tracing)
	a.log.Info("configuration reloaded",
		zap.Any("old_limits", limitsOf(old.Limits)), zap.Any("new_limits", limitsOf(cfg.Limits)))
	return nil
}

// applyLocked makes cfg live: priority and timeout policy, limits, hosts,
// aging. cfg is valid. a.mu is held.
func (a *app) applyLocked(cfg config.Config) error {
	dcfg, err := dispatch.ConfigOf(cfg)
	if err != nil {
		return err
	}
	pol, err := egress.New(cfg.Egress)
	if err != nil {
		return err
	}
	if err := a.handler.SetPolicy(cfg); err != nil {
		return err
	}
	a.egress.SetPolicy(pol)
	if !reflect.DeepEqual(cfg.Egress, a.cfg.Egress) {
		// Idle pooled connections were judged by the old policy: the next
		// request to their destination dials (and is judged) again.
		a.fwd.Close()
	}
	// One step: limits, hosts, aging, reserve and fairness together
	// (a store outage's local share stays: the store owns it).
	a.disp.Reconfigure(dcfg)
	a.shareLimits(a.cfg.Limits, cfg.Limits)
	a.cfg = cfg
	return nil
}

// shutdown drains (docs/operations.md, "Graceful shutdown"): not ready, no new connections, waiting
// requests keep their place and in-flight ones (tunnels too) go on for up
// to shutdown_timeout; then what still waits is answered "draining" and
// what is in flight is cut. A second SIGTERM or SIGINT cuts at once; a
// SIGHUP is ignored.
func (a *app) shutdown(sig <-chan os.Signal) {
	a.admin.SetReady(false)
	a.disp.Drain()
	a.mu.Lock()
	timeout := a.cfg.ShutdownTimeout
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		for {
			select {
			case s := <-sig:
				if s == syscall.SIGHUP {
					// A reload (systemd ExecReload, a config tool) must
					// not cut the drain short.
					a.log.Info("reload ignored while draining")
					continue
				}
				a.log.Warn("second signal: stopping now")
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()

	done := make(chan struct{})
	go func() {
		_ = a.proxySrv.Shutdown(ctx) // closes the listener, waits for handlers
		a.handler.WaitTunnels(ctx)   // hijacked tunnels are not tracked by Shutdown
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Out of time (or all done): answer the waiting, cut the rest.
	a.disp.Close()
	a.handler.CloseTunnels()
	grace, cancelGrace := context.WithTimeout(context.Background(), time.Second)
	_ = a.proxySrv.Shutdown(grace) // lets the "draining" answers go out
	cancelGrace()
	_ = a.proxySrv.Close()
	<-done
	a.flushTraces()
	a.stopAdmin()
	a.closeStore()
	a.fwd.Close()
	a.gateway.Close()
	a.log.Info("stopped")
}

func (a *app) shutdownNow() {
	a.admin.SetReady(false)
	a.disp.Close()
	a.handler.CloseTunnels()
	_ = a.proxySrv.Close()
	a.flushTraces()
	a.stopAdmin()
	a.closeStore()
	a.fwd.Close()
	a.gateway.Close()
}

func (a *app) closeStore() {
	if a.store != nil {
		a.store.Close()
	}
}

func (a *app) stopAdmin() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.adminSrv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("admin shutdown", zap.Error(err))
	}
	_ = a.adminSrv.Close()
}

// configPath is the --config file, "" when none.
func (a *app) configPath() string {
	if a.opts.File != "" {
		return a.opts.File
	}
	if a.opts.Flags != nil {
		if f := a.opts.Flags.Lookup("config"); f != nil && f.Changed {
			return f.Value.String()
		}
	}
	return ""
}

// Limits returns the live limits (admin.Backend).
func (a *app) Limits() (config.Limits, []config.HostRule) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.Limits, append([]config.HostRule(nil), a.cfg.Hosts...)
}

// UpdateLimits applies limits changed through the admin API
// (admin.Backend). change validates them (internal/admin owns that
// validation, so it is not repeated here); when it fails nothing changes.
// They last until the next reload, which applies the file's.
func (a *app) UpdateLimits(change func(*config.Limits, *[]config.HostRule) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg := a.cfg
	cfg.Hosts = append([]config.HostRule(nil), a.cfg.Hosts...)
	if err := change(&cfg.Limits, &cfg.Hosts); err != nil {
		return err
	}
	return a.applyLocked(cfg)
}

// Stats is the dispatcher's snapshot (admin.Backend).
func (a *app) Stats() dispatch.Stats { return a.disp.Stats() }

// isLoopback reports whether a listener's address is only reachable from
// this host.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
