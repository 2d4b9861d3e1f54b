package dispatch

import (
	"time"

	"github.com/proxyd/proxyd/internal/limiter"
	"github.com/proxyd/proxyd/internal/queue"
)

// Fleet-wide concurrency caps: limits.shared_concurrency and
// hosts[].shared_concurrency (docs/shared-quota.md, "Shared concurrency
// caps").
//
// A shared cap's slots live in the store (internal/store): each replica
// holds a count of them there, recorded with an expiry, and may have at
// most that many of the cap's requests in flight. The store grants a
// replica more only while every replica's record together stays within
// the cap, so at most the cap is in flight across the fleet. The
// dispatcher keeps its side in a slotLease per shared cap: limit, the
// slots the store records for it, and expires, when that record ends by
// this process's clock (from the send of the call that renewed it, so
// never later than the store's own end of it).
//
// The protocol, one store call at a time (the lease loop):
//
//  1. Demand reports per cap the slots in use, the requests waiting for
//     one (lanes asleep for a pause or a rule's tokens need none yet),
//     their most urgent level, and Held: the limit, first lowered to what
//     is in use plus what waits (at most slotBatch more). Slots nobody
//     here needs are given back: at once locally, in the store by this
//     call. Lowering a limit is always safe (the store's record stays
//     higher until the call lands); raising one is not, so only a grant
//     raises it.
//  2. The store records Held plus its grant for this replica, with a new
//     expiry, and answers the grant and a target: the most this replica
//     may keep while other replicas wait more urgently, or at the same
//     level (then its fair share).
//  3. GrantSlots raises the limit by the grant, never above the target,
//     never below what is in use, and renews the expiry.
//
// So the store's record for a replica is never below what it may have in
// flight, and a replica that stops calling (it died, or lost the store)
// loses its record when the lease time has passed: that is how a dead
// replica's slots come back. Releasing a permit only frees the slot for
// this replica's next request; Demand gives it back to the fleet.
//
// While leases are off (the store cannot be reached; redis.on_error local
// or open) a replica keeps the slots the store still records for it until
// their lease ends, so an outage shorter than the lease never exceeds the
// cap, and then caps itself at its share of the cap (SetLocalShare, at
// least 1; with share 1, on_error open, at once).

// slotLease is one shared cap's state on this replica; the dispatcher's
// lock guards it.
type slotLease struct {
	on bool // the cap is shared: its flag is set and it has a cap (> 0)
	// limit is the slots this replica may use while its lease is valid:
	// the store records at least as many for it.
	limit int
	// reported is Held as the last Demand reported it: what the store
	// recorded before adding its grant.
	reported int
	// expires is when the store's record ends, by this process's clock;
	// zero when there is none.
	expires time.Time
	// target is the most the store let this replica keep at the last
	// call: while leased, slots freed beyond it go back to the fleet.
	target int
	// allowed is the slots that may be in use now: limit while leased (or
	// during an outage until the lease ends), else the local share.
	allowed int
}

// valid reports whether the store still records sl's slots at now.
func (sl *slotLease) valid(now time.Time) bool { return now.Before(sl.expires) }

// free reports whether one more request may take one of s's slots, s
// being the cap whose shared side is sl.
func (sl *slotLease) free(s *limiter.Slots) bool { return !sl.on || s.InUse() < sl.allowed }

// slotFreeLocked reports whether kind k's global cap has a slot for one
// more request: the local count, and for HTTP a shared cap's lease.
func (d *Dispatcher) slotFreeLocked(k Kind) bool {
	return d.mu.slots[k].Available() && (k != HTTP || d.mu.shared.free(&d.mu.slots[HTTP]))
}

// slotFree reports whether r's cap has a slot for one more HTTP request.
func (r *rule) slotFree() bool { return r.slots.Available() && r.shared.free(&r.slots) }

// slotBatch is the most slots a replica asks for beyond what it uses
// (leases stay small): an eighth of the cap, at least 1.
func slotBatch(capacity int) int { return max(1, (capacity+7)/8) }

// syncSlotsLocked applies the shared flags, the caps, the lease mode and
// the local share to every shared cap, and ends the leases that ran out
// (after New, SetLeased, SetLocalShare, a limits or hosts change, a grant,
// or when slotExpiry comes). A rule whose cap allows more wakes the lanes
// waiting for its slots.
func (d *Dispatcher) syncSlotsLocked(now time.Time) {
	d.mu.slotExpiry = time.Time{}
	d.syncSlotLocked(&d.mu.shared, d.mu.limits.SharedConcurrency, d.mu.limits.Concurrency, now)
	for _, r := range d.mu.rules {
		before := r.shared.allowed
		d.syncSlotLocked(&r.shared, r.limit.SharedConcurrency, r.limit.Concurrency, now)
		if r.shared.on && r.shared.allowed > before {
			d.wakeSlotWaitersLocked(r)
		}
	}
}

func (d *Dispatcher) syncSlotLocked(sl *slotLease, shared bool, capacity int, now time.Time) {
	if !shared || capacity <= 0 {
		*sl = slotLease{}
		return
	}
	sl.on = true
	if !sl.valid(now) {
		sl.expires, sl.limit = time.Time{}, 0
	}
	share := d.mu.share
	if !(share > 0 && share < 1) {
		share = 1
	}
	switch {
	case d.mu.lease.on:
		// Asked to yield (target), slots freed here go back instead of
		// to the next request.
		sl.allowed = min(sl.limit, sl.target)
	case share < 1 && sl.valid(now):
		// The store still holds these for this replica: nobody else
		// can take them, so using them keeps the fleet within the cap.
		sl.allowed = sl.limit
	default:
		sl.allowed = max(1, int(float64(capacity)*share+1e-9))
	}
	if !sl.expires.IsZero() && (d.mu.slotExpiry.IsZero() || sl.expires.Before(d.mu.slotExpiry)) {
		d.mu.slotExpiry = sl.expires
	}
}

