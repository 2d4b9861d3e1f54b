package dispatch

import (
	"fmt"
	"testing"
	"time"
)

// When leases go off (redis.on_error: local) the local bucket starts
// empty and holds at most its share of the burst: 100/s, burst 10, share
// 1/4 → 25/s, burst 2. Nothing goes at the switch, then one request per
// 40 ms; after a long idle, at most 2 at once, not 10. Before issue 27
// the bucket was full at the switch (10 at once, every replica) and
// refilled to the full burst.
func TestLocalBucketStartsEmpty(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst = 100, 10
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	h.clk.Advance(time.Second) // the local bucket, unused, is full meanwhile
	h.d.SetLocalShare(0.25)
	h.d.SetLeased(false)
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprint("r", i))
		h.add(names[i], 3)
	}
	h.granted()
	h.clk.Advance(40 * time.Millisecond)
	h.granted(names[:1]...)
	h.clk.Advance(40 * time.Millisecond)
	h.granted(names[:2]...)
	// Idle long enough to fill up: the burst is the share's.
	for _, n := range names[2:] {
		h.tickets[n].Cancel()
		delete(h.tickets, n)
	}
	h.clk.Advance(10 * time.Second)
	for _, n := range names[2:] {
		h.add(n, 3)
	}
	h.granted(names[:4]...)
	if got := localBurst(10, 1.0/3); got != 3 {
		t.Errorf("localBurst(10, 1/3) = %d, want 3", got)
	}
	if got := localBurst(2, 0.25); got != 1 {
		t.Errorf("localBurst(2, 1/4) = %d, want 1 (at least one)", got)
	}
	if got := localBurst(10, 1); got != 10 {
		t.Errorf("localBurst(10, 1) = %d, want 10", got)
	}
}
