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

// used is the units counted in the window ending at now.
func (w *windowLog) used(now time.Time) int {
	w.prune(now)
	return w.sum
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
	keep = max(0, min(keep, w.q.Limit-n))
	w.prune(now)
	over := w.sum + n + keep - w.q.Limit
	if over <= 0 {
		return true, time.Time{}
	}
	for i := w.head; i < len(w.groups); i++ {
		if over -= w.groups[i].n; over <= 0 {
			return false, time.Unix(0, w.groups[i].last).Add(w.q.Per)
		}
	}
	return false, time.Time{} // unreachable: sum counts every group
}

func (w *windowLog) check(now time.Time, n int) (bool, time.Time) { return w.checkKeep(now, n, 0) }

// take counts n units at now if they fit leaving keep. The receipt's
// expires is the take's time, which finds its group on a refund.
func (w *windowLog) take(now time.Time, n, keep int) (taken, bool, time.Time) {
	if ok, retry := w.checkKeep(now, n, keep); !ok || n < 1 {
		return taken{}, ok, retry
	}
	at := now.UnixNano()
	if k := len(w.groups) - 1; k >= w.head && at-w.groups[k].first < int64(w.q.Per/windowGroups) {
		g := &w.groups[k]
		g.last = max(g.last, at)
		g.n += n
	} else {
		w.groups = append(w.groups, quotaGroup{first: at, last: at, n: n})
	}
	w.sum += n
	return taken{src: w, n: int32(n), expires: at}, true, time.Time{}
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
// under the same lock) and appends the receipts to into.
func takeQuotas(qs []*windowLog, now time.Time, n int, into []taken) []taken {
	for _, w := range qs {
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
