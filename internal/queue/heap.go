package queue

// entry is a heap slot: the sort key is stored inline so that sifting
// compares without touching the items (at 100k waiting items, following
// each pointer is a cache miss; see BenchmarkPushPop).
type entry struct {
	k1 int64  // rank, or deadline in ns since the queue's epoch
	k2 uint64 // the tiebreak among equals: the item's order (see Item.order)
	k3 uint64 // then its sequence number (with fairness, clients' equal tags)
	it *Item
}

// itemHeap is a binary heap of items that records each item's position in
// the field that pos selects, so that any item can be removed in O(log n).
// One implementation serves the three orders a Queue keeps: lanes
// (ascending), eviction (descending) and deadlines (ascending). It is
// written out rather than built on container/heap, whose interface calls
// and any conversions cost more than the sift itself.
type itemHeap struct {
	items []entry
	desc  bool // max-heap
	pos   func(it *Item) *int
}

func (h *itemHeap) before(a, b *entry) bool {
	if h.desc {
		a, b = b, a
	}
	if a.k1 != b.k1 {
		return a.k1 < b.k1
	}
	if a.k2 != b.k2 {
		return a.k2 < b.k2
	}
	return a.k3 < b.k3
}

func (h *itemHeap) top() *Item {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0].it
}

func (h *itemHeap) push(it *Item, k1 int64) {
	*h.pos(it) = len(h.items)
	h.items = append(h.items, entry{k1: k1, k2: it.order, k3: it.seq, it: it})
	h.up(len(h.items) - 1)
}

func (h *itemHeap) swap(i, j int) {
	s := h.items
	s[i], s[j] = s[j], s[i]
	*h.pos(s[i].it) = i
	*h.pos(s[j].it) = j
}

func (h *itemHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.before(&h.items[j], &h.items[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *itemHeap) down(i int) bool {
	n := len(h.items)
	i0 := i
	for {
		c := 2*i + 1
		if c >= n || c < 0 {
			break
		}
		if r := c + 1; r < n && h.before(&h.items[r], &h.items[c]) {
			c = r
		}
		if !h.before(&h.items[c], &h.items[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > i0
}

// remove takes out the item at index i.
func (h *itemHeap) remove(i int) {
	n := len(h.items) - 1
	if i != n {
		h.swap(i, n)
	}
	*h.pos(h.items[n].it) = -1
	h.items[n] = entry{}
	h.items = h.items[:n]
	if i < n && !h.down(i) {
		h.up(i)
	}
}

// rekey sets every entry's keys from its item (k1 from key) and restores
// the heap order.
func (h *itemHeap) rekey(key func(*Item) int64) {
	for i := range h.items {
		it := h.items[i].it
		h.items[i].k1, h.items[i].k2, h.items[i].k3 = key(it), it.order, it.seq
	}
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// less orders by (rank, order, seq): true when a leaves before b.
func less(a, b *Item) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	if a.order != b.order {
		return a.order < b.order
	}
	return a.seq < b.seq
}

// moreUrgent reports whether a is strictly more urgent than b: a lower
// rank; the sequence number (FIFO among equals) does not count.
func moreUrgent(a, b *Item) bool { return a.rank < b.rank }

func dlLess(a, b *Item) bool {
	if !a.Deadline.Equal(b.Deadline) {
		return a.Deadline.Before(b.Deadline)
	}
	return a.seq < b.seq
}

func lanePos(it *Item) *int { return &it.laneIdx }
func maxPos(it *Item) *int  { return &it.maxIdx }
func dlPos(it *Item) *int   { return &it.dlIdx }
