package dispatch

import (
	"math"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/queue"
)

// Leased quota units: per-window quotas shared through a store
// (docs/shared-quota.md, "Quotas").
//
// With SetLeased(true) every quota (the global ones and each hosts
// rule's) stops admitting from its own window log: a store client
// (internal/store) leases the quota's units from the fleet's window in
// batches, each valid until its expiry (LeaseTTL after the store call that
// asked for it was sent), and hands them over with GrantQuotas. A batch
// remembers its lease id (the store call's sequence), how many of its
// units were spent and the latest spend, as an offset from when that call
// was sent on this process's monotonic clock. When a batch is fully spent
// or expires it becomes a QuotaSettlement, reported in the next Demand:
// the store uncharges the unspent units and moves the spent ones from
// where the grant charged them (conservatively, at the lease's end) to the
// Redis time of the call plus the offset, which is never earlier than the
// real spend. No replica clock is trusted: offsets are differences on one
// clock. A permit given back unused returns its units to its batch while
// the batch is valid and not yet settled (else they stay counted: never
// fewer than were admitted).
//
// The window log keeps recording this replica's own admissions while
// leased, so that when the store cannot be reached (SetLeased(false),
// redis.on_error local or open) the log goes on from what this replica
// admitted in the window, at limit × SetLocalShare. When leases come back
// on, the admissions made meanwhile are reported too (settlements of
// lease 0, at their offsets before the call), so the fleet's window counts
// them.
//
// A hosts rule's quota also reports its next request (QuotaDemand.Head*):
// in a tokens quota a single request may cost more than a lease (Waiting
// is the waiting requests' costs, the want is capped as for requests but
// never below the head's need), and the store grants a head all it lacks
// or nothing, in the fleet-wide order of the replicas' heads, so that no
// replica ever holds part of a request's units waiting for the rest
// (docs/shared-quota.md, "Tokens"). A correction (Permit.Settle) of units
// that came from a batch reaches the fleet's window too: while the batch
// is not settled it spends fewer; once settled, a refund (QuotaSettlement
// .Refund) uncharges them from the slot the batch's spends were placed in
// (its grant's Redis time, QuotaGrant.At, plus its latest spend), and
// debt is charged when it is known (lease 0, at the call's time).

// QuotaDemand is one quota's side of a Demand.
type QuotaDemand struct {
	// Scope is "" for a global quota (limits.quotas), else the hosts
	// rule's match (its canonical form).
	Scope string
	Limit int
	Per   time.Duration
	Unit  string
	// Waiting is the units that the requests waiting under the quota
	// need; Unspent the leased units still valid and not spent.
	Waiting int
	Unspent int
	// Settle are the batches done since the last Demand (fully spent,
	// expired, or leases switched off), the admissions made without
	// a lease since leases were last off and the debts (Lease 0), and
	// the refunds of settled batches' units (Refund).
	Settle []QuotaSettlement
	// HeadUrgency, HeadNeed and HeadID are, for a hosts rule's quota, the
	// rule's next request (the most urgent, then earliest, waiting under
	// the rule and not held by a pause or the rule's cap): its urgency,
	// the units it lacks beyond Unspent, and its sequence number (the
	// store keeps its place among the replicas' heads while it stays the
	// head). HeadUrgency is queue.Levels when nothing waits; global
	// quotas leave them zero.
	HeadUrgency int
	HeadNeed    int
	HeadID      uint64
}

// QuotaSettlement is what became of one batch of leased units.
type QuotaSettlement struct {
	// Lease is the id the store gave GrantQuotas; 0 for admissions made
	// without a lease (leases off), at Offset from the Demand that
	// reports them (negative).
	Lease uint64
	// Spent is the units admitted (refunds deducted).
	Spent int
	// Offset is the latest admission, from when the lease's store call
	// was sent; 0 when none was spent.
	Offset time.Duration
	// Refund, when above 0, makes this a correction instead: Refund
	// units of a settled batch given back (Permit.Settle), uncharged
	// from the slot of At, the Redis time (µs) where that batch's spends
	// were placed; Lease, Spent and Offset are then 0.
	Refund int
	At     int64
}

