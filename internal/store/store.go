// Package store shares the global rate limit across replicas through
// Redis (docs/shared-quota.md).
//
// # Design
//
// The dispatcher is a synchronous state machine under one lock, and a
// network round trip must never happen under it. So the shared bucket is
// not consulted per request. Instead each replica's Store runs one
// goroutine that, every Interval (5 ms) while requests wait and every
// IdleInterval (100 ms) otherwise, calls one Lua script with this
// replica's demand (waiting requests by urgency). The script, atomic in
// Redis and timed by Redis's own clock (TIME, never a replica's), refills
// the fleet's token bucket ({prefix}:bucket) at limits.rate up to
// limits.burst, and grants this replica up to what it asked for. The
// replica hands the grant to the dispatcher (dispatch.Dispatcher.Grant),
// which spends it under its lock like local tokens; a grant is valid for
// LeaseTTL (100 ms), after which unspent tokens are dropped. The same
// call leases, from {prefix}:bucket:rule:<match>, tokens of each hosts
// rule that has a rate, for the requests waiting under it
// (dispatch.Dispatcher.GrantRules), and units of every quota
// (limits.quotas, hosts[].quotas) from the fleet's window of each
// (dispatch.Dispatcher.GrantQuotas; quota.go states the design and
// proves the bound), and slots of every fleet-wide concurrency cap
// (limits.shared_concurrency, hosts[].shared_concurrency:
// dispatch.Dispatcher.GrantSlots; slots.go).
//
// A replica asks for its waiting requests less its unspent tokens, and
// never holds more than rate × 4 × Interval (at least 1) unspent
// (leaseWant): leases stay small, so little is dropped when demand moves,
// and requests held by a concurrency cap do not pile tokens up.
//
// # Accuracy
//
// Every token admitted by any replica left the shared bucket. Each call
// records the tokens the replica holds (unspent plus granted), and the
// script refills the bucket only up to burst less the tokens held
// (records younger than LeaseTTL; a replica's tokens expire LeaseTTL after
// the call that leased them). The bucket and the leases together never
// exceed burst, so the total admitted over any window t stays within
// rate × t + burst, however long a replica keeps its tokens. Each hosts
// rule's bucket does the same with the rule's tokens held (recorded in the
// rule's bucket hash, per replica). Tokens
// dropped unspent (demand that vanished within 100 ms) are the only loss
// below the rate.
//
// # Priority across replicas
//
// Each call records the replica's demand by urgency in {prefix}:replicas.
// The script grants a replica only the tokens beyond what other replicas
// need right now at strictly more urgent levels than its own most urgent
// waiting request (their demand recorded in the last FreshDemand, 100 ms).
// So while the shared rate is the bottleneck, a replica with a bulk
// backlog leaves the bucket's tokens to a replica with urgent requests
// waiting, which takes them at its next call: an urgent request waits at
// most one Interval (5 ms) plus a round trip more than it would behind a
// local bucket, and at most FreshDemand (100 ms) when the urgent replica's
// demand is not yet recorded — 10 ms in practice (two of its calls). The
// documented bound is 50 ms.
//
// # Fleet-wide limits
//
// {prefix}:limits holds rate, burst, a version and an epoch. SetLimits (a
// PATCH or a reload on any replica) writes them and bumps the version;
// every call's reply carries them, so every replica applies a change
// within one IdleInterval (100 ms) through Hooks.Limits. A reply that may
// predate a write of this replica's (one in flight or done since the call
// was sent) is not read for limits, so a replica never reports its own
// change as another's. At start a replica writes its configured limits
// only when the fleet has none yet. The process owns the configured
// limits; the store never sets one on the dispatcher.
//
// # When Redis fails
//
// A call that fails or takes longer than redis.timeout switches the
// replica to redis.on_error at once, logged once: local (the local bucket
// at the share 1 / replicas of the configured rate and burst, replicas as
// last seen: Dispatcher.SetLocalShare, starting empty), open (share 1) or
// closed (leases stay on and none come: nothing is admitted; requests
// wait, then time out as usual). A shared concurrency cap keeps the slots
// the store still records for the replica until their lease ends, then
// the same share of the cap (internal/dispatch/sharedslots.go).
// The goroutine keeps calling every Interval (busy or not); the first
// call that succeeds switches back, within one Interval and a dial of
// Redis answering again (client.go, "Recovery": go-redis's own dial
// breaker would hold it up to a second). A limit
// change meanwhile (SetLimits → ErrPending) is written by that call before
// anything else.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// Timing of the lease loop (see the package doc).
const (
	Interval     = 5 * time.Millisecond
	IdleInterval = 100 * time.Millisecond
	LeaseTTL     = 100 * time.Millisecond
	FreshDemand  = 100 * time.Millisecond
	// minSpacing is the least time between two calls of one replica, when
	// waiting requests wake the loop.
	minSpacing = time.Millisecond
)

