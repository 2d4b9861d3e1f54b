package dispatch

import (
	"fmt"
	"time"

	"github.com/proxyd/proxyd/internal/config"
)

// Quota is a per-window quota (limits.quotas, hosts[].quotas;
// docs/shaping.md, "Quotas"): at most Limit units in any interval of
// length Per.
type Quota struct {
	Limit int
	Per   time.Duration
	Unit  string // config.QuotaRequests or config.QuotaTokens (cost.go)
}

// String is "5000/1h requests".
func (q Quota) String() string {
	return fmt.Sprintf("%d/%s %s", q.Limit, config.FormatPer(q.Per), q.Unit)
}

// QuotasOf converts validated quotas (at key, for errors: "limits.quotas"
// or "hosts[0].quotas"). A tokens quota takes each request's cost
// (Request.Cost, cost.go); validation keeps them to hosts rules.
func QuotasOf(key string, qs []config.Quota) ([]Quota, error) {
	var out []Quota
	for _, q := range qs {
		out = append(out, Quota{Limit: q.Limit, Per: q.Per, Unit: q.UnitOrDefault()})
	}
	return out, nil
}

// windowGroups is how many groups a window log keeps at most per window
// (windowLog): its memory is O(min(limit, windowGroups)) whatever the
// limit, and a unit is held at most per/windowGroups longer than per.
const windowGroups = 1024

// windowLog enforces one Quota: a sliding log of the admissions of the
// last Per, where admissions that fall within Per/windowGroups of each
// other share one entry (a group) that expires Per after the latest of
// them. It is a tokenSource.
//
// The bound is exact: an admission at time a counts against every window
// [t, t+Per) that holds a, and its group leaves the log no earlier than
// a+Per, so a take that finds sum+n <= Limit never makes any window hold
// more than Limit. Under sustained overload every unit comes back at most
// Per/windowGroups after its own Per, so at least
// Limit × windowGroups/(windowGroups+1) (99.9%) units are admitted per
// Per. TestQuotaWindowBound checks both over adversarial arrivals.
type windowLog struct {
	q Quota
	// share is the factor of Limit admitted while leases are off
	// (SetLocalShare); 0 means 1.
	share float64
	// lease is the quota's leased units (quotalease.go): while it is on,
	// they admit, and the log only records this replica's admissions.
	lease quotaLease
	// held counts, until heldUntil (Unix nanoseconds), the rest of the
	// fleet's units (at the local share) that the window held when leases
	// went off: setLeased.
	held      int
	heldUntil int64
	// groups, oldest first, from head on; sum is their units.
	groups []quotaGroup
	head   int
	sum    int
}

// quotaGroup is admissions within Per/windowGroups of its first.
type quotaGroup struct {
	first, last int64 // Unix nanoseconds of its first and latest take
	n           int   // units still counted (refunds lower it)
}

var _ tokenSource = (*windowLog)(nil)

func newWindowLog(q Quota) *windowLog { return &windowLog{q: q} }

// prune forgets the groups whose latest admission is Per old or more.
func (w *windowLog) prune(now time.Time) {
	cut := now.Add(-w.q.Per).UnixNano()
	for w.head < len(w.groups) && w.groups[w.head].last <= cut {
		w.sum -= w.groups[w.head].n
		w.head++
	}
	if w.head == len(w.groups) {
		w.groups, w.head = w.groups[:0], 0
	} else if w.head > 64 && w.head*2 > len(w.groups) {
		w.groups = append(w.groups[:0], w.groups[w.head:]...)
		w.head = 0
	}
}

// used is the units counted in the window ending at now: the fleet's, as
// the store last said, while leased.
func (w *windowLog) used(now time.Time) int {
	if w.lease.on {
		return w.lease.used
	}
	w.prune(now)
	return w.sum + w.heldAt(now)
}

// heldAt is held while it lasts.
func (w *windowLog) heldAt(now time.Time) int {
	if now.UnixNano() < w.heldUntil {
		return w.held
	}
	return 0
}

// limit is the quota's limit at this replica's local share (at least 1).
func (w *windowLog) limit() int {
	if w.share > 0 && w.share < 1 {
		return max(1, int(float64(w.q.Limit)*w.share))
	}
	return w.q.Limit
}

