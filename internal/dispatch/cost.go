package dispatch

import (
	"errors"
	"slices"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/queue"
)

// Requests priced in tokens (docs/shaping.md, "LLM APIs: pricing
// requests"). A request carries its cost (Request.Cost): what its rule's
// tokens quotas and its destination's provider cap in tokens take, where
// requests quotas take 1. The correction (Permit.Settle) charges or gives
// back the difference once the response told what it used.
//
// Order within a rule. A lane's head blocks its lane: a big request is
// never overtaken by smaller ones behind it, of the same urgency (FIFO) or
// less urgent. Across the lanes of one rule (a wildcard rule's
// destinations share its quotas) the same holds: a lane whose head goes
// after the head of a lane asleep for the rule's tokens waits as well
// (heldBehind), so that the most urgent waiting request is the next to
// fit. The price: small requests wait behind a big one until the window
// has room for it, at most per. Letting smaller ones pass would starve a
// big one for as long as small ones keep coming, and a less urgent request
// that fits would spend the budget a more urgent one waits for.

// ErrCostExceedsQuota is the refusal of a request whose cost is above the
// limit of one of its rule's tokens quotas: it could never be admitted, so
// it is refused at once (RetryAfter 0: waiting will not help), never
// queued. A limit lowered under a waiting request refuses it too.
var ErrCostExceedsQuota = errors.New("cost exceeds quota")

// ruleTokens reports whether r has a tokens quota.
func ruleTokens(r *rule) bool {
	if r == nil {
		return false
	}
	for _, w := range r.quotas {
		if w.q.Unit == config.QuotaTokens {
			return true
		}
	}
	return false
}

// costUnder is what w is priced at under r: its Request.Cost, else r's
// cost.default (HostLimit.CostDefault), else 1.
func (w *Ticket) costUnder(r *rule) int64 {
	switch {
	case w.cost > 0:
		return w.cost
	case r != nil && r.limit.CostDefault > 0:
		return r.limit.CostDefault
	}
	return 1
}

// unitsFor is what one admission of cost takes from w: cost in a tokens
// quota, 1 in a requests quota.
func unitsFor(w *windowLog, cost int64) int {
	if w.q.Unit == config.QuotaTokens {
		return int(cost)
	}
	return tokensPerRequest
}

// exceedsQuota reports whether cost can never fit one of r's tokens
// quotas.
func exceedsQuota(r *rule, cost int64) bool {
	if r == nil {
		return false
	}
	for _, w := range r.quotas {
		if w.q.Unit == config.QuotaTokens && cost > int64(w.q.Limit) {
			return true
		}
	}
	return false
}

// checkCost refuses at once a request that can never fit its lane's rule
// (Enqueue).
func checkCost(w *Ticket, l *lane) error {
	if exceedsQuota(l.rule, permitCost(w, l.rule)) {
		return &RejectError{Err: ErrCostExceedsQuota}
	}
	return nil
}

// ruleQuotaGate is the outcome of checking a lane's head against its
// rule's quotas.
type ruleQuotaGate uint8

const (
	gateOpen  ruleQuotaGate = iota // fits: admit
	gateWait                       // not now: wait until retry
	gateNever                      // its cost exceeds a tokens quota's limit
)

// checkRuleQuotasLocked checks the head of l against the quotas of its
// rule r: requests quotas for one unit as before; tokens quotas for the
// head's cost, leaving priority.reserve × cost.default tokens to more
// urgent arrivals (keepLocked), and only when no lane of r asleep for its
// tokens has a head that goes first (see "Order within a rule" above).
func (d *Dispatcher) checkRuleQuotasLocked(l *lane, r *rule, now time.Time) (ruleQuotaGate, time.Time) {
	if !ruleTokens(r) {
		if ok, retry := checkQuotas(r.quotas, now, tokensPerRequest, 0, l.q.Peek().Urgency); !ok {
			return gateWait, retry
		}
		return gateOpen, time.Time{}
	}
	head := l.q.Peek()
	cost := head.Value.(*Ticket).costUnder(r)
	if exceedsQuota(r, cost) {
		return gateNever, time.Time{}
	}
	if until, held := heldBehind(l, r, head); held {
		return gateWait, until
	}
	keep := int64(d.keepLocked(head.Urgency, now)) * max(r.limit.CostDefault, 1)
	ok, retry := true, time.Time{}
	for i, w := range r.quotas {
		k := 0
		if w.q.Unit == config.QuotaTokens {
			k = int(min(keep, int64(w.q.Limit)))
		}
		// One quota at a time (each in its unit), through checkQuotas.
		fits, rt := checkQuotas(r.quotas[i:i+1], now, unitsFor(w, cost), k, head.Urgency)
		if fits {
			continue
		}
		if rt.IsZero() {
			return gateWait, time.Time{}
		}
		if ok || rt.After(retry) {
			retry = rt
		}
		ok = false
	}
	if !ok {
		return gateWait, retry
	}
	return gateOpen, time.Time{}
}