// Dispatcher is what the Store drives (dispatch.Dispatcher).
type Dispatcher interface {
	Demand() dispatch.Demand
	Grant(n int, expires time.Time)
	GrantRules(grants map[string]int, expires time.Time)
	// GrantQuotas hands over the quota units a call leased (quota.go).
	GrantQuotas(lease uint64, sent, expires time.Time, grants []dispatch.QuotaGrant)
	// GrantSlots hands over the shared caps' slots a call leased
	// (slots.go), kept by the store until expires.
	GrantSlots(grants []dispatch.SlotGrant, expires time.Time)
	SetLeased(on bool)
	SetLeaseWake(ch chan<- struct{})
	// SetLocalShare sets the share of the configured rate that the local
	// bucket admits while leases are off (redis.on_error: local).
	SetLocalShare(share float64)
}

// Hooks are the Store's calls back into the process, from its goroutine.
type Hooks struct {
	// Limits applies a fleet-wide rate and burst set by another replica:
	// the process owns the configured limits, the store only reports the
	// fleet's. It is never called for a change this replica wrote.
	Limits func(rate float64, burst int)
}

// Status is the store's state for GET /api/v1/store.
type Status struct {
	Up       bool
	Replicas int
	Since    time.Time // of the last change of Up
}

// Store is one replica's client of the shared limiter store.
type Store struct {
	cfg    config.Redis
	id     string
	rdb    redis.UniversalClient // client.go: one node, Sentinel or Cluster
	dial   *dialer
	keys   []string // bucket, limits, replicas
	disp   Dispatcher
	hooks  Hooks
	log    *zap.Logger
	now    func() time.Time
	cancel context.CancelFunc
	done   chan struct{}
	quota  quotaState // the loop goroutine's (quota.go)

	*Metrics

	mu struct {
		sync.Mutex
		status     Status
		rate       float64 // the fleet's, as last seen (or this replica's pending change)
		burst      int
		version    int64  // of the fleet's limits, as last seen or written here
		epoch      string // of the limits hash that version counts in (scripts.go)
		writes     int    // SetLimits calls in flight: replies meanwhile may predate them
		written    uint64 // SetLimits calls done: a reply to a call sent before one may predate it
		pending    bool   // rate and burst were set here while the store was down: written on recovery
		loggedDown bool   // on_error applies (and was logged)
	}
}

