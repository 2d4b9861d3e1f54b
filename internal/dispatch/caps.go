package dispatch

import (
	"sort"
	"time"
)

// Provider caps: what a destination's provider last said is left of its
// quota (docs/shaping.md, "Provider rate-limit headers"). proxyd is never
// more optimistic than the provider: a response of D stating R requests
// left until T lets at most R more requests to D be admitted before T.
//
// The rule for requests already in flight: a cap counts the admissions
// made after it was set (after the response arrived), not those still in
// flight then. A response that stated R may or may not have counted them;
// their own responses, when they come, state a newer remaining that
// replaces the cap. So proxyd may exceed what a provider stated by at most
// the requests to D in flight when a response arrived (bounded by the
// concurrency to D), never by more; requests admitted under a cap are
// counted exactly.

// CapUnit is what a provider cap counts.
type CapUnit uint8

const (
	// CapRequests caps admissions: enforced.
	CapRequests CapUnit = iota
	// CapTokens caps the cost of priced admissions (Request.Cost, or a
	// rule with a tokens quota: cost.go): enforced for those; requests
	// not priced in tokens are not held by it.
	CapTokens
)

func (u CapUnit) String() string {
	if u == CapTokens {
		return "tokens"
	}
	return "requests"
}

type capKey struct {
	dest string
	unit CapUnit
}

// provCap is one destination's cap in one unit. Lanes to its destination
// hold a pointer to it (lane.cap); a newer response updates it in place.
type provCap struct {
	stated int64     // the remaining count the response stated
	left   int64     // what is left of it: stated - admissions since
	limit  int64     // the quota's size the response stated, 0 if none
	until  time.Time // the stated reset: the cap ends then
	gen    uint64    // bumped on every update, so that a stale refund is ignored
}

// live reports whether c still caps at now.
func (c *provCap) live(now time.Time) bool { return c != nil && now.Before(c.until) }

// exhausted reports whether c lets nothing more through at now.
func (c *provCap) exhausted(now time.Time) bool { return c.live(now) && c.left <= 0 }

// Cap records that a response of dest ("host:port") stated remaining
// units left until until, replacing what an earlier response stated. In
// unit CapRequests it caps admissions to dest (HTTP requests, not
// tunnels): at most remaining more before until; a lane whose cap is
// exhausted sleeps until until, without delaying other destinations. In
// CapTokens it caps the sum of the costs of priced requests admitted to
// dest the same way (a head that costs more than is left sleeps until
// until; Settle corrects what is left). A cap that has already ended, or
// a negative remaining, is ignored.
//
// At most maxPauses caps are remembered; past it, the one that ends
// soonest is forgotten (its destination is then capped by its next
// response only).
func (d *Dispatcher) Cap(dest string, unit CapUnit, remaining int64, until time.Time) {
	d.CapStated(dest, unit, remaining, 0, until)
}

// CapStated is Cap with the size of the quota the response stated beside
// its remaining count (limit; 0 or less when it stated none), which Stats
// reports (ProviderCap.Limit) and nothing enforces.
func (d *Dispatcher) CapStated(dest string, unit CapUnit, remaining, limit int64, until time.Time) {
	if dest == "" || remaining < 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	if !now.Before(until) {
		return
	}
	k := capKey{dest, unit}
	c, ok := d.mu.caps[k]
	if !ok {
		c = &provCap{}
		d.mu.caps[k] = c
	}
	moved := !c.until.Equal(until)
	c.stated, c.left, c.until, c.limit = remaining, remaining, until, max(limit, 0)
	c.gen++
	if moved {
		pushUntil(&d.mu.capQ, pauseEntry{dest: dest, until: until, unit: unit})
	}
	if !ok && len(d.mu.caps) > maxPauses {
		d.evictCapLocked()
	}
	if len(d.mu.capQ) > 2*len(d.mu.caps)+64 {
		d.compactCapsLocked()
	}
	if l, ok := d.mu.lanes[laneKey{HTTP, dest, false}]; ok {
		if unit == CapRequests {
			l.cap = c
		} else {
			l.tcap = c
		}
		// A raised cap may let a lane asleep on it go now; a lowered
		// one is checked at its next pick.
		if !l.idle && l.state == laneSleeping {
			d.readyLocked(l)
		}
	}
	d.runLocked(now)
}

