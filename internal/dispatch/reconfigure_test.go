package dispatch

import (
	"testing"
	"time"
)

// The local share (a store outage: redis.on_error local) is a factor of
// limits.rate that every later limit change keeps: a change that does
// not touch the rate (concurrency) leaves the share's rate, a new rate is
// shared too, and share 1 brings the full rate back.
func TestLocalShareKeptAcrossLimitChanges(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst = 10, 1
	h := newHarness(t, l, 0)
	rate := func(want float64) {
		t.Helper()
		if s := h.d.Stats(); s.Limits.Rate != want {
			t.Fatalf("Stats().Limits.Rate %v, want %v (share %v)", s.Limits.Rate, want, s.LocalShare)
		}
	}
	h.d.SetLocalShare(0.5)
	rate(5)
	l.Concurrency = 32 // PATCH {"concurrency":32}
	h.d.SetLimits(l)
	rate(5)
	if got := h.d.Limits(); got.Rate != 10 {
		t.Fatalf("Limits().Rate %v: the configured rate must not change", got.Rate)
	}
	h.add("a", 3)
	h.add("b", 3)
	h.granted("a") // the burst
	h.clk.Advance(100 * time.Millisecond)
	h.granted("a") // at 10/s b would go now; at 5/s it waits 200ms
	h.clk.Advance(100 * time.Millisecond)
	h.granted("a", "b")
	h.d.Reconfigure(Config{Limits: l})
	rate(5)
	l.Rate = 50
	h.d.SetLimits(l)
	rate(25)
	h.d.SetLocalShare(1)
	rate(50)
}

// Reconfigure applies every setting before it admits anyone: a reload
// that adds a slot and turns aging on admits the request that aging puts
// first, where setting the limits first would have admitted the other.
func TestReconfigureOneStep(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.add("held", 0)
	h.add("old", 6)
	h.clk.Advance(10 * time.Second)
	h.add("new", 1)
	h.granted("held")
	l.Concurrency = 2
	h.d.Reconfigure(Config{Limits: l, Aging: time.Second}) // old: 6 - 10 levels
	h.granted("held", "old")
	if s := h.d.Stats(); s.Limits.Concurrency != 2 || s.Aging != time.Second {
		t.Fatalf("stats %+v", s)
	}
}
