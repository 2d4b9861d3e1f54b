package dispatch

import (
	"math"
	"time"

	"github.com/proxyd/proxyd/internal/queue"
)

// runLocked expires, admits, and arms the timer; see the package doc.
func (d *Dispatcher) runLocked(now time.Time) {
	d.expireLocked(now)
	d.wakeSleepersLocked(now)
	d.expireSlotsLocked(now) // shared caps' leases (sharedslots.go)
	var wake time.Time
	for {
		l := d.pickLocked()
		if l == nil {
			break
		}
		// The lane's own gates: a pause, then its rule's slot and token.
		if now.Before(l.pausedUntil) {
			d.sleepLocked(l, l.pausedUntil)
			continue
		}
		if l.cap.exhausted(now) {
			// Its provider said nothing more is left until then; a
			// newer response (Cap) wakes it sooner.
			d.sleepLocked(l, l.cap.until)
			continue
		}
		if until, held := tokenCapHoldsLocked(l, now); held {
			d.sleepLocked(l, until) // as the requests cap, in tokens
			continue
		}
		r := l.rule
		if r != nil {
			if l.key.kind == HTTP && !r.slotFree() {
				d.slotWaitLocked(l)
				continue
			}
			if ok, retry := r.src.check(now, tokensPerRequest); !ok {
				// Until its bucket refills, or a grant or refund for the
				// rule wakes it.
				if retry.IsZero() {
					retry = now.Add(time.Hour)
				}
				d.tokenWaitLocked(l, retry)
				continue
			}
			switch gate, retry := d.checkRuleQuotasLocked(l, r, now); gate {
			case gateNever:
				d.rejectCostLocked(l.q.Peek().Value.(*Ticket))
				continue
			case gateWait:
				// Until enough of the window's admissions leave it, or a
				// refund for the rule wakes it.
				if retry.IsZero() {
					retry = now.Add(time.Hour)
				}
				d.tokenWaitLocked(l, retry)
				continue
			}
		}
		// The global tokens last: without them, nobody goes (but a free
		// lane, which needs none).
		var tok taken
		if !l.key.free {
			keep := d.keepLocked(l.q.Peek().Urgency, now)
			// The global quotas bind every request as the global bucket
			// does: when one is short, nobody goes until it has room.
			u := l.q.Peek().Urgency
			if ok, retry := checkQuotas(d.mu.quotas, now, tokensPerRequest, keep, u); !ok {
				wake = retry
				break
			}
			var ok bool
			var retry time.Time
			if tok, ok, retry = d.mu.global.take(now, tokensPerRequest, keep); !ok {
				// The local bucket's refill time; leases: the store's
				// next Grant runs admission.
				wake = retry
				break
			}
		}
		w := d.mu.q.Pop(l.q).Value.(*Ticket)
		d.leftLaneLocked(w)
		d.mu.slots[w.kind].Acquire()
		w.permit = Permit{w: w, d: d, tok: tok, waited: now.Sub(w.item.Enqueued), cost: permitCost(w, r)}
		if l.cap != nil {
			w.permit.cap, w.permit.capGen = takeCapLocked(l, now)
		}
		takeTokenCapLocked(w, l, now)
		if nq := len(d.mu.quotas) + ruleQuotas(r); !l.key.free && nq > 0 {
			// One allocation for the receipts of every quota.
			w.permit.quotaToks = takeQuotas(d.mu.quotas, now, tokensPerRequest, w.item.Urgency, make([]taken, 0, nq))
		}
		if r != nil {
			w.permit.rule = r
			w.permit.ruleTok, _, _ = r.src.take(now, tokensPerRequest, 0)
			if len(r.quotas) > 0 {
				w.permit.quotaToks = takeRuleQuotasLocked(w, r, now, w.permit.quotaToks)
			}
			if w.kind == HTTP {
				r.slots.Acquire()
			}
			r.admitted++
		}
		d.mu.admitted++
		w.state = granted
		if w.ch != nil {
			w.ch <- nil
		}
		d.laneChangedLocked(l)
	}
	d.armLocked(now, wake)
}

// pickLocked returns the ready lane whose head leaves first among the
// kinds with a free slot, or nil.
func (d *Dispatcher) pickLocked() *lane {
	for k := range d.mu.readyFree {
		if l := d.mu.readyFree[k].top(); l != nil && d.slotFreeLocked(Kind(k)) {
			return l
		}
	}
	var best *lane
	for k := range d.mu.ready {
		l := d.mu.ready[k].top()
		if l == nil || !d.slotFreeLocked(Kind(k)) {
			continue
		}
		if best == nil || queue.Before(l.q.Peek(), best.q.Peek()) {
			best = l
		}
	}
	return best
}

