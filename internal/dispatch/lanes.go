package dispatch

import (
	"time"

	"github.com/proxyd/proxyd/internal/queue"
)

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
	// tokenWait: asleep for its rule's tokens (in rule.tokenWaiters too).
	tokenWait bool
	idle      bool // empty; kept for reuse until swept
	// pausedUntil caches the destination's pause (Dispatcher.Pause keeps
	// it current), so that the pick needs no map lookup.
	pausedUntil time.Time
	// cap is its destination's provider cap in requests (caps.go), kept
	// current by Cap; nil for tunnels and free lanes, or without one.
	cap *provCap
	// tcap is its destination's provider cap in tokens, the same way
	// (cost.go).
	tcap *provCap
	// costs and unpriced are its waiting requests' Request.Cost sum and
	// how many have none (quotalease.go: a Demand in tokens).
	costs    int64
	unpriced int
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
