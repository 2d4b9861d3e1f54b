package queue

import (
	"errors"
	"time"
)

// Levels is the number of urgency levels (0 … 7).
const Levels = 8

// ErrFull is returned by Push when the queue is at capacity and the new
// item is not more urgent than the least urgent waiting one.
var ErrFull = errors.New("queue full")

// Item is one waiting request. The caller fills the exported fields before
// Push and must not change them while the item is queued.
type Item struct {
	// Urgency is 0 (most urgent) … 7; values outside are clamped.
	Urgency int
	// Arrival is when the request first arrived; with the sequence number
	// it orders the item among equals, and aging counts from it. A retry
	// keeps its first arrival.
	Arrival time.Time
	// Enqueued is when this item entered the queue (zero: Arrival); max
	// wait counts from it, and Oldest is the earliest.
	Enqueued time.Time
	// Deadline, when not zero, is the caller's own limit on waiting.
	Deadline time.Time
	// Value is the owner's payload.
	Value any
	// Client names who sent it ("" is no one in particular): the queue
	// counts each client's waiting items (ClientLen) and, with fairness,
	// lets clients take turns among equals.
	Client string

	seq uint64
	// order is the first tiebreak among equal ranks: the sequence number,
	// or with fairness the item's virtual tag (see SetFairness).
	order   uint64
	rank    int64
	lane    *Lane
	laneIdx int
	maxIdx  int
	dlIdx   int
	byTime  link // in the queue-wide list, by entry into the queue
	byLevel link // in its urgency level's list (strict priority)
}

// Queued reports whether the item is waiting in a queue.
func (it *Item) Queued() bool { return it.lane != nil }

// Seq is the item's arrival sequence number, assigned by Push unless
// the caller preset it with SetSeq.
func (it *Item) Seq() uint64 { return it.seq }

// Lane is one heap of a Queue. Create lanes with Queue.NewLane.
type Lane struct {
	q *Queue
	h itemHeap
}

// Len is the number of items waiting in the lane.
func (l *Lane) Len() int { return len(l.h.items) }

// Peek returns the lane's first item, or nil.
func (l *Lane) Peek() *Item { return l.h.top() }

// Queue is a set of lanes with a shared bound. Its zero value is not
// usable; call New.
type Queue struct {
	aging time.Duration
	epoch time.Time
	seq   uint64
	lanes map[*Lane]struct{}
	max   itemHeap // eviction order when aging > 0
	dl    itemHeap
	// With strict priority (aging 0) the eviction victim is the newest item
	// of the least urgent non-empty level: one list per level, in sequence
	// order, makes that O(1) instead of a heap's O(log n).
	lv      [Levels]itemList
	entered itemList // every item, in the order it entered the queue
	n       int
	byLevel [Levels]int

	// Fairness among clients (SetFairness): clients holds each client with
	// waiting items; vt is each level's virtual time, the tag of the last
	// item popped at that level.
	fair    bool
	clients map[string]*clientState
	vt      [Levels]uint64
}

// clientState is one client's waiting items and, per level, the tag of its
// last item.
type clientState struct {
	waiting int
	last    [Levels]uint64
}

// New returns an empty queue. aging is the anti-starvation interval (0 =
// strict priority); epoch is any time not long before the first arrival,
// used to keep ranks small.
func New(aging time.Duration, epoch time.Time) *Queue {
	return &Queue{
		aging:   aging,
		epoch:   epoch,
		lanes:   make(map[*Lane]struct{}),
		max:     itemHeap{desc: true, pos: maxPos},
		dl:      itemHeap{pos: dlPos},
		clients: make(map[string]*clientState),
	}
}

// ClientLen is the number of items of client waiting.
func (q *Queue) ClientLen(client string) int {
	if cs := q.clients[client]; cs != nil {
		return cs.waiting
	}
	return 0
}

// Clients is the number of clients with waiting items.
func (q *Queue) Clients() int { return len(q.clients) }

// Fair reports whether clients take turns among equals.
func (q *Queue) Fair() bool { return q.fair }

// SetFairness turns fairness among clients on or off and re-orders every
// waiting item (O(n log n)).
//
// With fairness on, items of equal rank leave by virtual tag rather than
// arrival (start-time fair queuing): a client's item at urgency u gets the
// tag max(its previous tag at u, the level's virtual time) + 1, where the
// virtual time is the tag of the last item popped at u. Two clients that
// both keep a backlog at u thus get tags that interleave and are admitted
// in turn, whatever their arrival rates; a client that had no backlog
// starts at the level's virtual time, with no credit saved up while it was
// idle, so it takes nothing from the others. Equal tags leave by sequence.
func (q *Queue) SetFairness(on bool) {
	if on == q.fair {
		return
	}
	q.fair = on
	q.vt = [Levels]uint64{}
	for _, cs := range q.clients {
		cs.last = [Levels]uint64{}
	}
	for it := q.entered.head; it != nil; it = it.byTime.next {
		q.assignOrder(it)
	}
	rank := func(it *Item) int64 { return it.rank }
	for l := range q.lanes {
		l.h.rekey(rank)
	}
	q.max.rekey(rank)
	q.dl.rekey(func(it *Item) int64 { return int64(it.Deadline.Sub(q.epoch)) })
}

