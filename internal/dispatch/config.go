package dispatch

import (
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
)

// Limits are the live admission limits (the config's limits.* keys).
type Limits struct {
	Rate        float64       // per second; 0 = unlimited
	Burst       int           // token bucket size
	Concurrency int           // HTTP requests in flight; 0 = unlimited
	QueueSize   int           // waiting requests
	MaxWait     time.Duration // longest wait
	MaxTunnels  int           // open CONNECT tunnels
	// Quotas are per-window quotas every request (but NoToken ones)
	// needs besides the global bucket (quota.go).
	Quotas []Quota
	// SharedConcurrency makes Concurrency fleet-wide: its slots are
	// leased from a shared store (sharedslots.go).
	SharedConcurrency bool
}

// Config configures a Dispatcher.
type Config struct {
	Limits Limits
	// Hosts are per-destination limits; the first that matches a request's
	// Dest applies.
	Hosts []HostLimit
	// Aging, when > 0, improves a waiting request's urgency by one level per
	// Aging waited; 0 is strict priority.
	Aging time.Duration
	// Fairness makes clients (Request.Client) take turns among waiting
	// requests of equal urgency (fairness: client, docs/clients.md).
	Fairness bool
	// Reserve is the headroom of the global bucket kept for urgent
	// arrivals (priority.reserve): a request leaves this many tokens in
	// the bucket when a more urgent one arrived in the last ReserveWindow.
	// 0 turns it off; it never exceeds limits.burst-1.
	Reserve int
}

// ReserveWindow is how recently a more urgent request must have arrived for
// a less urgent one to leave Config.Reserve tokens to it.
const ReserveWindow = time.Second

// Deps are the Dispatcher's collaborators.
type Deps struct {
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock
}

// SetLimits changes the limits at once. Waiting requests keep their place;
// more capacity admits them at once, a shorter max wait expires those
// already older than it. It returns the previous limits.
func (d *Dispatcher) SetLimits(l Limits) (old Limits) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	old = d.mu.limits
	d.setLimitsLocked(l, now)
	d.runLocked(now)
	return old
}

func (d *Dispatcher) setLimitsLocked(l Limits, now time.Time) {
	d.mu.limits = l
	d.mu.rate.Set(now, l.Rate*d.mu.share, localBurst(l.Burst, d.mu.share))
	d.mu.slots[HTTP].SetCap(l.Concurrency)
	d.mu.slots[Tunnel].SetCap(l.MaxTunnels)
	d.mu.quotas = setQuotas(d.mu.quotas, l.Quotas)
	d.syncQuotasLocked(now)
	d.syncSlotsLocked(now)
}

// SetLocalShare sets the share of limits.rate that the local bucket
// admits while this replica's global tokens are its own (a shared store
// that cannot be reached, redis.on_error: local, sets 1/replicas; open
// and a store that answers again set 1). It is a factor of the limits,
// not a limit: later limit changes (reload, admin API, the fleet's) keep
// it. share outside (0, 1] means 1.
func (d *Dispatcher) SetLocalShare(share float64) {
	if !(share > 0 && share <= 1) {
		share = 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if share == d.mu.share {
		return
	}
	now := d.clock.Now()
	d.mu.share = share
	d.mu.rate.Set(now, d.mu.limits.Rate*share, localBurst(d.mu.limits.Burst, share))
	d.syncQuotasLocked(now) // and the quotas' local limits
	d.syncSlotsLocked(now)  // and shared concurrency caps' (sharedslots.go)
	d.runLocked(now)
}

// Reconfigure applies cfg's limits, hosts rules, aging, reserve and
// fairness in one step: under one lock, then one admission pass, so that
// no request is admitted under a mix of the old and new settings (a
// reload). Waiting requests keep their place, as with each setter; the
// local share (SetLocalShare) and leases (SetLeased) stay.
func (d *Dispatcher) Reconfigure(cfg Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	d.setLimitsLocked(cfg.Limits, now)
	d.setHostsLanesLocked(cfg.Hosts, now)
	d.mu.reserve = max(cfg.Reserve, 0)
	d.mu.q.SetAging(cfg.Aging)
	d.mu.q.SetFairness(cfg.Fairness)
	d.reorderReadyLocked()
	d.runLocked(now)
}

// reorderReadyLocked restores the ready heaps' order after the heads'
// ranks changed (aging, fairness).
func (d *Dispatcher) reorderReadyLocked() {
	for k := range d.mu.ready {
		d.mu.ready[k].init()
		d.mu.readyFree[k].init()
	}
}

// SetFairness turns fairness among clients on or off (a reload); waiting
// requests are re-ordered.
func (d *Dispatcher) SetFairness(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.q.SetFairness(on)
	d.reorderReadyLocked() // lanes are ordered by their heads, which may have changed
	d.runLocked(d.clock.Now())
}

// SetReserve changes Config.Reserve (a reload).
func (d *Dispatcher) SetReserve(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.reserve = max(n, 0)
	d.runLocked(d.clock.Now())
}

// SetAging changes the aging interval; waiting requests are re-ranked.
func (d *Dispatcher) SetAging(a time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.q.SetAging(a)
	d.reorderReadyLocked() // lanes are ordered by their heads' ranks, which just changed
	d.runLocked(d.clock.Now())
}

// Limits returns the live limits.
func (d *Dispatcher) Limits() Limits {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.limits
}

// ConfigOf converts a validated configuration to the dispatcher's: limits,
// hosts rules, aging, reserve and fairness. The app (at start and on every
// reload), the proxy test harness and benchmarks all build their
// dispatcher with it, so that none of them drifts from the others.
func ConfigOf(cfg config.Config) (Config, error) {
	hosts, err := HostLimitsOf(cfg.Hosts)
	if err != nil {
		return Config{}, err
	}
	return Config{
		Limits:   LimitsOf(cfg.Limits),
		Hosts:    hosts,
		Aging:    cfg.Priority.Aging,
		Fairness: cfg.Fairness == config.FairnessClient,
		Reserve:  cfg.Priority.Reserve,
	}, nil
}

// LimitsOf converts the config's limits.* to live limits.
func LimitsOf(l config.Limits) Limits {
	return Limits{
		Rate:        l.Rate,
		Burst:       l.Burst,
		Concurrency: l.Concurrency,
		QueueSize:   l.QueueSize,
		MaxWait:     l.MaxWait,
		MaxTunnels:  l.MaxTunnels,
		Quotas:      limitsQuotas(l.Quotas),

		SharedConcurrency: l.SharedConcurrency,
	}
}

// limitsQuotas converts limits.quotas, which validation keeps to unit
// requests.
func limitsQuotas(qs []config.Quota) []Quota {
	out := make([]Quota, 0, len(qs))
	for _, q := range qs {
		out = append(out, Quota{Limit: q.Limit, Per: q.Per, Unit: q.UnitOrDefault()})
	}
	return out
}