// QuotaGrant is a store's answer for one quota of a Demand.
type QuotaGrant struct {
	Scope string
	Per   time.Duration
	Unit  string
	// N is the units leased (possibly 0); Used the fleet's units counted
	// in the window after this grant (what Stats reports while leased).
	N    int
	Used int
	// At is the grant's Redis time in µs (0: unknown), where a refund
	// finds the batch's spends once they are settled.
	At int64
}

// quotaLease is a quota's leased units, the window log's source while
// leases are on.
type quotaLease struct {
	on      bool
	batches []*quotaBatch // in grant order, which is expiry order
	settle  []QuotaSettlement
	// used is the fleet's count, as the store last said.
	used int
	// offSince is when leases went off, zero while on (or never on):
	// the admissions since are reported when they come back.
	offSince time.Time
}

// quotaBatch is one grant of a quota's units. It is a tokenSource of its
// own, so that a take spread over several batches leaves one receipt per
// batch and a refund goes back exactly where the units came from.
type quotaBatch struct {
	log     *windowLog // the quota it is of
	lease   uint64
	at      int64     // the grant's Redis time (µs), 0 if unknown
	sent    time.Time // when the store call was sent
	expires time.Time
	granted int
	spent   int
	last    time.Duration // latest spend, from sent
	done    bool          // settled: refunds no longer come back
}

var _ tokenSource = (*quotaBatch)(nil)

func (b *quotaBatch) valid(now time.Time) bool { return !b.done && now.Before(b.expires) }

func (b *quotaBatch) check(now time.Time, n int) (bool, time.Time) {
	return b.valid(now) && b.granted-b.spent >= n, time.Time{}
}

// take spends n of the batch's units at now.
func (b *quotaBatch) take(now time.Time, n, _ int) (taken, bool, time.Time) {
	if ok, _ := b.check(now, n); !ok || n < 1 {
		return taken{}, ok, time.Time{}
	}
	b.spent += n
	b.last = max(b.last, now.Sub(b.sent))
	return taken{src: b, n: int32(n)}, true, time.Time{}
}

// refund gives units back while the batch is valid; the latest spend
// stays (a settlement never places a spend earlier than it was).
func (b *quotaBatch) refund(t taken, now time.Time) {
	if b.valid(now) {
		b.spent -= min(int(t.n), b.spent)
	}
}

func (b *quotaBatch) settlement() QuotaSettlement {
	b.done = true
	s := QuotaSettlement{Lease: b.lease, Spent: b.spent}
	if b.spent > 0 {
		s.Offset = b.last
	}
	return s
}

// correct gives back n units of a permit's that the batch counted
// (Permit.Settle): the batch spent fewer while it is not settled; once
// it is, a refund from the slot its spends were placed in is reported
// (none when the grant's Redis time is unknown: they stay counted).
func (b *quotaBatch) correct(n int) {
	switch {
	case n <= 0:
	case !b.done:
		b.spent -= min(n, b.spent)
	case b.at > 0:
		b.log.lease.settle = append(b.log.lease.settle, QuotaSettlement{Refund: n, At: b.at + b.last.Microseconds()})
	}
}

// grant adds a batch of w's; while leases are off it is settled at
// once, unspent.
func (l *quotaLease) grant(w *windowLog, lease uint64, at int64, sent, expires time.Time, n int) {
	if n <= 0 {
		return
	}
	b := &quotaBatch{log: w, lease: lease, at: at, sent: sent, expires: expires, granted: n}
	if !l.on {
		l.settle = append(l.settle, b.settlement())
		return
	}
	l.batches = append(l.batches, b)
}

// settleDone moves the batches done at now (expired, or fully spent
// when all is true) to the settlements.
func (l *quotaLease) settleDone(now time.Time, all bool) {
	k := 0
	for _, b := range l.batches {
		if !now.Before(b.expires) || (all && b.spent >= b.granted) {
			l.settle = append(l.settle, b.settlement())
			continue
		}
		l.batches[k] = b
		k++
	}
	clear(l.batches[k:])
	l.batches = l.batches[:k]
}

// unspent counts the units valid at now and not spent.
func (l *quotaLease) unspent(now time.Time) int {
	n := 0
	for _, b := range l.batches {
		if b.valid(now) {
			n += b.granted - b.spent
		}
	}
	return n
}

