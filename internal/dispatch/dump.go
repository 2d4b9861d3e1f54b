package dispatch

import (
	"sort"
	"time"
)

// Dump is a copy of the dispatcher's internal state, for tests and
// debugging (as Kubernetes APF's queueset dumps its own): what Stats
// summarizes for operators, down to each lane, pause and rule. It holds
// no reference into the dispatcher; nothing in it is live.
type Dump struct {
	At time.Time // the dispatcher's clock when it was taken
	// Lanes are every lane kept, idle ones (empty, kept for reuse)
	// included, ordered by kind, destination, then free.
	Lanes []LaneDump
	// IdleLanes counts the idle lanes among Lanes.
	IdleLanes int
	// QueueLanes counts the lanes the queue (internal/queue) holds,
	// which should match len(Lanes).
	QueueLanes int
	// Pauses counts the back-pressure pauses remembered, ended ones not
	// yet forgotten included; PauseHeap counts the entries of the heap
	// that orders them, stale ones (left by extended pauses) included.
	Pauses    int
	PauseHeap int
	// Caps counts the provider caps remembered, ended ones not yet
	// forgotten included; CapHeap the entries of the heap that orders
	// them, stale ones included.
	Caps    int
	CapHeap int
	// Rules are the hosts rules' state, in rule order.
	Rules []RuleDump
	// Leased is SetLeased's state; Unspent the global leased tokens still
	// valid at At.
	Leased  bool
	Unspent int
	// Quotas are the global quotas' use at At.
	Quotas []QuotaStats
}

// LaneDump is one lane: the waiting requests of one destination and kind.
type LaneDump struct {
	Kind    Kind
	Dest    string
	Free    bool   // Request.NoToken requests
	Rule    string // the matched rule's match, "" for none
	Waiting int
	Idle    bool
	// State is where the lane is: "ready", "sleeping" (until WakeAt: a
	// pause or its rule's token) or "slot-wait" (its rule's cap).
	State  string
	WakeAt time.Time
}

// RuleDump is one hosts rule's live state.
type RuleDump struct {
	Limit       HostLimit
	InFlight    int     // HTTP requests holding one of its slots
	Tokens      float64 // in its local bucket at At (+Inf when unlimited)
	Unspent     int     // leased tokens still valid at At
	SlotWaiters int     // lanes waiting for one of its slots
	Admitted    uint64
	Quotas      []QuotaStats // its quotas' use at At
}

// Dump returns a copy of the state. It takes the lock and walks every
// lane and rule: call it off the hot path.
func (d *Dispatcher) Dump() Dump {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	out := Dump{
		At:         now,
		IdleLanes:  d.mu.idle,
		QueueLanes: d.mu.q.Lanes(),
		Pauses:     len(d.mu.pauses),
		PauseHeap:  len(d.mu.pauseQ),
		Caps:       len(d.mu.caps),
		CapHeap:    len(d.mu.capQ),
		Leased:     d.mu.lease.on,
		Unspent:    d.mu.lease.pool.unspent(now),
		Quotas:     quotaStats(d.mu.quotas, now),
	}
	out.Lanes = make([]LaneDump, 0, len(d.mu.lanes))
	for _, l := range d.mu.lanes {
		ld := LaneDump{Kind: l.key.kind, Dest: l.key.dest, Free: l.key.free, Waiting: l.q.Len(), Idle: l.idle}
		if l.rule != nil {
			ld.Rule = l.rule.limit.Match.String()
		}
		if !l.idle {
			switch l.state {
			case laneReady:
				ld.State = "ready"
			case laneSleeping:
				ld.State, ld.WakeAt = "sleeping", l.wakeAt
			case laneSlotWait:
				ld.State = "slot-wait"
			}
		}
		out.Lanes = append(out.Lanes, ld)
	}
	sort.Slice(out.Lanes, func(i, j int) bool {
		a, b := out.Lanes[i], out.Lanes[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Dest != b.Dest {
			return a.Dest < b.Dest
		}
		return !a.Free && b.Free
	})
	for _, r := range d.mu.rules {
		out.Rules = append(out.Rules, RuleDump{
			Limit:       r.limit,
			InFlight:    r.slots.InUse(),
			Tokens:      r.bucket.Tokens(now),
			Unspent:     r.lease.unspent(now),
			SlotWaiters: len(r.slotWaiters),
			Admitted:    r.admitted,
			Quotas:      quotaStats(r.quotas, now),
		})
	}
	return out
}

// Lane returns the dumped lane of kind k to dest (not free), if kept.
func (dm Dump) Lane(k Kind, dest string) (LaneDump, bool) {
	for _, l := range dm.Lanes {
		if l.Kind == k && l.Dest == dest && !l.Free {
			return l, true
		}
	}
	return LaneDump{}, false
}
