package queue

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func item(name string, u int, at time.Duration) *Item {
	return &Item{Urgency: u, Arrival: t0.Add(at), Value: name}
}

func names(q *Queue, l *Lane) []string {
	var out []string
	for it := q.Pop(l); it != nil; it = q.Pop(l) {
		out = append(out, it.Value.(string))
	}
	return out
}

func pushAll(t *testing.T, q *Queue, l *Lane, items ...*Item) {
	t.Helper()
	for _, it := range items {
		if ev, err := q.Push(l, it, 1<<30); err != nil || ev != nil {
			t.Fatalf("push %v: evicted %v, err %v", it.Value, ev, err)
		}
	}
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestOrderUrgencyThenFIFO(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	pushAll(t, q, l,
		item("a5", 5, 0), item("b3", 3, 1), item("c5", 5, 2),
		item("d0", 0, 3), item("e3", 3, 4), item("f7", 7, 5), item("g0", 0, 6))
	equal(t, names(q, l), []string{"d0", "g0", "b3", "e3", "a5", "c5", "f7"})
	if q.Len() != 0 || q.Oldest() != nil || q.Last() != nil {
		t.Fatalf("queue not empty after draining: len %d", q.Len())
	}
}

func TestUrgencyClamped(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	pushAll(t, q, l, item("hi", 99, 0), item("lo", -4, 1))
	if q.Count(7) != 1 || q.Count(0) != 1 {
		t.Fatalf("counts: u0=%d u7=%d", q.Count(0), q.Count(7))
	}
	equal(t, names(q, l), []string{"lo", "hi"})
}

func TestEvictionRule(t *testing.T) {
	steps := []struct {
		name    string
		urgency int
		evicted string // "" = none
		full    bool
	}{
		{"a3", 3, "", false},
		{"b5", 5, "", false},
		{"c5", 5, "", false},
		// Full (capacity 3). Equal urgency to the least urgent: refused.
		{"d5", 5, "", true},
		// Less urgent than everything: refused.
		{"e7", 7, "", true},
		// More urgent: evicts the newest of the least urgent (c5, not b5).
		{"f1", 1, "c5", false},
		{"g4", 4, "b5", false},
		{"h4", 4, "", true},
		{"i0", 0, "g4", false},
	}
	q := New(0, t0)
	l := q.NewLane()
	for i, s := range steps {
		ev, err := q.Push(l, item(s.name, s.urgency, time.Duration(i)), 3)
		if s.full != errors.Is(err, ErrFull) {
			t.Fatalf("step %s: err %v, want full=%v", s.name, err, s.full)
		}
		got := ""
		if ev != nil {
			got = ev.Value.(string)
			if ev.Queued() {
				t.Fatalf("step %s: evicted item still queued", s.name)
			}
		}
		if got != s.evicted {
			t.Fatalf("step %s: evicted %q, want %q", s.name, got, s.evicted)
		}
		if q.Len() > 3 {
			t.Fatalf("step %s: len %d > capacity", s.name, q.Len())
		}
	}
	equal(t, names(q, l), []string{"i0", "f1", "a3"})
}

func TestEvictionAcrossLanes(t *testing.T) {
	q := New(0, t0)
	a, b := q.NewLane(), q.NewLane()
	if _, err := q.Push(a, item("a6", 6, 0), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Push(b, item("b2", 2, 1), 2); err != nil {
		t.Fatal(err)
	}
	ev, err := q.Push(b, item("b1", 1, 2), 2)
	if err != nil || ev == nil || ev.Value != "a6" {
		t.Fatalf("evicted %v, err %v; want a6 from the other lane", ev, err)
	}
	if a.Len() != 0 || b.Len() != 2 {
		t.Fatalf("lane lens %d %d", a.Len(), b.Len())
	}
}

func TestAging(t *testing.T) {
	// Aging of 1s: urgency 5 that waited 2s ranks with a fresh urgency 3;
	// the earlier arrival wins the tie.
	q := New(time.Second, t0)
	l := q.NewLane()
	pushAll(t, q, l,
		item("old5", 5, 0),
		item("new3", 3, 2*time.Second),
		item("mid3", 3, 1500*time.Millisecond),
		item("late0", 0, 10*time.Second), // rank 10s: after old5 (5s) and the 3s
		item("late-7", 7, 0))             // rank 7s
	equal(t, names(q, l), []string{"mid3", "old5", "new3", "late-7", "late0"})
}

func TestSetAgingReranks(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	pushAll(t, q, l, item("old7", 7, 0), item("new0", 0, time.Hour))
	if got := l.Peek().Value; got != "new0" {
		t.Fatalf("strict: head %v", got)
	}
	q.SetAging(time.Minute) // old7 ranks 7m, new0 ranks 60m
	if got := l.Peek().Value; got != "old7" {
		t.Fatalf("aged: head %v", got)
	}
	if got := q.Last().Value; got != "new0" {
		t.Fatalf("aged: eviction victim %v", got)
	}
	q.SetAging(0)
	equal(t, names(q, l), []string{"new0", "old7"})
}

func TestRemoveAndOldest(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	a, b, c := item("a", 3, 0), item("b", 1, 1), item("c", 5, 2)
	pushAll(t, q, l, a, b, c)
	if q.Oldest() != a {
		t.Fatal("oldest should be a")
	}
	if !q.Remove(a) || q.Remove(a) {
		t.Fatal("Remove should succeed once")
	}
	if q.Oldest() != b || q.Count(3) != 0 || q.Len() != 2 {
		t.Fatalf("after remove: oldest %v len %d", q.Oldest().Value, q.Len())
	}
	if !q.Remove(c) || q.Last() != b {
		t.Fatal("remove newest")
	}
	equal(t, names(q, l), []string{"b"})
	if q.Remove(item("never", 0, 0)) {
		t.Fatal("removing an item never queued reported true")
	}
}

func TestDeadlines(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	a := item("a", 3, 0)
	b := item("b", 3, 1)
	b.Deadline = t0.Add(5 * time.Second)
	c := item("c", 3, 2)
	c.Deadline = t0.Add(2 * time.Second)
	pushAll(t, q, l, a, b, c)
	if q.NextDeadline() != c {
		t.Fatal("earliest deadline should be c")
	}
	q.Remove(c)
	if q.NextDeadline() != b {
		t.Fatal("then b")
	}
	q.Pop(l) // a
	q.Pop(l) // b
	if q.NextDeadline() != nil {
		t.Fatal("no deadlines left")
	}
}

func TestReenterKeepsPlace(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	a, b := item("a", 3, 0), item("b", 3, time.Second)
	pushAll(t, q, l, a, b)
	q.Pop(l) // a leaves (e.g. for an attempt that will be retried)
	pushAll(t, q, l, item("c", 3, 2*time.Second))
	// a comes back with its original arrival and sequence number: first
	// among equals, but its max wait counts from now (it is the newest).
	seq := a.Seq()
	a2 := item("a", 3, 0)
	a2.Enqueued = t0.Add(3 * time.Second)
	a2.SetSeq(seq)
	pushAll(t, q, l, a2)
	if q.Oldest().Value != "b" {
		t.Fatal("b should be the oldest in the queue")
	}
	equal(t, names(q, l), []string{"a", "b", "c"})
}

func TestPushTwicePanics(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	it := item("a", 1, 0)
	pushAll(t, q, l, it)
	defer func() {
		if recover() == nil {
			t.Fatal("second push of a queued item did not panic")
		}
	}()
	_, _ = q.Push(l, it, 10)
}

func TestDropLane(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	pushAll(t, q, l, item("a", 1, 0))
	if q.DropLane(l) {
		t.Fatal("dropped a non-empty lane")
	}
	q.Pop(l)
	if !q.DropLane(l) {
		t.Fatal("could not drop an empty lane")
	}
}

// TestRandomAgainstModel checks the heaps against a sorted slice through a
// long random sequence of pushes, pops, removes and evictions.
func TestRandomAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, aging := range []time.Duration{0, 3 * time.Millisecond} {
		q := New(aging, t0)
		lanes := []*Lane{q.NewLane(), q.NewLane(), q.NewLane()}
		var live, left []*Item // left: popped, may come back as a retry
		const capacity = 50
		for step := 0; step < 20000; step++ {
			switch op := rng.Intn(10); {
			case op < 5:
				it := &Item{Urgency: rng.Intn(8), Arrival: t0.Add(time.Duration(step) * time.Millisecond)}
				if len(left) > 0 && rng.Intn(4) == 0 {
					// A retry: it re-enters with an earlier item's arrival
					// and sequence number.
					i := rng.Intn(len(left))
					old := left[i]
					left = append(left[:i], left[i+1:]...) // at most one copy waits
					it.Urgency, it.Arrival = old.Urgency, old.Arrival
					it.Enqueued = t0.Add(time.Duration(step) * time.Millisecond)
					it.SetSeq(old.Seq())
				}
				if rng.Intn(3) == 0 {
					it.Deadline = t0.Add(time.Duration(rng.Intn(100000)) * time.Millisecond)
				}
				wantVictim := q.Last()
				ev, err := q.Push(lanes[rng.Intn(3)], it, capacity)
				if len(live) < capacity {
					if err != nil || ev != nil {
						t.Fatalf("step %d: push below capacity: %v %v", step, ev, err)
					}
					live = append(live, it)
					break
				}
				// Only a strictly more urgent item evicts: rank, not seq.
				if err != nil {
					if it.rank < wantVictim.rank {
						t.Fatalf("step %d: refused a more urgent item", step)
					}
					break
				}
				if it.rank >= wantVictim.rank {
					t.Fatalf("step %d: an item of rank %d evicted one of rank %d", step, it.rank, wantVictim.rank)
				}
				if ev != wantVictim {
					t.Fatalf("step %d: evicted the wrong item", step)
				}
				live = removeItem(live, ev)
				live = append(live, it)
			case op < 8:
				l := lanes[rng.Intn(3)]
				var want *Item
				for _, it := range live {
					if it.lane == l && (want == nil || less(it, want)) {
						want = it
					}
				}
				if got := q.Pop(l); got != want {
					t.Fatalf("step %d: pop got %p want %p", step, got, want)
				}
				if want != nil {
					live = removeItem(live, want)
					left = append(left, want)
				}
			case op == 8 && rng.Intn(50) == 0:
				// Switch between strict priority and aging: the eviction
				// index changes kind and must stay exact.
				if q.Aging() == 0 {
					q.SetAging(3 * time.Millisecond)
				} else {
					q.SetAging(0)
				}
			default:
				if len(live) > 0 {
					it := live[rng.Intn(len(live))]
					q.Remove(it)
					live = removeItem(live, it)
				}
			}
			checkInvariants(t, q, live)
		}
	}
}

func removeItem(s []*Item, it *Item) []*Item {
	for i, x := range s {
		if x == it {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

func checkInvariants(t *testing.T, q *Queue, live []*Item) {
	t.Helper()
	if q.Len() != len(live) {
		t.Fatalf("len %d, model %d", q.Len(), len(live))
	}
	var counts [Levels]int
	var oldest, lastIt, dl *Item
	for _, it := range live {
		counts[it.Urgency]++
		if oldest == nil || enqueuedAfter(oldest, it) {
			oldest = it
		}
		if lastIt == nil || less(lastIt, it) {
			lastIt = it
		}
		if !it.Deadline.IsZero() && (dl == nil || dlLess(it, dl)) {
			dl = it
		}
	}
	for u := range counts {
		if q.Count(u) != counts[u] {
			t.Fatalf("count(%d) = %d, model %d", u, q.Count(u), counts[u])
		}
	}
	if q.Oldest() != oldest || q.Last() != lastIt || q.NextDeadline() != dl {
		t.Fatal("oldest, last or next deadline differs from the model")
	}
	// Arrival list is sorted and complete.
	var list []*Item
	for it := q.Oldest(); it != nil; it = it.byTime.next {
		list = append(list, it)
	}
	if len(list) != len(live) || !sort.SliceIsSorted(list, func(i, j int) bool { return enqueuedAfter(list[j], list[i]) }) {
		t.Fatal("arrival list out of order or incomplete")
	}
}

// TestRetryDoesNotEvictEqualUrgency: a retry re-enters with its old
// sequence number, which sorts before every newer item of its urgency; on a
// full queue it must still not evict one of them (only a strictly more
// urgent request evicts: docs/configuration.md, "Global limits",
// limits.queue_size), with strict priority or aging.
func TestRetryDoesNotEvictEqualUrgency(t *testing.T) {
	for _, aging := range []time.Duration{0, time.Second} {
		q := New(aging, t0)
		l := q.NewLane()
		a := item("a", 3, 0)
		pushAll(t, q, l, a)
		q.Pop(l) // a leaves for an attempt that will be retried
		if _, err := q.Push(l, item("c", 3, 0), 1); err != nil {
			t.Fatal(err)
		}
		retry := item("a-retry", 3, 0) // same arrival: same rank as c
		retry.SetSeq(a.Seq())
		ev, err := q.Push(l, retry, 1)
		if ev != nil || !errors.Is(err, ErrFull) {
			t.Fatalf("aging %v: equal-urgency retry evicted %v (err %v), want ErrFull", aging, ev, err)
		}
		// A strictly more urgent retry still evicts.
		urgent := item("a-retry", 2, 0)
		urgent.SetSeq(a.Seq())
		if ev, err := q.Push(l, urgent, 1); err != nil || ev == nil || ev.Value != "c" {
			t.Fatalf("aging %v: more urgent retry: evicted %v, err %v", aging, ev, err)
		}
	}
}

// With fairness, equal-urgency items of two backlogged clients leave in
// turn, whatever their arrival order; urgency still comes first; a client
// that joins late starts at the level's virtual time; fairness can be
// turned off and on again with items waiting.
func TestFairness(t *testing.T) {
	q := New(0, t0)
	q.SetFairness(true)
	l := q.NewLane()
	push := func(name, client string, u int) {
		t.Helper()
		it := &Item{Urgency: u, Arrival: t0, Client: client, Value: name}
		if _, err := q.Push(l, it, 100); err != nil {
			t.Fatal(err)
		}
	}
	pop := func() string {
		t.Helper()
		it := q.Pop(l)
		if it == nil {
			t.Fatal("empty")
		}
		return it.Value.(string)
	}
	for i := range 6 {
		push(fmt.Sprintf("a%d", i), "a", 3)
	}
	push("b0", "b", 3)
	push("b1", "b", 3)
	push("c0", "c", 1) // more urgent: first whatever the tags
	if q.ClientLen("a") != 6 || q.ClientLen("b") != 2 || q.Clients() != 3 {
		t.Fatalf("client counts a=%d b=%d clients=%d", q.ClientLen("a"), q.ClientLen("b"), q.Clients())
	}
	var got []string
	for range 5 {
		got = append(got, pop())
	}
	if want := "c0 a0 b0 a1 b1"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
	// d joins now: tagged at the level's virtual time + 1, so it goes next
	// after the item tied with it, not after all of a's backlog.
	push("d0", "d", 3)
	got = got[:0]
	for range 3 {
		got = append(got, pop())
	}
	if want := "a2 d0 a3"; strings.Join(got, " ") != want {
		t.Fatalf("order after a late client %v, want %s", got, want)
	}
	if q.ClientLen("b") != 0 || q.ClientLen("d") != 0 || q.Clients() != 1 {
		t.Fatalf("clients with nothing waiting are kept: %d", q.Clients())
	}
	// Off: back to arrival order; on again: tags from scratch.
	push("b2", "b", 3)
	q.SetFairness(false)
	if first := q.Pop(l).Value; first != "a4" {
		t.Fatalf("without fairness %v goes first, want a4 (arrival order)", first)
	}
	q.SetFairness(true)
	// Re-tagged in entry order: a5 and b2 both get tag 1; a5 entered first.
	if got := pop() + " " + pop(); got != "a5 b2" {
		t.Fatalf("order with fairness back on: %s, want a5 b2", got)
	}
	if q.Len() != 0 || q.Clients() != 0 {
		t.Fatalf("len %d clients %d after popping everything", q.Len(), q.Clients())
	}
}
