package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name        string
		live, roots uint64
		floor       uint64
		base, want  int
	}{
		{"small heap gets the floor", 4 * mib, 0, 64 * mib, 100, 1500},
		{"rounds up, so the goal is at least the floor", 6 * mib, 0, 64 * mib, 100, 967},
		{"roots count towards the goal", 8 * mib, 2 * mib, 64 * mib, 100, 560},
		{"a heap below the runtime's minimum gets the minimum's scale", 1 * mib, 0, 64 * mib, 100, 1600},
		{"heap at the floor keeps the base", 64 * mib, 0, 64 * mib, 100, 100},
		{"heap above the floor keeps the base", 500 * mib, 0, 64 * mib, 100, 100},
		{"never below the base", 40 * mib, 0, 64 * mib, 100, 100},
		{"a larger base stays", 50 * mib, 0, 64 * mib, 200, 200},
		{"no reading yet keeps the base", 0, 0, 64 * mib, 100, 100},
		{"a huge floor is capped", 1, 0, 1 << 40, 100, maxPercent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percent(tc.live, tc.roots, tc.floor, tc.base); got != tc.want {
				t.Errorf("Percent(%d, %d, %d, %d) = %d, want %d", tc.live, tc.roots, tc.floor, tc.base, got, tc.want)
			}
		})
	}
}

// keepGOGC restores the test binary's GOGC.
func keepGOGC(t *testing.T) int {
	base := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(base) })
	debug.SetGCPercent(base)
	return base
}

// nextTune runs GC cycles until the tuner reports, and returns its GOGC.
func nextTune(t *testing.T, ch <-chan int) int {
	t.Helper()
	deadline := time.After(30 * time.Second) // a failure bound, not a timing check
	for {
		runtime.GC()
		select {
		case p := <-ch:
			return p
		case <-deadline:
			t.Fatal("no GC cycle reached the tuner")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestFloorRaisesGOGCForASmallHeapAndStopRestoresIt(t *testing.T) {
	base := keepGOGC(t)
	ch := make(chan int, 100)
	tu := start(1<<40, func(p int) { ch <- p }) // a floor far above this test's heap
	p := nextTune(t, ch)
	if p <= base {
		t.Fatalf("GOGC after a cycle = %d, want above the base %d", p, base)
	}
	if got := currentPercent(); got != p {
		t.Errorf("GOGC in force = %d, the tuner reported %d", got, p)
	}
	tu.Stop()
	if got := currentPercent(); got != base {
		t.Errorf("GOGC after Stop = %d, want %d", got, base)
	}
	// Stopped: later cycles no longer tune.
	for range 3 {
		runtime.GC()
	}
	if got := currentPercent(); got != base {
		t.Errorf("GOGC after Stop and more cycles = %d, want %d", got, base)
	}
	tu.Stop() // twice is harmless
}

func TestFloorBelowTheLiveHeapKeepsTheBase(t *testing.T) {
	base := keepGOGC(t)
	ch := make(chan int, 100)
	tu := start(1, func(p int) { ch <- p })
	defer tu.Stop()
	for range 3 { // a few cycles: each re-arms the hook
		if p := nextTune(t, ch); p != base {
			t.Fatalf("GOGC = %d with a 1-byte floor, want the base %d", p, base)
		}
	}
}

func TestFloorLeavesGOGCOffAlone(t *testing.T) {
	keepGOGC(t)
	debug.SetGCPercent(-1)
	ch := make(chan int, 100)
	tu := start(1<<40, func(p int) { ch <- p })
	defer tu.Stop()
	debug.SetGCPercent(100) // let a cycle run, to show the tuner stays out
	runtime.GC()
	runtime.GC()
	select {
	case p := <-ch:
		t.Fatalf("the tuner set GOGC %d although GOGC was off when it started", p)
	default:
	}
}

func TestFloorGivesGOGCBackAsTheHeapGrows(t *testing.T) {
	base := keepGOGC(t)
	ch := make(chan int, 100)
	tu := start(32<<20, func(p int) { ch <- p })
	defer tu.Stop()
	if p := nextTune(t, ch); p <= base {
		t.Fatalf("GOGC with a small heap = %d, want above %d", p, base)
	}
	big := make([]byte, 96<<20) // live across the next cycles: the heap is now past the floor
	for len(ch) > 0 {
		<-ch
	}
	p := nextTune(t, ch)
	if p != base {
		// The first cycle may have begun before big was live.
		p = nextTune(t, ch)
	}
	runtime.KeepAlive(big)
	if p != base {
		t.Fatalf("GOGC with a live heap past the floor = %d, want the base %d", p, base)
	}
}