// assignOrder sets it.order: its sequence number, or with fairness its
// client's next tag at its level.
func (q *Queue) assignOrder(it *Item) {
	if !q.fair {
		it.order = it.seq
		return
	}
	u := it.Urgency
	tag := q.vt[u] + 1
	cs := q.clients[it.Client]
	if cs != nil && cs.last[u] >= tag {
		tag = cs.last[u] + 1
	}
	if cs != nil {
		cs.last[u] = tag
	}
	it.order = tag
}

// NewLane adds an empty lane.
func (q *Queue) NewLane() *Lane {
	l := &Lane{q: q, h: itemHeap{pos: lanePos}}
	q.lanes[l] = struct{}{}
	return l
}

// DropLane forgets an empty lane. It reports false (and does nothing) when
// the lane still has items.
func (q *Queue) DropLane(l *Lane) bool {
	if l.Len() > 0 {
		return false
	}
	delete(q.lanes, l)
	return true
}

// Lanes is the number of lanes the queue knows (created and not dropped).
func (q *Queue) Lanes() int { return len(q.lanes) }

// Len is the number of waiting items in all lanes.
func (q *Queue) Len() int { return q.n }

// Count is the number of waiting items of the given urgency.
func (q *Queue) Count(urgency int) int { return q.byLevel[clamp(urgency)] }

// CountUpTo is the number of waiting items at least as urgent as urgency.
func (q *Queue) CountUpTo(urgency int) int {
	n := 0
	for u := 0; u <= clamp(urgency); u++ {
		n += q.byLevel[u]
	}
	return n
}

// Oldest returns the item that entered the queue first, or nil.
func (q *Queue) Oldest() *Item { return q.entered.head }

// NextDeadline returns the item with the earliest own Deadline, or nil.
func (q *Queue) NextDeadline() *Item { return q.dl.top() }

// Aging returns the aging interval.
func (q *Queue) Aging() time.Duration { return q.aging }

// SetAging changes the aging interval and re-ranks every waiting item
// (O(n)). Items keep their arrival sequence.
func (q *Queue) SetAging(a time.Duration) {
	if a == q.aging {
		return
	}
	wasAging := q.aging > 0
	q.aging = a
	for it := q.entered.head; it != nil; it = it.byTime.next {
		it.rank = q.rankOf(it)
	}
	rank := func(it *Item) int64 { return it.rank }
	for l := range q.lanes {
		l.h.rekey(rank)
	}
	switch {
	case wasAging && a > 0:
		q.max.rekey(rank)
	default: // the eviction index changes kind: rebuild it
		q.max.items = q.max.items[:0]
		q.lv = [Levels]itemList{}
		for it := q.entered.head; it != nil; it = it.byTime.next {
			it.byLevel = link{}
			q.evictionInsert(it)
		}
	}
}

// evictionInsert adds it to the eviction index of the current mode.
func (q *Queue) evictionInsert(it *Item) {
	if q.aging > 0 {
		q.max.push(it, it.rank)
		return
	}
	q.lv[it.Urgency].insert(it, levelLink, func(p *Item) bool { return p.seq > it.seq })
}

// evictionRemove takes it out of the eviction index.
func (q *Queue) evictionRemove(it *Item) {
	if q.aging > 0 {
		q.max.remove(it.maxIdx)
		return
	}
	q.lv[it.Urgency].remove(it, levelLink)
}

// SetSeq presets an item's sequence number, for an item that re-enters the
// queue (a retry) and keeps its place among equals. Without it, Push
// assigns the next number.
func (it *Item) SetSeq(s uint64) { it.seq = s }

// Push adds it to lane l. When the queue already holds capacity items or
// more, it evicts the least urgent waiting item (the newest among equals)
// if it is strictly more urgent than that one, and returns the evicted
// item; otherwise it returns ErrFull and adds nothing.
func (q *Queue) Push(l *Lane, it *Item, capacity int) (evicted *Item, err error) {
	if it.lane != nil {
		panic("queue: item pushed twice")
	}
	it.Urgency = clamp(it.Urgency)
	if it.Enqueued.IsZero() {
		it.Enqueued = it.Arrival
	}
	if it.seq == 0 {
		q.seq++
		it.seq = q.seq
	} else if it.seq > q.seq {
		q.seq = it.seq
	}
	it.rank = q.rankOf(it)
	if q.n >= capacity {
		// Only a strictly more urgent item evicts (docs/configuration.md,
		// "Global limits", limits.queue_size): by rank alone, for a retry
		// re-enters with its old sequence number and would otherwise push
		// out an equal that came after it.
		victim := q.Last()
		if victim == nil || !moreUrgent(it, victim) {
			return nil, ErrFull
		}
		q.Remove(victim)
		evicted = victim
	}
	cs := q.clients[it.Client]
	if cs == nil {
		cs = &clientState{}
		q.clients[it.Client] = cs
	}
	cs.waiting++
	q.assignOrder(it)
	q.insert(l, it)
	return evicted, nil
}