// New connects nothing yet: Start does. reg may be nil.
func New(cfg config.Redis, d Dispatcher, hooks Hooks, log *zap.Logger, reg prometheus.Registerer) (*Store, error) {
	if cfg.SlotLease <= 0 {
		cfg.SlotLease = DefaultSlotLease
	}
	dial := &dialer{}
	rdb, err := newClient(cfg, dial) // client.go
	if err != nil {
		return nil, err
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	if log == nil {
		log = zap.NewNop()
	}
	// go-redis logs dial failures on its own (a global logger): through
	// ours, at debug; the Store logs an outage once itself.
	setRedisLogger.Do(func() { redis.SetLogger(redisLogger{log.Named("redis")}) })
	m, err := NewMetrics(reg)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	tag := "{" + cfg.KeyPrefix + "}"
	s := &Store{
		cfg:     cfg,
		id:      hex.EncodeToString(id),
		rdb:     rdb,
		dial:    dial,
		keys:    []string{tag + ":bucket", tag + ":limits", tag + ":replicas"},
		disp:    d,
		hooks:   hooks,
		log:     log,
		now:     time.Now,
		Metrics: m,
		done:    make(chan struct{}),
	}
	return s, nil
}

// Metrics are the store's series (docs/shared-quota.md, "Watching it"). NewMetrics registers them;
// they exist only with limits.store: redis.
type Metrics struct {
	up       prometheus.Gauge
	replicas prometheus.Gauge
	errs     prometheus.Counter
	latency  prometheus.Histogram
	calls    prometheus.Counter
}

// NewMetrics creates and registers the store's series on reg (nil: none).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "proxyd_store_up", Help: "1 while the shared limiter store answers, 0 while redis.on_error applies."}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{Name: "proxyd_store_replicas",
			Help: "Replicas sharing the store's buckets, as last seen (those that called it in the last 2 s)."}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{Name: "proxyd_store_errors_total", Help: "Calls to the shared limiter store that failed or timed out."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "proxyd_store_request_duration_seconds",
			Help:    "Duration of calls to the shared limiter store (one lease or limits update each).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25}}),
		calls: prometheus.NewCounter(prometheus.CounterOpts{Name: "proxyd_store_requests_total", Help: "Calls to the shared limiter store."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.up, m.replicas, m.errs, m.latency, m.calls} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Start writes the configured limits when the fleet has none yet, turns
// the dispatcher's leased tokens on and starts the lease loop. A store
// that cannot be reached at start is not an error: on_error applies until
// it answers.
func (s *Store) Start(rate float64, burst int) {
	s.mu.Lock()
	s.mu.rate, s.mu.burst = rate, burst
	s.mu.status = Status{Since: s.now()}
	s.mu.Unlock()
	// Shared from the first request on: never a burst of local tokens.
	s.disp.SetLeased(true)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if err := s.call(ctx, func(ctx context.Context) error {
		return initScript.Run(ctx, s.rdb, s.keys, strconv.FormatFloat(rate, 'g', -1, 64), burst).Err()
	}); err != nil {
		s.down(err)
	}
	go s.loop(ctx)
}

// Close stops the loop and the connections.
func (s *Store) Close() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	_ = s.rdb.Close()
}

// Status returns the store's state.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.status
}

// ErrPending is SetLimits's answer when the store cannot be reached: the
// change is kept and written when the store answers again.
var ErrPending = errors.New("the shared limiter store cannot be reached: the change applies here at once and is written to the store when it answers again")

// SetLimits makes rate and burst the fleet's (a PATCH or a reload here).
// When the store cannot be reached the change is kept pending (ErrPending)
// and written by the first call that succeeds, before the fleet's limits
// are read again: a change made during an outage is never replaced by the
// limits from before it (docs/shared-quota.md).
func (s *Store) SetLimits(ctx context.Context, rate float64, burst int) error {
	s.mu.Lock()
	s.mu.rate, s.mu.burst = rate, burst
	s.mu.writes++
	s.mu.Unlock()
	ver, epoch, err := s.writeLimits(ctx, rate, burst)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.writes--
	s.mu.written++
	if err != nil {
		s.mu.pending = true
		return fmt.Errorf("%w (%v)", ErrPending, err)
	}
	s.wroteLocked(rate, burst, ver, epoch)
	return nil
}

// wroteLocked records a successful write of rate and burst as version ver.
func (s *Store) wroteLocked(rate float64, burst int, ver int64, epoch string) {
	if epoch != s.mu.epoch || ver > s.mu.version {
		s.mu.version, s.mu.epoch = ver, epoch
	}
	if s.mu.rate == rate && s.mu.burst == burst {
		s.mu.pending = false
	}
}

// writeLimits writes rate and burst to the store and returns their
// version and epoch.
func (s *Store) writeLimits(ctx context.Context, rate float64, burst int) (ver int64, epoch string, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		res, err := setScript.Run(ctx, s.rdb, s.keys, strconv.FormatFloat(rate, 'g', -1, 64), burst).Slice()
		if err != nil {
			return err
		}
		if len(res) != 2 {
			return fmt.Errorf("set script: %d values, want 2", len(res))
		}
		ver, _ = res[0].(int64)
		epoch = fmt.Sprint(res[1])
		return nil
	})
	return ver, epoch, err
}

