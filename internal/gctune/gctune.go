// Package gctune keeps the Go garbage collector from running every few
// megabytes of allocation while the live heap is small.
//
// The collector starts a cycle when the heap reaches its goal: the live
// heap of the last cycle times 1+GOGC/100, and at least 4 MiB. A proxy's
// live heap is a few megabytes (its connections and waiting requests),
// but it allocates several kilobytes per request, so at 20 000 requests a
// second the default goal is reached 20 times a second, and each cycle's
// fixed cost (waking the mark workers, scanning every goroutine's stack,
// assists) was about a fifth of proxyd's CPU time per request (see
// docs/performance.md). Floor raises GOGC while the live heap is below a
// floor so that the goal stays at the floor, and gives GOGC back as the
// live heap grows past it: a large queue of waiting requests is collected
// as under the default, without a heap five times its size.
//
// The tuning runs once per GC cycle, from a finalizer (the runtime's hook
// for "a cycle has ended"), and costs nothing in between.
package gctune

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultFloor is the heap goal proxyd keeps at least: 64 MiB.
const DefaultFloor = 64 << 20

// maxPercent bounds the GOGC that Floor sets (a live heap of a few
// kilobytes would otherwise ask for an absurd value).
const maxPercent = 100_000

// heapMinimum is the runtime's least heap goal at GOGC=100; it scales
// with GOGC (the goal is never below heapMinimum × GOGC/100).
const heapMinimum = 4 << 20

// Percent is the GOGC that makes the heap goal at least floor, and never
// less than base (the GOGC the process started with), given the live heap
// and the roots (goroutine stacks and globals) of the last cycle. The
// runtime's goal is live + (live + roots) × GOGC/100, and at least
// heapMinimum × GOGC/100: past floor×100/heapMinimum the goal would
// overshoot the floor, so that is as high as it goes.
func Percent(live, roots, floor uint64, base int) int {
	if live == 0 || live >= floor {
		return base
	}
	p := float64(floor-live) / float64(live+roots) * 100
	p = min(p, float64(floor)*100/heapMinimum, maxPercent)
	return max(int(math.Ceil(p)), base)
}

// Tuner is a running Floor.
type Tuner struct {
	floor uint64
	base  int
	// onTune, when set (tests), is called after each adjustment with the
	// GOGC set.
	onTune func(percent int)

	mu      sync.Mutex
	stopped bool
	percent int
	sample  []metrics.Sample
}

// Floor starts keeping the heap goal at least floor bytes, and returns
// the Tuner. Stop it to give the GC back its original GOGC. Floor takes
// the current GOGC as the least it will set; run it only when GOGC is not
// set in the environment, so an operator's GOGC wins.
func Floor(floor uint64) *Tuner {
	return start(floor, nil)
}

func start(floor uint64, onTune func(int)) *Tuner {
	base := currentPercent()
	t := &Tuner{floor: floor, base: base, percent: base, onTune: onTune,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
	if base < 0 {
		// GOGC=off: the collector is not ours to tune.
		t.stopped = true
		return t
	}
	t.arm()
	return t
}

// currentPercent is the GOGC in force (-1: off).
func currentPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		// Not in this runtime: read it by setting it.
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	p := s[0].Value.Uint64()
	if p == 0 {
		return -1 // GOGC=off reads as 0
	}
	return int(p)
}

// arm sets up the hook for the end of the next GC cycle: an unreachable
// object whose finalizer runs once the cycle has swept it.
func (t *Tuner) arm() {
	s := new(sentinel)
	s.t = t
	runtime.SetFinalizer(s, (*sentinel).cycle)
}

// sentinel is the finalized object; it holds the Tuner, not the other way
// round, so the Tuner stays reachable only through the caller.
type sentinel struct{ t *Tuner }

func (s *sentinel) cycle() {
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.sample)
	var v [3]uint64
	for i, s := range t.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	p := Percent(v[0], v[1]+v[2], t.floor, t.base)
	// Setting GOGC takes the heap lock: only when it changes by more than
	// a tenth.
	if diff := p - t.percent; diff*10 > t.percent || -diff*10 > t.percent || (p == t.base && t.percent != t.base) {
		debug.SetGCPercent(p)
		t.percent = p
	}
	if t.onTune != nil {
		t.onTune(t.percent)
	}
	t.arm()
}

// Stop ends the tuning and restores the GOGC Floor started with.
func (t *Tuner) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.stopped = true
	debug.SetGCPercent(t.base)
	t.percent = t.base
}