// check reports whether n units are leased and valid at now; if not, only
// a grant brings more (zero retry).
func (l *quotaLease) check(now time.Time, n int) (bool, time.Time) {
	if n < 1 {
		return true, time.Time{}
	}
	return l.unspent(now) >= n, time.Time{}
}

// takeInto spends n units (checked just before, under the same lock),
// from the batches that expire first, appending one receipt per batch.
func (l *quotaLease) takeInto(now time.Time, n int, into []taken) []taken {
	for _, b := range l.batches {
		if n <= 0 {
			break
		}
		if !b.valid(now) {
			continue
		}
		if k := min(n, b.granted-b.spent); k > 0 {
			t, _, _ := b.take(now, k, 0)
			into = append(into, t)
			n -= k
		}
	}
	return into
}

// stop settles every batch as it stands (leases off).
func (l *quotaLease) stop() {
	for _, b := range l.batches {
		l.settle = append(l.settle, b.settlement())
	}
	clear(l.batches)
	l.batches = l.batches[:0]
}

// maxLocalSettlements bounds the lease-0 settlements that report the
// admissions made while leases were off: the log's groups are merged into
// at most this many, each at its latest admission (later is conservative).
const maxLocalSettlements = 32

// reportLocal appends to the settlements the admissions w counted since
// leases went off (at offsets from now, negative): the fleet's window
// counts them from the next call on.
func (w *windowLog) reportLocal(since, now time.Time) {
	w.prune(now)
	var groups []quotaGroup
	for _, g := range w.groups[w.head:] {
		if g.n > 0 && g.last >= since.UnixNano() {
			groups = append(groups, g)
		}
	}
	per := (len(groups) + maxLocalSettlements - 1) / maxLocalSettlements
	for i := 0; i < len(groups); i += per {
		s := QuotaSettlement{}
		for _, g := range groups[i:min(i+per, len(groups))] {
			s.Spent += g.n
			s.Offset = time.Unix(0, g.last).Sub(now)
		}
		w.lease.settle = append(w.lease.settle, s)
	}
}

// setLeased turns w's lease on or off at now, with share the local
// limit's factor while off (SetLocalShare).
//
// Off, the log admits at limit × share, counting this replica's own
// admissions and, for one window, its share of the rest of the fleet's
// (the window's count as the store last said, less this replica's): held.
// So with share 1/replicas the replicas together never exceed the limit
// in a window that straddles the switch: each admits at most share ×
// (limit − what the fleet admitted before in that window). (The others'
// units are held for a whole window: when each leaves is not known here.)
func (w *windowLog) setLeased(on bool, share float64, now time.Time) {
	w.share = share
	switch {
	case on && !w.lease.on:
		if !w.lease.offSince.IsZero() {
			w.reportLocal(w.lease.offSince, now)
		}
		w.lease.offSince = time.Time{}
		w.held, w.heldUntil = 0, 0
	case !on && w.lease.on:
		w.lease.stop()
		w.lease.offSince = now
		w.prune(now)
		f := share
		if !(f > 0 && f < 1) {
			f = 1
		}
		w.held = int(math.Ceil(float64(max(0, w.lease.used-w.sum)) * f))
		w.heldUntil = now.Add(w.q.Per).UnixNano()
	}
	w.lease.on = on
}

// syncQuotasLocked applies the lease mode and local share to every quota
// (after SetLeased, SetLocalShare, or a reload that made new quotas).
func (d *Dispatcher) syncQuotasLocked(now time.Time) {
	for _, w := range d.mu.quotas {
		w.setLeased(d.mu.lease.on, d.mu.share, now)
	}
	for _, r := range d.mu.rules {
		for _, w := range r.quotas {
			w.setLeased(d.mu.lease.on, d.mu.share, now)
		}
	}
}