// Last returns the least urgent waiting item (the newest among equals): the
// one Push would evict.
func (q *Queue) Last() *Item {
	if q.aging > 0 {
		return q.max.top()
	}
	for u := Levels - 1; u >= 0; u-- {
		if t := q.lv[u].tail; t != nil {
			return t
		}
	}
	return nil
}

// Pop removes and returns lane l's first item, or nil.
func (q *Queue) Pop(l *Lane) *Item {
	it := l.Peek()
	if it != nil {
		q.Remove(it)
		if q.fair && it.order > q.vt[it.Urgency] {
			q.vt[it.Urgency] = it.order // the level's virtual time
		}
	}
	return it
}

// Remove takes it out of the queue. It reports false when it was not
// queued.
func (q *Queue) Remove(it *Item) bool {
	l := it.lane
	if l == nil || l.q != q {
		return false
	}
	l.h.remove(it.laneIdx)
	q.evictionRemove(it)
	if it.dlIdx >= 0 {
		q.dl.remove(it.dlIdx)
	}
	q.entered.remove(it, timeLink)
	it.lane = nil
	q.n--
	q.byLevel[it.Urgency]--
	if cs := q.clients[it.Client]; cs != nil {
		// A client with nothing waiting is forgotten: its next item starts
		// at the level's virtual time anyway. The map stays as small as the
		// set of clients with waiting items.
		if cs.waiting--; cs.waiting <= 0 {
			delete(q.clients, it.Client)
		}
	}
	return true
}

func (q *Queue) insert(l *Lane, it *Item) {
	it.lane = l
	l.h.push(it, it.rank)
	q.evictionInsert(it)
	it.dlIdx = -1
	if !it.Deadline.IsZero() {
		q.dl.push(it, int64(it.Deadline.Sub(q.epoch)))
	}

	// Enqueue-time list: almost always an append; an item whose Enqueued
	// is earlier than the tail's (a caller-set time) walks back to its place.
	q.entered.insert(it, timeLink, func(p *Item) bool { return enqueuedAfter(p, it) })
	q.n++
	q.byLevel[it.Urgency]++
}

func (q *Queue) rankOf(it *Item) int64 {
	if q.aging <= 0 {
		return int64(it.Urgency)
	}
	return int64(it.Arrival.Sub(q.epoch)) + int64(it.Urgency)*int64(q.aging)
}

func enqueuedAfter(a, b *Item) bool {
	if !a.Enqueued.Equal(b.Enqueued) {
		return a.Enqueued.After(b.Enqueued)
	}
	return a.seq > b.seq
}

func clamp(u int) int {
	if u < 0 {
		return 0
	}
	if u >= Levels {
		return Levels - 1
	}
	return u
}

// Before reports whether a leaves before b when both wait (they may be in
// different lanes): the order by (rank, seq) that every lane uses.
func Before(a, b *Item) bool { return less(a, b) }

// link is an item's place in one of the intrusive lists.
type link struct{ prev, next *Item }

func timeLink(it *Item) *link  { return &it.byTime }
func levelLink(it *Item) *link { return &it.byLevel }

// itemList is an intrusive doubly linked list over the links sel selects.
type itemList struct{ head, tail *Item }

// insert puts it after the last item p for which after(p) is false,
// walking back from the tail (almost always an append).
func (l *itemList) insert(it *Item, sel func(*Item) *link, after func(p *Item) bool) {
	p := l.tail
	for p != nil && after(p) {
		p = sel(p).prev
	}
	li := sel(it)
	li.prev = p
	if p == nil {
		li.next = l.head
		l.head = it
	} else {
		li.next = sel(p).next
		sel(p).next = it
	}
	if li.next != nil {
		sel(li.next).prev = it
	} else {
		l.tail = it
	}
}

// remove unlinks it.
func (l *itemList) remove(it *Item, sel func(*Item) *link) {
	li := sel(it)
	if li.prev != nil {
		sel(li.prev).next = li.next
	} else {
		l.head = li.next
	}
	if li.next != nil {
		sel(li.next).prev = li.prev
	} else {
		l.tail = li.prev
	}
	*li = link{}
}