// laneLocked returns the lane for key, creating it (empty) if needed.
func (d *Dispatcher) laneLocked(key laneKey) *lane {
	if l, ok := d.mu.lanes[key]; ok {
		return l
	}
	l := &lane{key: key, q: d.mu.q.NewLane(), idx: -1}
	if !key.free {
		l.rule, l.pausedUntil = matchRule(d.mu.rules, key.dest), d.mu.pauses[key.dest]
		if key.kind == HTTP {
			l.cap = d.capOfLocked(key.dest)
			l.tcap = d.mu.caps[capKey{key.dest, CapTokens}]
		}
		if l.rule != nil {
			l.rule.lanes[l] = struct{}{}
		}
	}
	d.mu.lanes[key] = l
	return l
}

// laneChangedLocked restores l's place after its head changed: an empty
// lane is forgotten; a new one becomes ready; a ready one moves.
func (d *Dispatcher) laneChangedLocked(l *lane) {
	if l.q.Len() == 0 {
		if !l.idle {
			d.detachLocked(l)
			l.idle = true
			d.mu.idle++
			d.sweepIdleLocked()
		}
		return
	}
	if l.idle {
		l.idle = false
		d.mu.idle--
	}
	if l.idx < 0 && l.state != laneSlotWait {
		l.state = laneReady
		d.readyHeap(l).push(l)
		return
	}
	if l.state == laneReady {
		d.readyHeap(l).fix(l.idx)
	}
}

// maxIdleLanes is how many empty lanes are kept (with their matched rule)
// before they are forgotten; idle lanes make a destination's next request
// cheap, and the sweep keeps the state bounded.
const maxIdleLanes = 1024

// sweepIdleLocked forgets every empty lane once there are too many;
// amortized O(1) per lane. A lane with waiting requests is never dropped,
// whatever its idle mark says: Pause and SetHosts reach lanes through
// d.mu.lanes.
func (d *Dispatcher) sweepIdleLocked() {
	if d.mu.idle <= maxIdleLanes {
		return
	}
	kept := 0
	for key, l := range d.mu.lanes {
		if !l.idle {
			continue
		}
		if !d.mu.q.DropLane(l.q) {
			kept++
			continue
		}
		delete(d.mu.lanes, key)
		if l.rule != nil {
			delete(l.rule.lanes, l)
		}
	}
	d.mu.idle = kept
}

// detachLocked takes l out of whichever structure holds it.
func (d *Dispatcher) detachLocked(l *lane) {
	switch {
	case l.state == laneSlotWait:
		delete(l.rule.slotWaiters, l)
	case l.idx >= 0 && l.state == laneReady:
		d.readyHeap(l).remove(l.idx)
	case l.idx >= 0 && l.state == laneSleeping:
		d.mu.sleeping.remove(l.idx)
	}
	if l.tokenWait {
		delete(l.rule.tokenWaiters, l)
		l.tokenWait = false
	}
	l.idx = -1
	l.state = laneReady
}

func (d *Dispatcher) sleepLocked(l *lane, until time.Time) {
	d.detachLocked(l)
	l.state, l.wakeAt = laneSleeping, until
	d.mu.sleeping.push(l)
}

// tokenWaitLocked puts l to sleep until retry, waiting for its rule's
// tokens: a grant or refund for the rule wakes it sooner.
func (d *Dispatcher) tokenWaitLocked(l *lane, retry time.Time) {
	d.sleepLocked(l, retry)
	l.tokenWait = true
	l.rule.tokenWaiters[l] = struct{}{}
}

func (d *Dispatcher) slotWaitLocked(l *lane) {
	d.detachLocked(l)
	l.state = laneSlotWait
	l.rule.slotWaiters[l] = struct{}{}
}

func (d *Dispatcher) readyLocked(l *lane) {
	d.detachLocked(l)
	l.state = laneReady
	d.readyHeap(l).push(l)
}

// readyHeap is the heap that holds l when it is ready.
func (d *Dispatcher) readyHeap(l *lane) *laneHeap {
	if l.key.free {
		return &d.mu.readyFree[l.key.kind]
	}
	return &d.mu.ready[l.key.kind]
}

func (d *Dispatcher) wakeSlotWaitersLocked(r *rule) {
	for l := range r.slotWaiters {
		d.readyLocked(l)
	}
}

// wakeTokenWaitersLocked makes ready the lanes asleep for r's tokens.
func (d *Dispatcher) wakeTokenWaitersLocked(r *rule) bool {
	woke := false
	for l := range r.tokenWaiters {
		d.readyLocked(l)
		woke = true
	}
	return woke
}

// wakeSleepersLocked makes ready the lanes whose wake time has come, and
// forgets pauses that have ended.
func (d *Dispatcher) wakeSleepersLocked(now time.Time) {
	for l := d.mu.sleeping.top(); l != nil && !now.Before(l.wakeAt); l = d.mu.sleeping.top() {
		d.readyLocked(l)
	}
	for len(d.mu.pauseQ) > 0 && !now.Before(d.mu.pauseQ[0].until) {
		e := d.popPauseLocked()
		if until, ok := d.mu.pauses[e.dest]; ok && !now.Before(until) {
			delete(d.mu.pauses, e.dest)
		}
	}
	d.expireCapsLocked(now)
}

