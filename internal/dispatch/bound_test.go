package dispatch

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestManyDestinationsBounded: a client sending a million distinct host
// names, each of which answers with a long back-pressure pause, leaves the
// dispatcher's per-destination state bounded: at most maxIdleLanes empty
// lanes (plus the ones with waiting requests), maxPauses pauses (the ones
// that end last), and a pause heap within twice that.
func TestManyDestinationsBounded(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000 // the race detector makes each step ~10× slower; the bound is the same
	}
	h := newHostsHarness(t, unlimited())
	d := h.d
	check := func(i int) {
		t.Helper()
		dm := d.Dump()
		if len(dm.Lanes) > maxIdleLanes+1 || dm.QueueLanes > maxIdleLanes+1 {
			t.Fatalf("after %d destinations: %d lanes, %d queue lanes (bound %d)", i, len(dm.Lanes), dm.QueueLanes, maxIdleLanes+1)
		}
		if dm.Pauses > maxPauses || dm.PauseHeap > 2*maxPauses+65 {
			t.Fatalf("after %d destinations: %d pauses, %d pause heap entries (bound %d)", i, dm.Pauses, dm.PauseHeap, maxPauses)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	base := h.clk.Now().Add(time.Hour)
	for i := range n {
		dest := fmt.Sprintf("h%d.example:443", i)
		tk, err := d.Enqueue(Request{Dest: dest})
		if err != nil {
			t.Fatal(err)
		}
		p, err := tk.Poll()
		if err != nil {
			t.Fatalf("request %d not admitted: %v", i, err)
		}
		// Its upstream asks for a pause; later destinations' pauses end later.
		d.Pause(dest, base.Add(time.Duration(i)*time.Millisecond))
		if i%7 == 0 {
			d.Pause(dest, base.Add(time.Duration(i)*time.Millisecond+time.Second)) // extended: a stale heap entry
		}
		p.Release()
		if i%50_000 == 0 {
			check(i)
		}
	}
	check(n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%d destinations: heap %+.1f MB (state kept: lanes ≤ %d, pauses ≤ %d)", n, (float64(after.HeapAlloc)-float64(before.HeapAlloc))/1e6, maxIdleLanes, maxPauses)

	// The pauses kept are the ones that end last: the newest destination
	// is still paused, the first one forgotten.
	s := d.Stats()
	if len(s.Paused) != maxPauses {
		t.Fatalf("%d paused destinations, want %d", len(s.Paused), maxPauses)
	}
	last := fmt.Sprintf("h%d.example:443", n-1)
	kept := map[string]bool{}
	for _, p := range s.Paused {
		kept[p.Dest] = true
	}
	if !kept[last] || kept["h0.example:443"] {
		t.Errorf("kept the newest pause %v and the soonest-ending one %v; want the newest only", kept[last], kept["h0.example:443"])
	}
	// Still correct: a new request to a paused destination waits; to a
	// forgotten one, it goes.
	tk, _ := d.Enqueue(Request{Dest: last})
	if _, err := tk.Poll(); !errors.Is(err, ErrPending) {
		t.Errorf("request to a kept paused destination: %v, want to wait", err)
	}
	tk.Cancel()
	tk, _ = d.Enqueue(Request{Dest: "h0.example:443"})
	if p, err := tk.Poll(); err != nil {
		t.Errorf("request to a forgotten pause: %v, want admitted", err)
	} else {
		p.Release()
	}
}
