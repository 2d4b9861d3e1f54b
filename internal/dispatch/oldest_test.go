package dispatch

import (
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/queue"
)

// TestStatsOldestWaitByPriority: per urgency, how long its oldest waiting
// request has waited, on the fake clock; 0 for an urgency with none
// waiting, and a request that leaves takes its wait with it.
func TestStatsOldestWaitByPriority(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.add("run", 3) // admitted: holds the one slot
	h.add("a6", 6)
	h.clk.Advance(2 * time.Second)
	h.add("b1", 1)
	h.clk.Advance(time.Second)
	h.add("c6", 6)
	h.clk.Advance(500 * time.Millisecond)
	want := [queue.Levels]time.Duration{1: 1500 * time.Millisecond, 6: 3500 * time.Millisecond}
	if got := h.d.Stats().OldestWaitByPriority; got != want {
		t.Fatalf("OldestWaitByPriority %v, want %v", got, want)
	}
	h.release("run") // b1 is admitted, a6 and c6 still wait
	h.granted("b1")
	want = [queue.Levels]time.Duration{6: 3500 * time.Millisecond}
	if got := h.d.Stats().OldestWaitByPriority; got != want {
		t.Fatalf("after b1 left: OldestWaitByPriority %v, want %v", got, want)
	}
	h.tickets["a6"].Cancel()
	want = [queue.Levels]time.Duration{6: 500 * time.Millisecond}
	if got := h.d.Stats().OldestWaitByPriority; got != want {
		t.Fatalf("after a6 left: OldestWaitByPriority %v, want %v", got, want)
	}
}
