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
	if d.mu.lease.expires.After(d.clock.Now()) {
		dm.Unspent = d.mu.lease.tokens
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
