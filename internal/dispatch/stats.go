package dispatch

import (
	"sort"
	"time"

	"github.com/proxyd/proxyd/internal/queue"
)

// Stats is a snapshot of the dispatcher's state.
type Stats struct {
	Depth      int               // waiting requests
	ByPriority [queue.Levels]int // waiting requests by urgency
	InFlight   int               // HTTP requests holding a concurrency slot
	Tunnels    int               // open tunnels
	OldestWait time.Duration     // how long the oldest waiting request has waited
	Waiting    [numKinds]int     // waiting requests by kind
	Limits     Limits            // live limits; Rate is the one enforced here: limits.rate × LocalShare
	LocalShare float64           // SetLocalShare: this replica's share of limits.rate (1 but during a store outage)
	Aging      time.Duration     // live aging interval
	Reserve    int               // live priority.reserve (Config.Reserve)
	Draining   bool              // Drain or Close was called
	Tokens     float64           // rate tokens available now (+Inf when unlimited)
	Paused     []Paused          // destinations paused by back-pressure, soonest end first
	Lanes      int               // destinations (by kind) with waiting requests
	Hosts      []HostStats       // per hosts rule, in rule order
	// Admitted counts the permits granted since New (HTTP requests, each
	// retry attempt and tunnels): what the rate limit is spent on. It only
	// grows; the admin dashboard turns it into a rate.
	Admitted uint64
	// OldestWaitByPriority is, per urgency, how long its oldest waiting
	// request has waited; 0 when none waits.
	OldestWaitByPriority [queue.Levels]time.Duration
	// Quotas are the global quotas' use (limits.quotas), in their order.
	Quotas []QuotaStats
	// Caps are the live provider caps (Cap), soonest end first.
	Caps []ProviderCap
}

// HostStats is a hosts rule's live state.
type HostStats struct {
	Match    string
	Limit    HostLimit // the rule's live limits
	InFlight int       // HTTP requests in flight under the rule
	Waiting  int       // requests waiting under the rule
	Admitted uint64    // permits granted under the rule since it was first configured
	Quotas   []QuotaStats
}

// Stats returns a snapshot.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	s := Stats{
		Depth:      d.mu.q.Len(),
		InFlight:   d.mu.slots[HTTP].InUse(),
		Tunnels:    d.mu.slots[Tunnel].InUse(),
		Limits:     d.mu.limits,
		LocalShare: d.mu.share,
		Aging:      d.mu.q.Aging(),
		Reserve:    d.mu.reserve,
		Draining:   d.mu.draining,
		Tokens:     d.mu.rate.Tokens(now),
		Admitted:   d.mu.admitted,
	}
	s.Limits.Rate *= d.mu.share
	s.Quotas = quotaStats(d.mu.quotas, now)
	for u := range s.ByPriority {
		s.ByPriority[u] = d.mu.q.Count(u)
	}
	s.Lanes = len(d.mu.lanes) - d.mu.idle
	for _, l := range d.mu.lanes {
		s.Waiting[l.key.kind] += l.q.Len()
	}
	for _, r := range d.mu.rules {
		s.Hosts = append(s.Hosts, HostStats{Match: r.limit.Match.String(), Limit: r.limit, InFlight: r.slots.InUse(), Waiting: r.waiting(), Admitted: r.admitted,
			Quotas: quotaStats(r.quotas, now)})
	}
	if it := d.mu.q.Oldest(); it != nil {
		s.OldestWait = now.Sub(it.Enqueued)
	}
	for u, it := range d.mu.q.OldestByLevel() {
		if it != nil {
			s.OldestWaitByPriority[u] = now.Sub(it.Enqueued)
		}
	}
	for dest, until := range d.mu.pauses {
		if now.Before(until) {
			s.Paused = append(s.Paused, Paused{Dest: dest, Until: until})
		}
	}
	s.Caps = d.capStatsLocked(now)
	sort.Slice(s.Paused, func(i, j int) bool {
		if !s.Paused[i].Until.Equal(s.Paused[j].Until) {
			return s.Paused[i].Until.Before(s.Paused[j].Until)
		}
		return s.Paused[i].Dest < s.Paused[j].Dest
	})
	return s
}