// takeCapLocked counts an admission from l against its cap, if live, and
// returns the receipt for a refund.
func takeCapLocked(l *lane, now time.Time) (*provCap, uint64) {
	c := l.cap
	if !c.live(now) {
		return nil, 0
	}
	c.left--
	return c, c.gen
}

// giveBackCap returns a refunded admission to its cap, unless a newer
// response replaced the cap since (its count already tells) or it ended.
func giveBackCap(c *provCap, gen uint64, now time.Time) bool {
	if c == nil || c.gen != gen || !c.live(now) {
		return false
	}
	c.left++
	return true
}

// capOfLocked is the live CapRequests cap of lanes to dest, for a new lane.
func (d *Dispatcher) capOfLocked(dest string) *provCap {
	return d.mu.caps[capKey{dest, CapRequests}]
}

// forgetCapLocked drops k's cap, and the pointer its lane holds.
func (d *Dispatcher) forgetCapLocked(k capKey) {
	delete(d.mu.caps, k)
	if l, ok := d.mu.lanes[laneKey{HTTP, k.dest, false}]; ok {
		if k.unit == CapRequests {
			l.cap = nil
		} else {
			l.tcap = nil
		}
	}
}

// evictCapLocked forgets the live cap that ends soonest.
func (d *Dispatcher) evictCapLocked() {
	for len(d.mu.capQ) > 0 {
		e := popUntil(&d.mu.capQ)
		k := capKey{e.dest, e.unit}
		if c, ok := d.mu.caps[k]; ok && c.until.Equal(e.until) {
			d.forgetCapLocked(k)
			return
		}
	}
}

// expireCapsLocked forgets the caps that have ended.
func (d *Dispatcher) expireCapsLocked(now time.Time) {
	for len(d.mu.capQ) > 0 && !now.Before(d.mu.capQ[0].until) {
		e := popUntil(&d.mu.capQ)
		k := capKey{e.dest, e.unit}
		if c, ok := d.mu.caps[k]; ok && !now.Before(c.until) {
			d.forgetCapLocked(k)
		}
	}
}

// compactCapsLocked rebuilds capQ from caps, dropping stale entries.
func (d *Dispatcher) compactCapsLocked() {
	d.mu.capQ = d.mu.capQ[:0]
	for k, c := range d.mu.caps {
		pushUntil(&d.mu.capQ, pauseEntry{dest: k.dest, until: c.until, unit: k.unit})
	}
}

// ProviderCap is a destination's provider cap, as Stats reports it.
type ProviderCap struct {
	Dest string
	// Rule is the match of the hosts rule the destination falls under,
	// "" for none.
	Rule string
	Unit CapUnit
	// Stated is the remaining count the last response stated; Remaining
	// what is left of it now (Stated minus the admissions since, never
	// below 0).
	Stated, Remaining int64
	Until             time.Time // the stated reset: the cap ends then
	// Limit is the quota's size the last response stated (X-RateLimit-Limit,
	// x-ratelimit-limit-requests…), 0 when it stated none.
	Limit int64
}

// capStatsLocked returns the live caps, soonest end first.
func (d *Dispatcher) capStatsLocked(now time.Time) []ProviderCap {
	var out []ProviderCap
	for k, c := range d.mu.caps {
		if !c.live(now) {
			continue
		}
		pc := ProviderCap{Dest: k.dest, Unit: k.unit, Stated: c.stated, Remaining: max(c.left, 0), Limit: c.limit, Until: c.until}
		if r := matchRule(d.mu.rules, k.dest); r != nil {
			pc.Rule = r.limit.Match.String()
		}
		out = append(out, pc)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Until.Equal(b.Until) {
			return a.Until.Before(b.Until)
		}
		if a.Dest != b.Dest {
			return a.Dest < b.Dest
		}
		return a.Unit < b.Unit
	})
	return out
}