// heldBehind reports whether a lane of r other than l sleeps for r's
// tokens with a head that goes before head, l's, and the earliest such
// lane's wake time: l waits as long. O(lanes asleep under r), and only
// for rules with a tokens quota.
func heldBehind(l *lane, r *rule, head *queue.Item) (time.Time, bool) {
	var until time.Time
	held := false
	for o := range r.tokenWaiters {
		if o == l || o.q.Len() == 0 || !queue.Before(o.q.Peek(), head) {
			continue
		}
		if !held || o.wakeAt.Before(until) {
			until = o.wakeAt
		}
		held = true
	}
	return until, held
}

// takeRuleQuotasLocked takes the units of w's permit (its cost set) from
// every quota of r (checked just before, under the same lock), through
// takeQuotas one quota at a time, and appends the receipts to into.
func takeRuleQuotasLocked(w *Ticket, r *rule, now time.Time, into []taken) []taken {
	if !ruleTokens(r) {
		return takeQuotas(r.quotas, now, tokensPerRequest, w.item.Urgency, into)
	}
	cost := w.permit.cost
	for i, q := range r.quotas {
		into = takeQuotas(r.quotas[i:i+1], now, unitsFor(q, cost), w.item.Urgency, into)
	}
	return into
}

// permitCost is the cost a permit of w under its rule r is counted at in
// tokens: its Request.Cost, or its rule's price when the rule has a
// tokens quota; 0 when it is not priced (a provider's tokens cap does not
// apply to it).
func permitCost(w *Ticket, r *rule) int64 {
	if w.cost > 0 || ruleTokens(r) {
		return w.costUnder(r)
	}
	return 0
}

// tokenCapHoldsLocked reports whether the head of l may not go because its
// destination's provider said fewer tokens are left than it costs
// (caps.go), and until when.
func tokenCapHoldsLocked(l *lane, now time.Time) (time.Time, bool) {
	c := l.tcap
	if !c.live(now) {
		return time.Time{}, false
	}
	n := permitCost(l.q.Peek().Value.(*Ticket), l.rule)
	if n <= 0 || n <= c.left {
		return time.Time{}, false
	}
	return c.until, true
}

// takeTokenCapLocked counts the cost of w's permit against its lane's
// tokens cap, if live, and records the cap in the permit for a refund or
// a correction.
func takeTokenCapLocked(w *Ticket, l *lane, now time.Time) {
	c, n := l.tcap, w.permit.cost
	if n <= 0 || !c.live(now) {
		return
	}
	c.left -= n
	w.permit.tcap, w.permit.tcapGen = c, c.gen
}

// adjustTokenCap adds delta tokens back to the permit's tokens cap
// (negative: charges them), unless a newer response replaced the cap
// since or it ended; it reports whether it did.
func adjustTokenCap(p *Permit, delta int64, now time.Time) bool {
	c := p.tcap
	if c == nil || c.gen != p.tcapGen || !c.live(now) || delta == 0 {
		return false
	}
	c.left += delta
	return true
}

// rejectCostLocked refuses a waiting request whose cost can no longer fit
// (a limit lowered under it): ErrCostExceedsQuota, no RetryAfter.
func (d *Dispatcher) rejectCostLocked(w *Ticket) {
	d.mu.q.Remove(&w.item)
	d.leftLaneLocked(w)
	d.laneChangedLocked(w.lane)
	w.state = rejected
	w.err = &RejectError{Err: ErrCostExceedsQuota}
	if w.ch != nil {
		w.ch <- w.err
	}
}

