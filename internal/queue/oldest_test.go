package queue

import (
	"testing"
	"time"
)

// TestOldestByLevel: per level, the item that entered first; nil for an
// empty level; removals and re-entries (a retry keeps its arrival but
// enters anew) are followed.
func TestOldestByLevel(t *testing.T) {
	q := New(0, t0)
	l := q.NewLane()
	if got := q.OldestByLevel(); got != [Levels]*Item{} {
		t.Fatalf("empty queue: %v", got)
	}
	a3, b5, c3, d0 := item("a3", 3, 0), item("b5", 5, 1), item("c3", 3, 2), item("d0", 0, 3)
	pushAll(t, q, l, a3, b5, c3, d0)
	check := func(step string, want map[int]string) {
		t.Helper()
		got := q.OldestByLevel()
		for u := range Levels {
			name := ""
			if got[u] != nil {
				name = got[u].Value.(string)
			}
			if name != want[u] {
				t.Errorf("%s: level %d: oldest %q, want %q", step, u, name, want[u])
			}
		}
	}
	check("pushed", map[int]string{0: "d0", 3: "a3", 5: "b5"})
	q.Remove(a3)
	check("a3 removed", map[int]string{0: "d0", 3: "c3", 5: "b5"})
	// A retry: first arrival kept, entered now.
	e3 := &Item{Urgency: 3, Arrival: t0, Enqueued: t0.Add(time.Minute), Value: "e3"}
	pushAll(t, q, l, e3)
	check("e3 re-entered", map[int]string{0: "d0", 3: "c3", 5: "b5"})
	q.Remove(c3)
	check("c3 removed", map[int]string{0: "d0", 3: "e3", 5: "b5"})
	if got := q.Pop(l); got != d0 {
		t.Fatalf("pop: %v", got.Value)
	}
	check("d0 popped", map[int]string{3: "e3", 5: "b5"})
}

// BenchmarkOldestByLevel: the worst case, one urgent item behind 10,000
// older ones (the default queue_size), as one stats snapshot pays it.
func BenchmarkOldestByLevel(b *testing.B) {
	q := New(0, t0)
	l := q.NewLane()
	for i := range 10000 {
		if _, err := q.Push(l, item("x", 5, time.Duration(i)), 1<<30); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := q.Push(l, item("urgent", 0, time.Hour), 1<<30); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if q.OldestByLevel()[0] == nil {
			b.Fatal("urgent item not found")
		}
	}
}
