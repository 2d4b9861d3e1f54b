package dispatch

import (
	"fmt"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/queue"
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
	// byLevel is the same log split by the admissions' urgency, for the
	// urgency headroom (headroom).
	byLevel [queue.Levels]levelLog
}

// levelLog is the admissions of one urgency in the window: groups as in
// windowLog.
type levelLog struct {
	groups []quotaGroup
	head   int
	sum    int
}

func (l *levelLog) prune(cut int64) {
	for l.head < len(l.groups) && l.groups[l.head].last <= cut {
		l.sum -= l.groups[l.head].n
		l.head++
	}
	if l.head == len(l.groups) {
		l.groups, l.head = l.groups[:0], 0
	} else if l.head > 64 && l.head*2 > len(l.groups) {
		l.groups = append(l.groups[:0], l.groups[l.head:]...)
		l.head = 0
	}
}

func (l *levelLog) add(at int64, n int, span int64) {
	if k := len(l.groups) - 1; k >= l.head && at-l.groups[k].first < span {
		g := &l.groups[k]
		g.last = max(g.last, at)
		g.n += n
	} else {
		l.groups = append(l.groups, quotaGroup{first: at, last: at, n: n})
	}
	l.sum += n
}

func (l *levelLog) refund(at int64, n int) {
	for i := len(l.groups) - 1; i >= l.head; i-- {
		g := &l.groups[i]
		if g.first <= at && at <= g.last {
			k := min(n, g.n)
			g.n -= k
			l.sum -= k
			return
		}
	}
}

// level clamps an urgency to the queue's levels.
func level(u int) int { return min(max(u, 0), queue.Levels-1) }

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
	for i := range w.byLevel {
		w.byLevel[i].prune(cut)
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
// Limit-n) for more urgent arrivals, and the urgency headroom for
// requests more urgent than u (headroom), and if not when they will: when
// enough groups have left the window. The zero time means never (n above
// Limit: only a limit change helps, and it runs admission).
func (w *windowLog) checkKeep(now time.Time, n, keep, u int) (bool, time.Time) {
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
		return w.headroom(now, -over, u)
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

func (w *windowLog) check(now time.Time, n int) (bool, time.Time) {
	return w.checkKeep(now, n, 0, 0)
}

// headroomShare caps the urgency headroom at Limit/headroomShare.
const headroomShare = 2

// headroomMargin scales the more urgent requests' expected pace, for
// arrivals that come faster than the last window's average for a while.
const headroomMargin = 1.25

// headroom reports whether a request of urgency u may leave free units of
// the window free (after its take and the reserve), and if not when to
// ask again (docs/shaping.md, "Priority in quotas"). The more urgent
// requests' demand is taken to go on at the pace of the last window: U,
// the units admitted to requests more urgent than u in the window ending
// now (at most Limit/headroomShare), per Per. The request may go only if,
// for every moment t of the next Per, the free units plus those leaving
// the window by t cover headroomMargin × U × (t-now)/Per: so that a
// backlog that spent the
// window early cannot leave more urgent arrivals with nothing until the
// window moves. Units leaving the window spread over it (as they do once
// admissions follow arrivals) cover that demand by themselves, and the
// whole window is spent; with no more urgent admission in the window
// (the first window, a quota without urgent traffic) it is spent as
// without headroom. Headroom only ever refuses, so the window bound holds.
// O(groups) for a less urgent request while more urgent ones used the
// window, O(Levels) otherwise.
func (w *windowLog) headroom(now time.Time, free, u int) (bool, time.Time) {
	urgent := 0
	for v := 0; v < u && v < queue.Levels; v++ {
		urgent += w.byLevel[v].sum
	}
	urgent = min(urgent, w.limit()/headroomShare)
	// The demand over a whole window, beyond which nothing more is asked.
	most := float64(urgent) * headroomMargin
	if urgent <= 0 || float64(free) >= most {
		return true, time.Time{}
	}
	per := float64(w.q.Per) / headroomMargin
	at := now.UnixNano()
	ok, retry := true, int64(0)
	cover := free // free units plus those gone by the group's leave time
	for i := w.head; i < len(w.groups) && float64(cover) < most; i++ {
		leave := w.groups[i].last + int64(w.q.Per)
		need := float64(urgent) * float64(leave-at) / per
		if float64(cover) < need {
			// Fits once the demand until leave shrinks to cover.
			ok = false
			retry = max(retry, leave-int64(float64(cover)*per/float64(urgent)))
		}
		cover += w.groups[i].n
	}
	if ok {
		return true, time.Time{}
	}
	// At most windowGroups wakes per window.
	return false, time.Unix(0, max(retry, at+int64(w.q.Per/windowGroups)))
}

// take counts n units at now if they fit leaving keep. The receipt's
// expires is the take's time, which finds its group on a refund.
func (w *windowLog) take(now time.Time, n, keep int) (taken, bool, time.Time) {
	return w.takeAt(now, n, keep, 0)
}

// takeAt is take for a request of urgency u (checkKeep).
func (w *windowLog) takeAt(now time.Time, n, keep, u int) (taken, bool, time.Time) {
	if ok, retry := w.checkKeep(now, n, keep, u); !ok || n < 1 {
		return taken{}, ok, retry
	}
	return taken{src: w, n: int32(n), expires: w.add(now, n, u), lv: int8(level(u))}, true, time.Time{}
}

// add counts n units at now for a request of urgency u, whether they fit
// or not, and returns the take's time (a receipt's expires).
func (w *windowLog) add(now time.Time, n, u int) int64 {
	at := now.UnixNano()
	w.byLevel[level(u)].add(at, n, int64(w.q.Per/windowGroups))
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
			w.byLevel[t.lv].refund(t.expires, k)
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

// checkQuotas reports whether n units fit in every quota of qs at now
// leaving keep and the urgency headroom for requests more urgent than u,
// and if not when to ask again (the latest retry among those short: all
// must fit together; zero: never by itself).
func checkQuotas(qs []*windowLog, now time.Time, n, keep, u int) (bool, time.Time) {
	ok, retry := true, time.Time{}
	for _, w := range qs {
		if fits, r := w.checkKeep(now, n, keep, u); !fits {
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
// them too (for redis.on_error: quotalease.go). u is the request's
// urgency, which the logs record for the headroom.
func takeQuotas(qs []*windowLog, now time.Time, n, u int, into []taken) []taken {
	for _, w := range qs {
		if w.lease.on {
			into = w.lease.takeInto(now, n, into)
			w.prune(now) // nothing else prunes the log while leased
			w.add(now, n, u)
			continue
		}
		if t, ok, _ := w.takeAt(now, n, 0, u); ok && t.src != nil {
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