// quotaDemandsLocked reports every quota's demand and takes its
// settlements; waiting is the requests waiting for a global token.
func (d *Dispatcher) quotaDemandsLocked(now time.Time, waiting int) []QuotaDemand {
	var out []QuotaDemand
	add := func(scope string, w *windowLog, waiting int) {
		w.lease.settleDone(now, true)
		out = append(out, QuotaDemand{Scope: scope, Limit: w.q.Limit, Per: w.q.Per, Unit: w.q.Unit,
			Waiting: waiting * tokensPerRequest, Unspent: w.lease.unspent(now), Settle: w.lease.settle})
		w.lease.settle = nil
	}
	for _, w := range d.mu.quotas {
		add("", w, waiting)
	}
	for _, r := range d.mu.rules {
		if len(r.quotas) == 0 {
			continue
		}
		n, costs := r.waitingCosts()
		head := ruleHead(r, now)
		for _, w := range r.quotas {
			units := n * tokensPerRequest
			if w.q.Unit == config.QuotaTokens {
				units = int(min(costs, math.MaxInt32))
			}
			add(r.limit.Match.String(), w, units)
			q := &out[len(out)-1]
			q.HeadUrgency = queue.Levels
			if head != nil {
				q.HeadUrgency = min(max(head.item.Urgency, 0), queue.Levels-1)
				q.HeadNeed = max(0, unitsFor(w, head.costUnder(r))-q.Unspent)
				q.HeadID = head.item.Seq()
			}
		}
	}
	return out
}

// join and leftLaneLocked keep l's waiting costs (costs, unpriced) as
// w enters and leaves it.
func (l *lane) join(w *Ticket) {
	l.costs += w.cost
	if w.cost <= 0 {
		l.unpriced++
	}
}

// leftLaneLocked counts w out of its lane's costs (w just left the
// lane's queue: admitted, rejected or canceled). A lane asleep for its rule's tokens wakes: its new head may cost less
// than the one that left and fit now (with one unit per request it
// never does, as in newHeadLocked); it reports whether it woke.
func (d *Dispatcher) leftLaneLocked(w *Ticket) bool {
	l := w.lane
	l.costs -= w.cost
	if w.cost <= 0 {
		l.unpriced--
	}
	if l.tokenWait && l.state == laneSleeping && l.q.Len() > 0 && ruleTokens(l.rule) {
		d.readyLocked(l)
		return true
	}
	return false
}

// waitingCosts counts the requests waiting under r and their price in
// tokens (costUnder: cost.default for those without a Cost).
func (r *rule) waitingCosts() (n int, costs int64) {
	price := max(r.limit.CostDefault, 1)
	for l := range r.lanes {
		n += l.q.Len()
		costs += l.costs + int64(l.unpriced)*price
	}
	return n, costs
}

// ruleHead is the request that goes next under r: the most urgent, then
// earliest, head of r's lanes that are not held by a pause or the
// rule's concurrency cap; nil when none waits.
func ruleHead(r *rule, now time.Time) *Ticket {
	var best *queue.Item
	for l := range r.lanes {
		if l.q.Len() == 0 || l.state == laneSlotWait || now.Before(l.pausedUntil) {
			continue
		}
		if it := l.q.Peek(); best == nil || queue.Before(it, best) {
			best = it
		}
	}
	if best == nil {
		return nil
	}
	return best.Value.(*Ticket)
}

// GrantQuotas adds the units a store call leased (its id lease, sent at
// sent, valid until expires) to the quotas they are for, and admits what
// they allow. A grant for a quota that is gone (a reload) is dropped: its
// units stay charged in the fleet's window until they leave it. Units
// granted while leases are off are settled unspent at once.
func (d *Dispatcher) GrantQuotas(lease uint64, sent, expires time.Time, grants []QuotaGrant) {
	d.mu.Lock()
	defer d.mu.Unlock()
	run := false
	find := func(qs []*windowLog, g QuotaGrant) *windowLog {
		for _, w := range qs {
			if w.q.Per == g.Per && w.q.Unit == g.Unit {
				return w
			}
		}
		return nil
	}
	for _, g := range grants {
		if g.Scope == "" {
			if w := find(d.mu.quotas, g); w != nil {
				w.lease.used = g.Used
				w.lease.grant(w, lease, g.At, sent, expires, g.N)
				run = run || g.N > 0
			}
			continue
		}
		for _, r := range d.mu.rules {
			if r.limit.Match.String() != g.Scope {
				continue
			}
			if w := find(r.quotas, g); w != nil {
				w.lease.used = g.Used
				w.lease.grant(w, lease, g.At, sent, expires, g.N)
				if g.N > 0 && w.lease.on {
					d.wakeTokenWaitersLocked(r)
					run = true
				}
			}
			break
		}
	}
	if run {
		d.runLocked(d.clock.Now())
	}
}