// charge counts n units at now whether they fit or not: a quota in debt
// holds later requests until enough has left the window.
func (w *windowLog) charge(now time.Time, n, u int) {
	if n < 1 {
		return
	}
	w.prune(now)
	w.add(now, n, u)
}

// Cost is the tokens the permit was admitted at: its Request.Cost, or its
// rule's cost.default; 0 when it was not priced.
func (p *Permit) Cost() int64 {
	p.d.mu.Lock()
	defer p.d.mu.Unlock()
	return p.cost
}

// Settle corrects the permit's cost once its response told what it
// actually used (docs/shaping.md, "LLM APIs: pricing requests"): the
// difference from its cost is given back to its rule's tokens quotas and
// to its provider's tokens cap (which admits waiting requests sooner), or
// charged (a quota may go into debt, up to one limit: later requests wait
// until the window has room again). Call it once, before or after
// Release; a later call, a permit that was not priced or given back
// (Cancel), and a negative actual change nothing. A response that told
// nothing keeps its cost: do not call Settle.
//
// A refund leaves the receipt's units where the admission put them in
// time (a window never counts an admission for less time than it
// should); a charge is counted when the usage became known, as a
// provider that charges at the end of the response does (OpenAI's
// continuously replenished bucket: the debt delays the next requests).
func (p *Permit) Settle(actual int64) {
	d := p.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.settled || p.cost <= 0 || actual < 0 || (p.w.state != granted && p.w.state != released) {
		return
	}
	p.settled = true
	now := d.clock.Now()
	diff := actual - p.cost
	if diff == 0 {
		return
	}
	// done are the quotas corrected so far: a leased take spread over
	// several batches left one receipt per batch, and each quota gives
	// back at most -diff, or is charged diff, once.
	type corrected struct {
		w    *windowLog
		left int64
	}
	var done []corrected
	for i, t := range p.quotaToks {
		w, _ := t.src.(*windowLog)
		b, _ := t.src.(*quotaBatch)
		if b != nil {
			w = b.log // leased units (quotalease.go): the fleet's window
		}
		if w == nil || w.q.Unit != config.QuotaTokens {
			continue
		}
		k := slices.IndexFunc(done, func(c corrected) bool { return c.w == w })
		if k < 0 {
			done = append(done, corrected{w: w, left: -diff})
			k = len(done) - 1
			if diff > 0 {
				n := int(min(diff, int64(w.q.Limit)))
				w.charge(now, n, p.w.item.Urgency)
				if w.lease.on {
					// Charged in the fleet's window by the next store
					// call, at its time (lease 0, offset 0: no earlier
					// than it was known).
					w.lease.settle = append(w.lease.settle, QuotaSettlement{Spent: n})
				}
			}
		}
		if diff > 0 {
			continue
		}
		give := int32(min(done[k].left, int64(t.n)))
		done[k].left -= int64(give)
		if b != nil {
			b.correct(int(give))
		} else {
			w.refund(taken{src: w, n: give, expires: t.expires, lv: t.lv}, now)
		}
		p.quotaToks[i].n -= give
	}
	woke := adjustTokenCap(p, -diff, now) && diff < 0
	if l := p.w.lane; woke && l != nil && !l.idle && l.state == laneSleeping {
		d.readyLocked(l)
	}
	if diff < 0 && p.rule != nil {
		// Lanes asleep for the rule's tokens may fit now.
		d.wakeTokenWaitersLocked(p.rule)
	}
	d.runLocked(now)
}

// newHeadLocked wakes l when w, just queued, became its head and is
// priced: a head that waited for room or for its provider's tokens may
// have cost more than w does (with one unit per request, a new head never
// fits where the old one did not, so other lanes are left asleep). A lane
// asleep for a pause goes back to sleep at its pick.
func (d *Dispatcher) newHeadLocked(l *lane, w *Ticket) {
	if l.state != laneSleeping || l.idx < 0 || l.q.Peek() != &w.item || permitCost(w, l.rule) <= 0 {
		return
	}
	d.readyLocked(l)
}