// expireSlotsLocked ends the shared caps' leases that ran out (runLocked;
// armLocked wakes it at slotExpiry).
func (d *Dispatcher) expireSlotsLocked(now time.Time) {
	if !d.mu.slotExpiry.IsZero() && !now.Before(d.mu.slotExpiry) {
		d.syncSlotsLocked(now)
	}
}

// SlotDemand is one shared cap's side of a Demand.
type SlotDemand struct {
	// Scope is "" for limits.concurrency, else the hosts rule's match
	// (canonical): the cap's key in the store.
	Scope string
	// Cap is the cap, from this replica's configuration.
	Cap int
	// Held is the slots this replica keeps until the call's answer, at
	// least InUse: the store records Held plus its grant.
	Held  int
	InUse int
	// Want is how many more it asks for: what its waiting requests need
	// beyond Held, at most slotBatch, within Cap.
	Want int
	// Waiting is the requests waiting for one of the cap's slots, Best
	// the most urgent level among them (queue.Levels when none).
	Waiting, Best int
}

// SlotGrant is a store's answer for one cap of a Demand.
type SlotGrant struct {
	Scope string
	// N is the slots granted beyond the Demand's Held.
	N int
	// Target is the most this replica may keep now: what other replicas
	// need more urgently, and its fair share among replicas waiting at
	// the same level, leave it no more.
	Target int
}

// slotDemandsLocked reports every shared cap's demand (the global one
// first, then the rules' in rule order), giving back the slots nobody
// here needs.
func (d *Dispatcher) slotDemandsLocked(now time.Time) []SlotDemand {
	var out []SlotDemand
	if d.mu.shared.on {
		n, best := d.slotWaitingLocked(nil)
		out = append(out, d.slotDemandLocked(&d.mu.shared, "", d.mu.limits.Concurrency, &d.mu.slots[HTTP], n, best, now))
	}
	for _, r := range d.mu.rules {
		if r.shared.on {
			n, best := d.slotWaitingLocked(r)
			out = append(out, d.slotDemandLocked(&r.shared, r.limit.Match.String(), r.limit.Concurrency, &r.slots, n, best, now))
		}
	}
	return out
}

func (d *Dispatcher) slotDemandLocked(sl *slotLease, scope string, capacity int, s *limiter.Slots, waiting, best int, now time.Time) SlotDemand {
	inUse := s.InUse()
	need := min(capacity, inUse+min(waiting, slotBatch(capacity)))
	held := inUse
	if sl.valid(now) {
		held = max(inUse, sl.limit)
		if keep := min(need, sl.target); d.mu.lease.on && held > keep {
			// Given back (nobody here needs them, or the store asked
			// for them): at once here, in the store by this call.
			held = max(inUse, keep)
			sl.limit, sl.allowed = held, min(held, sl.target)
		}
	}
	sl.reported = held
	return SlotDemand{Scope: scope, Cap: capacity, Held: held, InUse: inUse, Want: max(0, need-held), Waiting: waiting, Best: best}
}

// slotWaitingLocked counts the HTTP requests waiting for a slot of the
// global cap (r nil) or of r's, and their most urgent level (queue.Levels
// when none). A lane asleep (a pause, its rule's tokens or quota) needs no
// slot yet; for the global cap, neither does a lane held by its rule's
// cap.
func (d *Dispatcher) slotWaitingLocked(r *rule) (n, best int) {
	best = queue.Levels
	add := func(l *lane) {
		if l.key.kind != HTTP || l.idle || l.state == laneSleeping || (r == nil && l.state == laneSlotWait) {
			return
		}
		if k := l.q.Len(); k > 0 {
			n += k
			best = min(best, max(0, l.q.Peek().Urgency))
		}
	}
	if r != nil {
		for l := range r.lanes {
			add(l)
		}
		return n, best
	}
	for _, l := range d.mu.ready[HTTP].lanes {
		add(l)
	}
	for _, l := range d.mu.readyFree[HTTP].lanes {
		add(l)
	}
	return n, best
}

// slotCapLocked is the shared side and the slots of the cap scope names
// ("" the global one, else a rule's match), or nil.
func (d *Dispatcher) slotCapLocked(scope string) (*slotLease, *limiter.Slots) {
	if scope == "" {
		return &d.mu.shared, &d.mu.slots[HTTP]
	}
	for _, r := range d.mu.rules {
		if r.limit.Match.String() == scope {
			return &r.shared, &r.slots
		}
	}
	return nil, nil
}

// GrantSlots applies a store call's answer for the shared caps: a grant
// raises a cap's limit (never above its target, never below what is in
// use, so a replica asked to yield gives slots back as its requests
// end), and the store's record of them now ends at expires (LeaseTTL of
// the slots after the call was sent). An answer while leases are off, or
// for a cap no longer shared, changes nothing: the store then records
// more than this replica uses, until its next call.
func (d *Dispatcher) GrantSlots(grants []SlotGrant, expires time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mu.lease.on {
		return
	}
	now := d.clock.Now()
	for _, g := range grants {
		sl, s := d.slotCapLocked(g.Scope)
		if sl == nil || !sl.on {
			continue
		}
		sl.limit = max(s.InUse(), min(sl.reported+g.N, g.Target))
		sl.target = g.Target
		sl.expires = expires
	}
	d.syncSlotsLocked(now)
	d.runLocked(now)
}