// checkKeep reports whether n units fit at now leaving keep (capped at
// Limit-n) for more urgent arrivals, and if not when they will: when
// enough groups have left the window. The zero time means never (n above
// Limit: only a limit change helps, and it runs admission).
func (w *windowLog) checkKeep(now time.Time, n, keep int) (bool, time.Time) {
	if n < 1 {
		return true, time.Time{}
	}
	if n > w.q.Limit {
		return false, time.Time{}
	}
	if w.lease.on {
		// keep does not apply: the store serves replicas by urgency.
		return w.lease.check(now, n)
	}
	limit := w.limit()
	keep = max(0, min(keep, limit-n))
	w.prune(now)
	held := w.heldAt(now)
	over := w.sum + held + n + keep - limit
	if over <= 0 {
		return true, time.Time{}
	}
	// Units leave in time order: the groups', and the held ones at
	// heldUntil.
	for i := w.head; i < len(w.groups); i++ {
		leave := time.Unix(0, w.groups[i].last).Add(w.q.Per)
		if held > 0 && w.heldUntil <= leave.UnixNano() {
			if over -= held; over <= 0 {
				return false, time.Unix(0, w.heldUntil)
			}
			held = 0
		}
		if over -= w.groups[i].n; over <= 0 {
			return false, leave
		}
	}
	if over -= held; held > 0 && over <= 0 {
		return false, time.Unix(0, w.heldUntil)
	}
	return false, time.Time{} // unreachable: sum and held count every unit
}

func (w *windowLog) check(now time.Time, n int) (bool, time.Time) { return w.checkKeep(now, n, 0) }

// take counts n units at now if they fit leaving keep. The receipt's
// expires is the take's time, which finds its group on a refund.
func (w *windowLog) take(now time.Time, n, keep int) (taken, bool, time.Time) {
	if ok, retry := w.checkKeep(now, n, keep); !ok || n < 1 {
		return taken{}, ok, retry
	}
	return taken{src: w, n: int32(n), expires: w.add(now, n)}, true, time.Time{}
}

// add counts n units at now, whether they fit or not, and returns the
// take's time (a receipt's expires).
func (w *windowLog) add(now time.Time, n int) int64 {
	at := now.UnixNano()
	if k := len(w.groups) - 1; k >= w.head && at-w.groups[k].first < int64(w.q.Per/windowGroups) {
		g := &w.groups[k]
		g.last = max(g.last, at)
		g.n += n
	} else {
		w.groups = append(w.groups, quotaGroup{first: at, last: at, n: n})
	}
	w.sum += n
	return at
}

// refund uncounts units that take counted, unless their group has left
// the window already. The group keeps its times: a refund never makes a
// window count an admission for less time than it should.
func (w *windowLog) refund(t taken, now time.Time) {
	w.prune(now)
	for i := len(w.groups) - 1; i >= w.head; i-- {
		g := &w.groups[i]
		if g.first <= t.expires && t.expires <= g.last {
			k := min(int(t.n), g.n)
			g.n -= k
			w.sum -= k
			return
		}
	}
}

// setQuotas returns the live state of qs: a quota with the same window
// and unit as one in old keeps its log (a new limit applies to what it
// already counted), others start empty.
func setQuotas(old []*windowLog, qs []Quota) []*windowLog {
	if len(qs) == 0 {
		return nil
	}
	out := make([]*windowLog, 0, len(qs))
	used := make([]bool, len(old))
	for _, q := range qs {
		var w *windowLog
		for i, o := range old {
			if !used[i] && o.q.Per == q.Per && o.q.Unit == q.Unit {
				used[i], w = true, o
				w.q = q
				break
			}
		}
		if w == nil {
			w = newWindowLog(q)
		}
		out = append(out, w)
	}
	return out
}

// checkQuotasLocked reports whether n units fit in every quota of qs at
// now leaving keep, and if not when to ask again (the latest retry among
// those short: all must fit together; zero: never by itself).
func checkQuotas(qs []*windowLog, now time.Time, n, keep int) (bool, time.Time) {
	ok, retry := true, time.Time{}
	for _, w := range qs {
		if fits, r := w.checkKeep(now, n, keep); !fits {
			if r.IsZero() {
				return false, time.Time{}
			}
			if ok || r.After(retry) {
				retry = r
			}
			ok = false
		}
	}
	return ok, retry
}

// takeQuotas takes n units from every quota of qs (checked just before,
// under the same lock) and appends the receipts to into. A leased quota's
// units come from its batches (a receipt per batch), and its log records
// them too (for redis.on_error: quotalease.go).
func takeQuotas(qs []*windowLog, now time.Time, n int, into []taken) []taken {
	for _, w := range qs {
		if w.lease.on {
			into = w.lease.takeInto(now, n, into)
			w.prune(now) // nothing else prunes the log while leased
			w.add(now, n)
			continue
		}
		if t, ok, _ := w.take(now, n, 0); ok && t.src != nil {
			into = append(into, t)
		}
	}
	return into
}

// ruleQuotas counts r's quotas (none for a nil rule).
func ruleQuotas(r *rule) int {
	if r == nil {
		return 0
	}
	return len(r.quotas)
}

// QuotaStats is one quota's live use.
type QuotaStats struct {
	Quota Quota
	Used  int // units admitted in the window ending now
}

func quotaStats(qs []*windowLog, now time.Time) []QuotaStats {
	var out []QuotaStats
	for _, w := range qs {
		out = append(out, QuotaStats{Quota: w.q, Used: w.used(now)})
	}
	return out
}
