package dispatch

import (
	"time"
)

// Leased tokens: the token source of a shared limiter store
// (docs/shared-quota.md).
//
// With SetLeased(true) the global bucket (limits.rate, limits.burst) and
// the bucket of each hosts rule with a rate are no longer this process's:
// a store client (internal/store) takes tokens from the fleet's shared
// buckets in small leases, sized by this replica's demand, and hands them
// over with Grant and GrantRules into leasePools, the tokenSource that
// SetLeased puts in place of the local buckets (source.go); the
// dispatcher spends them under its lock like its own tokens, so no network
// call ever happens under the lock. A lease is valid for a short time only
// (its expiry): tokens not spent by then are dropped, which bounds how far
// admissions can drift from when the shared bucket gave them out.
// Concurrency caps, tunnel slots and the queue stay per replica.

// leaseState is the dispatcher's side of the leases.
type leaseState struct {
	on   bool
	pool leasePool // the global tokens leased and not yet spent
	wake chan<- struct{}
}

// leasePool holds leased tokens not yet spent, by grant: each Grant's
// tokens expire on their own, LeaseTTL after the store gave them out. A
// later grant never extends an earlier one's life: tokens kept past their
// own lease (behind a concurrency cap, say) and spent at once later would
// break the shared bucket's rate × t + burst bound (docs/shared-quota.md).
type leasePool struct {
	batches []leaseBatch // by expiry, soonest first
}

type leaseBatch struct {
	n       int
	expires time.Time
}

// grant adds n tokens that expire at expires.
func (p *leasePool) grant(n int, expires time.Time) {
	if n <= 0 {
		return
	}
	i := len(p.batches)
	for i > 0 && p.batches[i-1].expires.After(expires) {
		i--
	}
	if i > 0 && p.batches[i-1].expires.Equal(expires) {
		p.batches[i-1].n += n
		return
	}
	p.batches = append(p.batches, leaseBatch{})
	copy(p.batches[i+1:], p.batches[i:])
	p.batches[i] = leaseBatch{n: n, expires: expires}
}

// dropExpired forgets the batches whose expiry has come.
func (p *leasePool) dropExpired(now time.Time) {
	i := 0
	for i < len(p.batches) && (!p.batches[i].expires.After(now) || p.batches[i].n <= 0) {
		i++
	}
	if i > 0 {
		p.batches = append(p.batches[:0], p.batches[i:]...)
	}
}

// unspent counts the tokens still valid at now.
func (p *leasePool) unspent(now time.Time) int {
	p.dropExpired(now)
	return p.sum()
}

// sum counts the tokens held, expired or not.
func (p *leasePool) sum() int {
	n := 0
	for _, b := range p.batches {
		n += b.n
	}
	return n
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
	// Slots are the fleet-wide concurrency caps (sharedslots.go): the
	// global one first, then the rules' in rule order.
	Slots []SlotDemand
	// Quotas are every quota, global ones first, then the hosts rules'
	// in rule order (quotalease.go); their settlements are taken: each is
	// reported once.
	Quotas []QuotaDemand
}

// RuleDemand is one hosts rule's side of a Demand.
type RuleDemand struct {
	Match   string // the rule's match, canonical: its bucket's key
	Rate    float64
	Burst   int
	Waiting int // requests waiting under the rule
	Unspent int // leased rule tokens not yet spent
}

// setRuleSourceLocked points r at its tokens' source: its lease while a
// shared store serves the buckets and r has a rate (a rule without one
// limits nothing), else its own bucket.
func (d *Dispatcher) setRuleSourceLocked(r *rule) {
	if d.mu.lease.on && r.limit.Rate > 0 {
		r.src = &r.lease
	} else {
		r.src = localTokens{r.bucket}
	}
}

// GrantRules adds leased tokens to hosts rules (by match), valid until
// expires, and admits what they allow. A grant for a rule whose tokens are
// not leased now waits unused in its pool: SetLeased empties it.
func (d *Dispatcher) GrantRules(grants map[string]int, expires time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	woke := false
	for _, r := range d.mu.rules {
		if n := grants[r.limit.Match.String()]; n > 0 {
			r.lease.grant(n, expires)
			woke = d.wakeTokenWaitersLocked(r) || woke
		}
	}
	if woke {
		d.runLocked(d.clock.Now())
	}
}

// SetLeased turns leased tokens on (a shared store serves the global
// bucket and the hosts rules' that have a rate) or off (back to the local
// buckets, e.g. when the store cannot be reached and redis.on_error says
// local or open). Either way unspent leases are dropped.
func (d *Dispatcher) SetLeased(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.lease.on == on {
		return
	}
	d.mu.lease = leaseState{on: on, wake: d.mu.lease.wake}
	if on {
		d.mu.global = &d.mu.lease.pool
	} else {
		d.mu.global = localTokens{d.mu.rate}
	}
	for _, r := range d.mu.rules {
		r.lease = leasePool{}
		d.setRuleSourceLocked(r)
		// Lanes asleep for the rule's tokens check their new source.
		d.wakeTokenWaitersLocked(r)
	}
	now := d.clock.Now()
	if !on {
		// The local buckets start empty (outage.go).
		d.emptyLocalBucketsLocked(now)
	}
	// The quotas too: leased units, or the local window logs again
	// (quotalease.go); and the shared caps (sharedslots.go).
	d.syncQuotasLocked(now)
	d.syncSlotsLocked(now)
	d.runLocked(now)
}

// Leased reports whether global tokens come from leases.
func (d *Dispatcher) Leased() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.lease.on
}

// Grant adds n leased global tokens, valid until expires, and admits what
// they allow. Earlier unspent tokens keep their own expiry. Tokens granted
// while leases are off wait unused: SetLeased empties the pool.
func (d *Dispatcher) Grant(n int, expires time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n <= 0 {
		return
	}
	d.mu.lease.pool.grant(n, expires)
	d.runLocked(d.clock.Now())
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
	dm.Unspent = d.mu.lease.pool.unspent(now)
	for _, r := range d.mu.rules {
		if r.limit.Rate <= 0 {
			continue
		}
		rd := RuleDemand{Match: r.limit.Match.String(), Rate: r.limit.Rate, Burst: r.limit.Burst, Waiting: r.waiting()}
		rd.Unspent = r.lease.unspent(now)
		dm.Rules = append(dm.Rules, rd)
	}
	dm.Quotas = d.quotaDemandsLocked(now, dm.Waiting)
	dm.Slots = d.slotDemandsLocked(now)
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
