package dispatch

import (
	"time"
)

// Leased global tokens: the seam of a shared limiter store (SPEC §10).
//
// With SetLeased(true) the global bucket (limits.rate, limits.burst) is no
// longer this process's: a store client (internal/store) takes tokens from
// the fleet's shared bucket in small leases, sized by this replica's
// demand, and hands them over with Grant; the dispatcher spends them under
// its lock like its own tokens, so no network call ever happens under the
// lock. A lease is valid for a short time only (its expiry): tokens not
// spent by then are dropped, which bounds how far admissions can drift from
// when the shared bucket gave them out. Concurrency caps, tunnel slots,
// hosts rules and the queue stay per replica.

// leaseState is the dispatcher's side of the leases.
type leaseState struct {
	on      bool
	tokens  int       // leased tokens not yet spent
	expires time.Time // when the unspent ones are dropped
	wake    chan<- struct{}
}

// SetLeaseWake gives the dispatcher a channel to signal (without blocking)
// when a request has to wait for a leased token, so that the store asks
// for one at once instead of at its next idle tick.
func (d *Dispatcher) SetLeaseWake(ch chan<- struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.lease.wake = ch
}

// signalLeaseLocked wakes the store when w waits with leases on.
func (d *Dispatcher) signalLeaseLocked(w *Ticket) {
	if d.mu.lease.on && d.mu.lease.wake != nil && w.state == waiting && !w.lane.key.free {
		select {
		case d.mu.lease.wake <- struct{}{}:
		default:
		}
	}
}

// Demand is what a replica asks its store for: how many waiting requests
// need a global token, by urgency (the queue's counts; requests held by a
// concurrency cap, hosts rule or pause are counted too, the store caps
// the lease), and the leased tokens still unspent.
type Demand struct {
	ByPriority [8]int
	Waiting    int
	Unspent    int
	// Rules are the hosts rules with a rate, whose buckets the store
	// shares too (keyed by their match).
	Rules []RuleDemand
}

// RuleDemand is one hosts rule's side of a Demand.
type RuleDemand struct {
	Match   string // the rule's match, canonical: its bucket's key
	Rate    float64
	Burst   int
	Waiting int // requests waiting under the rule
	Unspent int // leased rule tokens not yet spent
}

// sharedRuleLocked reports whether r's bucket is the store's: leases on,
// and the rule has a rate.
func (d *Dispatcher) sharedRuleLocked(r *rule) bool {
	return d.mu.lease.on && r.limit.Rate > 0
}

// GrantRules adds leased tokens to hosts rules (by match), valid until
// expires, and admits what they allow.
func (d *Dispatcher) GrantRules(grants map[string]int, expires time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mu.lease.on || len(grants) == 0 {
		return
	}
	now := d.clock.Now()
	woke := false
	for _, r := range d.mu.rules {
		n := grants[r.limit.Match.String()]
		if n <= 0 || r.limit.Rate <= 0 {
			continue
		}
		if !r.lease.expires.After(now) {
			r.lease.tokens = 0
		}
		r.lease.tokens += n
		r.lease.expires = expires
		for _, l := range d.mu.lanes {
			if l.rule == r && !l.idle && l.state == laneSleeping && !now.Before(l.pausedUntil) {
				d.readyLocked(l)
				woke = true
			}
		}
	}
	if woke {
		d.runLocked(now)
	}
}

// SetLeased turns leased global tokens on (a shared store serves them)
// or off (back to the local bucket, e.g. when the store cannot be
// reached and redis.on_error says local or open). Turning it off drops
// unspent leases.
func (d *Dispatcher) SetLeased(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.lease.on == on {
		return
	}
	d.mu.lease = leaseState{on: on, wake: d.mu.lease.wake}
	for _, r := range d.mu.rules {
		r.lease.tokens, r.lease.expires = 0, time.Time{}
	}
	// Lanes asleep until a rule's next grant check their gates again.
	now := d.clock.Now()
	for _, l := range d.mu.lanes {
		if l.rule != nil && l.rule.limit.Rate > 0 && !l.idle && l.state == laneSleeping && !now.Before(l.pausedUntil) {
			d.readyLocked(l)
		}
	}
	d.runLocked(d.clock.Now())
}

// Leased reports whether global tokens come from leases.
func (d *Dispatcher) Leased() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.lease.on
}

// Grant adds n leased tokens, valid until expires (the earlier unspent ones
// get the new expiry too: they were given out less than one lease ago), and
// admits what they allow.
func (d *Dispatcher) Grant(n int, expires time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mu.lease.on || n <= 0 {
		return
	}
	now := d.clock.Now()
	if !d.mu.lease.expires.After(now) {
		d.mu.lease.tokens = 0
	}
	d.mu.lease.tokens += n
	d.mu.lease.expires = expires
	d.runLocked(now)
}

// Demand reports the waiting requests by urgency and the unspent leased
// tokens.
func (d *Dispatcher) Demand() Demand {
	d.mu.Lock()
	defer d.mu.Unlock()
	var dm Demand
	for u := range dm.ByPriority {
		dm.ByPriority[u] = d.mu.q.Count(u)
		dm.Waiting += dm.ByPriority[u]
	}
	// Tunnels of intercepted CONNECTs need no token.
	dm.Waiting -= d.freeWaitingLocked()
	if dm.Waiting < 0 {
		dm.Waiting = 0
	}
	now := d.clock.Now()
	if d.mu.lease.expires.After(now) {
		dm.Unspent = d.mu.lease.tokens
	}
	var waiting map[*rule]int
	for _, r := range d.mu.rules {
		if r.limit.Rate <= 0 {
			continue
		}
		if waiting == nil {
			waiting = make(map[*rule]int)
			for _, l := range d.mu.lanes {
				if l.rule != nil && !l.idle {
					waiting[l.rule] += l.q.Len()
				}
			}
		}
		rd := RuleDemand{Match: r.limit.Match.String(), Rate: r.limit.Rate, Burst: r.limit.Burst, Waiting: waiting[r]}
		if r.lease.expires.After(now) {
			rd.Unspent = r.lease.tokens
		}
		dm.Rules = append(dm.Rules, rd)
	}
	return dm
}

// freeWaitingLocked counts waiting NoToken requests.
func (d *Dispatcher) freeWaitingLocked() int {
	n := 0
	for k := range d.mu.readyFree {
		for _, l := range d.mu.readyFree[k].lanes {
			n += l.q.Len()
		}
	}
	return n
}

// takeLeasedLocked spends one leased token.
func (d *Dispatcher) takeLeasedLocked(now time.Time) bool {
	if d.mu.lease.tokens < 1 {
		return false
	}
	if !d.mu.lease.expires.After(now) {
		d.mu.lease.tokens = 0
		return false
	}
	d.mu.lease.tokens--
	return true
}