func (d *Dispatcher) expireLocked(now time.Time) {
	q := d.mu.q
	for it := q.Oldest(); it != nil && !now.Before(it.Enqueued.Add(d.mu.limits.MaxWait)); it = q.Oldest() {
		d.rejectLocked(it.Value.(*Ticket), ErrQueueTimeout, now)
	}
	for it := q.NextDeadline(); it != nil && !now.Before(it.Deadline); it = q.NextDeadline() {
		d.rejectLocked(it.Value.(*Ticket), ErrQueueTimeout, now)
	}
}

// rejectLocked answers a waiting request with err and removes it.
func (d *Dispatcher) rejectLocked(w *Ticket, err error, now time.Time) {
	d.mu.q.Remove(&w.item)
	d.leftLaneLocked(w)
	d.laneChangedLocked(w.lane)
	w.state = rejected
	w.err = &RejectError{Err: err, RetryAfter: d.retryAfterLocked(w.item.Urgency, w.lane.key.dest, now)}
	if w.ch != nil {
		w.ch <- w.err
	}
}

// retryAfterLocked estimates when a request of this urgency could get
// through: the waiting requests at least as urgent, one more, at the rate.
//
// A destination paused by back-pressure cannot be reached before its pause
// ends, nor a request sent before its quotas (the global ones and its
// rule's) have room, so the estimate is at least that.
func (d *Dispatcher) retryAfterLocked(urgency int, dest string, now time.Time) time.Duration {
	ra := time.Second
	if r := d.mu.rate; !r.Unlimited() {
		need := float64(d.mu.q.CountUpTo(urgency)+1) - r.Tokens(now)
		ra = max(ra, time.Duration(math.Ceil(need/r.Rate()))*time.Second)
	}
	if ok, retry := checkQuotas(d.mu.quotas, now, tokensPerRequest, 0, 0); !ok && !retry.IsZero() {
		ra = max(ra, retry.Sub(now))
	}
	if r := matchRule(d.mu.rules, dest); r != nil && len(r.quotas) > 0 {
		if ok, retry := checkQuotas(r.quotas, now, tokensPerRequest, 0, 0); !ok && !retry.IsZero() {
			ra = max(ra, retry.Sub(now))
		}
	}
	if until, ok := d.mu.pauses[dest]; ok && until.After(now) {
		ra = max(ra, until.Sub(now))
	}
	if c := d.mu.caps[capKey{dest, CapRequests}]; c.exhausted(now) {
		ra = max(ra, c.until.Sub(now))
	}
	return ra
}

// armLocked makes sure the timer fires no later than the earliest moment
// anything can change by itself: wake (a token), the oldest request's max
// wait, the earliest caller deadline. A timer that fires early is harmless.
func (d *Dispatcher) armLocked(now, wake time.Time) {
	next := wake
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if it := d.mu.q.Oldest(); it != nil {
		earliest(it.Enqueued.Add(d.mu.limits.MaxWait))
	}
	if it := d.mu.q.NextDeadline(); it != nil {
		earliest(it.Deadline)
	}
	if l := d.mu.sleeping.top(); l != nil {
		earliest(l.wakeAt)
	}
	if len(d.mu.pauseQ) > 0 {
		earliest(d.mu.pauseQ[0].until)
	}
	if !d.mu.slotExpiry.IsZero() {
		earliest(d.mu.slotExpiry)
	}
	if next.IsZero() {
		return
	}
	if d.mu.timer != nil {
		if !d.mu.timerAt.After(next) {
			return // fires soon enough
		}
		d.mu.timer.Stop()
	}
	d.mu.timerAt = next
	d.mu.timer = d.clock.AfterFunc(next.Sub(now), d.onTimer)
}

func (d *Dispatcher) onTimer() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.timer = nil
	d.mu.timerAt = time.Time{}
	d.runLocked(d.clock.Now())
}

// keepLocked is how many global tokens a request of urgency u must leave in
// the bucket: Config.Reserve when a more urgent request arrived within
// ReserveWindow, else none. Under overload the bucket is empty and every
// token goes the moment it appears; the reserve makes an urgent arrival
// find one there instead of waiting for the next refill (and for the timer
// that marks it, which on Linux fires up to a millisecond late). The rate
// is unchanged: the bucket refills while below burst, and the reserve stays
// below it.
func (d *Dispatcher) keepLocked(u int, now time.Time) int {
	if d.mu.reserve == 0 {
		return 0
	}
	for v := 0; v < u && v < queue.Levels; v++ {
		if t := d.mu.seen[v]; !t.IsZero() && now.Sub(t) < ReserveWindow {
			return d.mu.reserve
		}
	}
	return 0
}