// writePending writes a change kept while the store was down; false when
// the store still fails.
func (s *Store) writePending(ctx context.Context) bool {
	s.mu.Lock()
	if !s.mu.pending || s.mu.writes > 0 {
		s.mu.Unlock()
		return true
	}
	rate, burst := s.mu.rate, s.mu.burst
	s.mu.Unlock()
	ver, epoch, err := s.writeLimits(ctx, rate, burst)
	if err != nil {
		if ctx.Err() == nil {
			s.down(err)
		}
		return false
	}
	s.mu.Lock()
	s.wroteLocked(rate, burst, ver, epoch)
	s.mu.Unlock()
	s.log.Info("fleet-wide limits set during the store outage written to the store", zap.Float64("rate", rate), zap.Int("burst", burst))
	return true
}

// call runs f with the store's deadline, timing and counting it.
func (s *Store) call(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := explain(f(ctx)) // client.go: what to check on ACL and credential errors
	s.latency.Observe(time.Since(start).Seconds())
	s.calls.Inc()
	if err != nil && !errors.Is(err, context.Canceled) {
		s.errs.Inc()
	}
	return err
}

func (s *Store) loop(ctx context.Context) {
	defer close(s.done)
	wake := make(chan struct{}, 1)
	s.disp.SetLeaseWake(wake)
	defer s.disp.SetLeaseWake(nil)
	t := time.NewTimer(0)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake: // a request waits for a token: ask now
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			if d := minSpacing - time.Since(last); d > 0 {
				// At most one call per minSpacing, however fast requests come.
				t.Reset(d)
				continue
			}
		}
		last = time.Now()
		busy := s.lease(ctx)
		if busy || s.isDown() {
			// While down, every Interval: the first call that succeeds
			// ends the outage (client.go, "Recovery").
			t.Reset(Interval)
		} else {
			t.Reset(IdleInterval)
		}
	}
}

// lease makes one call: this replica's demand in, a grant and the fleet's
// limits out. It reports whether requests wait (call again soon).
func (s *Store) lease(ctx context.Context) bool {
	if !s.writePending(ctx) {
		return true
	}
	dm := s.disp.Demand()
	s.mu.Lock()
	rate := s.mu.rate
	written := s.mu.written
	s.mu.Unlock()
	want := leaseWant(dm.Waiting, dm.Unspent, rate)
	demand := make([]string, len(dm.ByPriority))
	for u, n := range dm.ByPriority {
		demand[u] = strconv.Itoa(n)
	}
	keys := s.keys
	args := []any{s.id, want, strings.Join(demand, ","), FreshDemand.Microseconds(), (2 * time.Second).Microseconds(), len(dm.Rules),
		dm.Unspent, LeaseTTL.Microseconds()}
	if len(dm.Rules) > 0 {
		keys = slices.Clone(s.keys)
		for _, r := range dm.Rules {
			keys = append(keys, s.keys[0]+":rule:"+r.Match)
			args = append(args, r.Match, strconv.FormatFloat(r.Rate, 'g', -1, 64), r.Burst, leaseWant(r.Waiting, r.Unspent, r.Rate), r.Unspent)
		}
	}
	keys, args = s.appendQuotas(keys, args, dm)
	keys, args = s.appendSlots(keys, args, dm)
	// Tokens expire LeaseTTL after the call was sent: never later than
	// LeaseTTL after the store gave them out, which is how long it counts
	// them as held.
	sent := s.now()
	expires := sent.Add(LeaseTTL)
	var res []any
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		res, err = leaseScript.Run(ctx, s.rdb, keys, args...).Slice()
		return err
	})
	if ctx.Err() != nil {
		return false
	}
	if err == nil && len(res) < 5 {
		err = fmt.Errorf("lease script: %d values, want 6", len(res))
	}
	if err != nil {
		s.down(err)
		return dm.Waiting > 0
	}
	granted, _ := res[0].(int64)
	fleetRate, _ := strconv.ParseFloat(fmt.Sprint(res[1]), 64)
	burst, _ := res[2].(int64)
	ver, _ := res[3].(int64)
	replicas, _ := res[4].(int64)
	if ver < 0 {
		// An empty Redis (restarted): write this replica's limits (the
		// fleet's as last seen) and ask again.
		s.mu.Lock()
		r, b := s.mu.rate, s.mu.burst
		s.mu.Unlock()
		if err := s.call(ctx, func(ctx context.Context) error {
			return initScript.Run(ctx, s.rdb, s.keys, strconv.FormatFloat(r, 'g', -1, 64), b).Err()
		}); err != nil {
			s.down(err)
		}
		return true
	}
	s.upAgain(int(replicas))
	if granted > 0 {
		s.disp.Grant(int(granted), expires)
	}
	if len(res) > 5 && len(dm.Rules) > 0 {
		rg, _ := res[5].([]any)
		grants := make(map[string]int, len(rg))
		for i, g := range rg {
			if n, _ := g.(int64); n > 0 && i < len(dm.Rules) {
				grants[dm.Rules[i].Match] = int(n)
			}
		}
		if len(grants) > 0 {
			s.disp.GrantRules(grants, expires)
		}
	}
	s.quotaGrants(res, dm, sent, expires)
	s.slotGrants(res, dm, sent)
	epoch := ""
	if len(res) > 6 {
		epoch = fmt.Sprint(res[6])
	}
	s.mu.Lock()
	// A version other than the one this replica last saw or wrote is
	// another replica's change, unless this reply may predate a write of
	// ours (one in flight, or done since the call was sent): the next
	// call tells.
	raced := s.mu.writes > 0 || s.mu.written != written || s.mu.pending
	changed := !raced && (ver != s.mu.version || epoch != s.mu.epoch)
	if changed {
		s.mu.rate, s.mu.burst, s.mu.version, s.mu.epoch = fleetRate, int(burst), ver, epoch
	}
	s.mu.Unlock()
	if changed && s.hooks.Limits != nil {
		s.hooks.Limits(fleetRate, int(burst))
	}
	return dm.Waiting > 0
}

