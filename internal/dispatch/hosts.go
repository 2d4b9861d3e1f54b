package dispatch

import (
	"fmt"
	"math"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/hostport"
	"github.com/proxyd/proxyd/internal/limiter"
)

// SetHosts replaces the per-destination rules. A rule whose match is
// unchanged keeps its state (tokens, requests in flight); waiting requests
// keep their place and are re-matched at once.
func (d *Dispatcher) SetHosts(hosts []HostLimit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	d.setHostsLanesLocked(hosts, now)
	d.runLocked(now)
}

// setHostsLanesLocked replaces the rules and re-matches every lane.
func (d *Dispatcher) setHostsLanesLocked(hosts []HostLimit, now time.Time) {
	for _, l := range d.mu.lanes {
		d.detachLocked(l) // from the old rule's structures
	}
	d.setHostsLocked(hosts, now)
	for _, l := range d.mu.lanes {
		if !l.key.free {
			if l.rule != nil {
				delete(l.rule.lanes, l)
			}
			if l.rule = matchRule(d.mu.rules, l.key.dest); l.rule != nil {
				l.rule.lanes[l] = struct{}{}
			}
		}
		if !l.idle {
			d.readyLocked(l) // gates are checked again at the next pick
		}
	}
}

func (d *Dispatcher) setHostsLocked(hosts []HostLimit, now time.Time) {
	old := make(map[config.HostPattern]*rule, len(d.mu.rules))
	for _, r := range d.mu.rules {
		old[r.limit.Match] = r
	}
	rules := make([]*rule, 0, len(hosts))
	for _, h := range hosts {
		r, ok := old[h.Match]
		if ok {
			delete(old, h.Match)
			r.bucket.Set(now, h.Rate, h.Burst)
			r.slots.SetCap(h.Concurrency)
			r.limit = h
			r.quotas = setQuotas(r.quotas, h.Quotas)
		} else {
			r = &rule{limit: h, bucket: limiter.NewBucket(h.Rate, h.Burst), slots: limiter.NewSlots(h.Concurrency),
				slotWaiters: map[*lane]struct{}{}, tokenWaiters: map[*lane]struct{}{}, lanes: map[*lane]struct{}{},
				quotas: setQuotas(nil, h.Quotas)}
		}
		d.setRuleSourceLocked(r)
		rules = append(rules, r)
	}
	// Permits still holding a dropped rule's slots release them harmlessly.
	d.mu.rules = rules
	d.syncQuotasLocked(now) // new quotas follow the lease mode
	d.syncSlotsLocked(now)  // and shared caps
}

// HostLimit is a per-destination rule (the config's hosts entries): every
// destination it matches shares its bucket and its cap.
type HostLimit struct {
	Match       config.HostPattern
	Rate        float64 // per second; 0 = unlimited
	Burst       int     // bucket size (>= 1 when Rate > 0)
	Concurrency int     // HTTP requests in flight; 0 = unlimited
	Quotas      []Quota // per-window quotas besides the bucket
	// CostDefault is the rule's cost.default: the price of a request
	// without a Cost under a tokens quota, and the unit of
	// priority.reserve in its tokens quotas (cost.go); 0 means 1.
	CostDefault int64
	// SharedConcurrency makes Concurrency fleet-wide (sharedslots.go).
	SharedConcurrency bool
}

// rule is a HostLimit's live state.
type rule struct {
	limit  HostLimit
	bucket *limiter.Bucket
	slots  limiter.Slots
	// quotas are limit.Quotas' live state, kept across reloads by
	// window and unit (setQuotas).
	quotas []*windowLog
	// slotWaiters are lanes whose head waits for one of this rule's slots;
	// a release makes them ready again.
	slotWaiters map[*lane]struct{}
	// admitted counts permits granted under the rule (Stats); guarded by
	// the dispatcher's mu, kept across reloads with the rule.
	admitted uint64
	// lease holds the rule's leased tokens while a shared store serves
	// its bucket (a rule with a rate, leases on: lease.go).
	lease leasePool
	// src is where the rule's tokens come from: bucket, or lease while
	// the store serves them (setRuleSourceLocked).
	src tokenSource
	// tokenWaiters are lanes asleep until the rule's bucket refills; a
	// grant (GrantRules) or refund for the rule wakes them at once.
	tokenWaiters map[*lane]struct{}
	// lanes are the lanes kept (Dispatcher.mu.lanes, idle ones too) whose
	// destination the rule matches.
	lanes map[*lane]struct{}
	// shared is the rule's side of a fleet-wide cap (SharedConcurrency,
	// sharedslots.go).
	shared slotLease
}

// waiting counts the requests waiting under r.
func (r *rule) waiting() int {
	n := 0
	for l := range r.lanes {
		n += l.q.Len()
	}
	return n
}

// matchRule returns the first rule matching dest ("host:port"), or nil.
func matchRule(rules []*rule, dest string) *rule {
	if len(rules) == 0 || dest == "" {
		return nil
	}
	hp, err := hostport.Parse(dest) // once per lane (laneLocked), not per request
	if err != nil {
		return nil
	}
	for _, r := range rules {
		if r.limit.Match.Match(hp.Host, hp.Port) {
			return r
		}
	}
	return nil
}

// HostLimitsOf converts validated hosts rules with the defaults of docs/configuration.md: an
// omitted rate or concurrency is unlimited, an omitted burst is
// max(1, rate).
func HostLimitsOf(rules []config.HostRule) ([]HostLimit, error) {
	out := make([]HostLimit, 0, len(rules))
	for i, r := range rules {
		p, err := config.ParseHostPattern(r.Match)
		if err != nil {
			return nil, fmt.Errorf("hosts[%d].match: %w", i, err)
		}
		h := HostLimit{Match: p}
		if r.Rate != nil {
			h.Rate = *r.Rate
		}
		h.Burst = max(1, int(math.Ceil(h.Rate)))
		if r.Burst != nil {
			h.Burst = *r.Burst
		}
		if r.Concurrency != nil {
			h.Concurrency = *r.Concurrency
		}
		h.SharedConcurrency = r.SharedConcurrency
		if h.Quotas, err = QuotasOf(fmt.Sprintf("hosts[%d].quotas", i), r.Quotas); err != nil {
			return nil, err
		}
		h.CostDefault = r.Cost.Pricing().Default
		out = append(out, h)
	}
	return out, nil
}
