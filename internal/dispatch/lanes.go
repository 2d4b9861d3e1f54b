package dispatch

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/limiter"
	"github.com/proxyd/proxyd/internal/queue"
)

// HostLimit is a per-destination rule (the config's hosts entries): every
// destination it matches shares its bucket and its cap.
type HostLimit struct {
	Match       config.HostPattern
	Rate        float64 // per second; 0 = unlimited
	Burst       int     // bucket size (>= 1 when Rate > 0)
	Concurrency int     // HTTP requests in flight; 0 = unlimited
}

// rule is a HostLimit's live state.
type rule struct {
	limit  HostLimit
	bucket *limiter.Bucket
	slots  limiter.Slots
	// slotWaiters are lanes whose head waits for one of this rule's slots;
	// a release makes them ready again.
	slotWaiters map[*lane]struct{}
	// admitted counts permits granted under the rule (Stats); guarded by
	// the dispatcher's mu, kept across reloads with the rule.
	admitted uint64
	// lease holds the rule's leased tokens while a shared store serves
	// its bucket (a rule with a rate, leases on: lease.go).
	lease struct {
		tokens  int
		expires time.Time
	}
}

// laneKey names a lane: the kind of slot its requests need and their
// destination.
type laneKey struct {
	kind Kind
	dest string
	// free lanes hold Request.NoToken requests: no rate or rule token, no
	// pause, only their kind's slot.
	free bool
}

// Where a non-empty lane is: exactly one of these.
type laneState uint8

const (
	laneReady    laneState = iota // in ready[kind], ordered by its head
	laneSleeping                  // in the sleep heap until wakeAt (pause, rule token)
	laneSlotWait                  // in rule.slotWaiters
)

// lane is the waiting requests of one destination and kind.
type lane struct {
	key    laneKey
	q      *queue.Lane
	rule   *rule // nil: no per-destination limit
	state  laneState
	idx    int // position in ready[kind] or in the sleep heap
	wakeAt time.Time
	idle   bool // empty; kept for reuse until swept
	// pausedUntil caches the destination's pause (Dispatcher.Pause keeps
	// it current), so that the pick needs no map lookup.
	pausedUntil time.Time
}

// laneHeap orders lanes by their heads (ready) or by wakeAt (sleeping).
type laneHeap struct {
	lanes  []*lane
	byWake bool
}

func (h *laneHeap) before(a, b *lane) bool {
	if h.byWake {
		return a.wakeAt.Before(b.wakeAt)
	}
	return queue.Before(a.q.Peek(), b.q.Peek())
}

func (h *laneHeap) top() *lane {
	if len(h.lanes) == 0 {
		return nil
	}
	return h.lanes[0]
}

func (h *laneHeap) push(l *lane) {
	l.idx = len(h.lanes)
	h.lanes = append(h.lanes, l)
	h.up(l.idx)
}

func (h *laneHeap) swap(i, j int) {
	h.lanes[i], h.lanes[j] = h.lanes[j], h.lanes[i]
	h.lanes[i].idx, h.lanes[j].idx = i, j
}

func (h *laneHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.before(h.lanes[j], h.lanes[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *laneHeap) down(i int) bool {
	n, i0 := len(h.lanes), i
	for {
		c := 2*i + 1
		if c >= n || c < 0 {
			break
		}
		if r := c + 1; r < n && h.before(h.lanes[r], h.lanes[c]) {
			c = r
		}
		if !h.before(h.lanes[c], h.lanes[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > i0
}

// init restores the heap order after the keys changed (SetAging).
func (h *laneHeap) init() {
	for i := len(h.lanes)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *laneHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *laneHeap) remove(i int) {
	n := len(h.lanes) - 1
	if i != n {
		h.swap(i, n)
	}
	h.lanes[n] = nil
	h.lanes = h.lanes[:n]
	if i < n {
		h.fix(i)
	}
}

// pauseEntry is a destination's back-pressure pause, in the pause heap
// so that expired pauses are forgotten (the state stays bounded).
type pauseEntry struct {
	dest  string
	until time.Time
}

// Paused is a destination held back by upstream back-pressure.
type Paused struct {
	Dest  string
	Until time.Time
}

// matchRule returns the first rule matching dest ("host:port"), or nil.
func matchRule(rules []*rule, dest string) *rule {
	if len(rules) == 0 || dest == "" {
		return nil
	}
	host, portStr, err := net.SplitHostPort(dest)
	if err != nil {
		return nil
	}
	port, _ := strconv.Atoi(portStr)
	for _, r := range rules {
		if r.limit.Match.Match(host, port) {
			return r
		}
	}
	return nil
}

// LimitsOf converts the config's limits.* to live limits.
func LimitsOf(l config.Limits) Limits {
	return Limits{
		Rate:        l.Rate,
		Burst:       l.Burst,
		Concurrency: l.Concurrency,
		QueueSize:   l.QueueSize,
		MaxWait:     l.MaxWait,
		MaxTunnels:  l.MaxTunnels,
	}
}

// HostLimitsOf converts validated hosts rules with SPEC §1's defaults: an
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
		out = append(out, h)
	}
	return out, nil
}