// down switches to redis.on_error, once per outage.
func (s *Store) down(err error) {
	s.mu.Lock()
	if s.mu.loggedDown {
		s.mu.Unlock()
		return
	}
	s.mu.loggedDown = true
	s.mu.status.Up = false
	s.mu.status.Since = s.now()
	replicas := max(1, s.mu.status.Replicas)
	s.mu.Unlock()
	s.up.Set(0)
	s.log.Error("shared limiter store unreachable; redis.on_error applies", zap.String("on_error", s.cfg.OnError),
		zap.String("redis", s.cfg.RedactedURL()), zap.Int("replicas_last_seen", replicas), zap.Error(err))
	switch s.cfg.OnError {
	case config.OnErrorLocal:
		// The share first: the local bucket never runs at the full rate.
		s.disp.SetLocalShare(1 / float64(replicas))
		s.disp.SetLeased(false)
	case config.OnErrorOpen:
		s.disp.SetLocalShare(1)
		s.disp.SetLeased(false)
	case config.OnErrorClosed:
		s.disp.SetLeased(true) // and no grants: nothing is admitted
	}
}

// isDown reports whether redis.on_error applies.
func (s *Store) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.loggedDown
}

// upAgain records a successful call; after an outage (or at start) it
// switches back to the shared bucket.
func (s *Store) upAgain(replicas int) {
	s.mu.Lock()
	s.mu.status.Replicas = replicas
	was := s.mu.status.Up
	if !was {
		s.mu.status.Up = true
		s.mu.status.Since = s.now()
	}
	outage := s.mu.loggedDown
	s.mu.loggedDown = false
	s.mu.Unlock()
	s.replicas.Set(float64(replicas))
	if was {
		return
	}
	s.up.Set(1)
	s.disp.SetLeased(true)
	s.disp.SetLocalShare(1)
	if outage {
		s.log.Info("shared limiter store answers again; limits are shared", zap.String("redis", s.cfg.RedactedURL()), zap.Int("replicas", replicas))
	}
}

// leaseWant is how many tokens a replica asks for: what its waiting
// requests need beyond the tokens it holds, and never so many that it
// would hold more than maxLease(rate). Leases stay small (little is
// dropped when demand moves), and requests held by something else than
// the token (a concurrency cap) never pile tokens up.
func leaseWant(waiting, unspent int, rate float64) int {
	if rate > 0 {
		waiting = min(waiting, maxLease(rate))
	}
	return max(0, waiting-unspent)
}

// maxLease is the most tokens of a bucket at rate that a replica holds:
// rate × 4 × Interval, at least 1.
func maxLease(rate float64) int { return max(1, int(math.Ceil(rate*4*Interval.Seconds()))) }

// setRedisLogger sets go-redis's process-wide logger once (the first
// Store's), before any of its goroutines reads it.
var setRedisLogger sync.Once

// redisLogger sends go-redis's own messages to zap at debug level.
type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}
