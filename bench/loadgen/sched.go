package loadgen

import (
	"math"
	"time"
)

// Schedule is a fixed-rate arrival schedule: arrival i (from 0) is due at
// Start + i/Rate, for arrivals due before Start + Duration. The zero value
// has no arrivals. Its methods are pure functions of their arguments, so the
// pacing arithmetic is tested without a clock.
type Schedule struct {
	Start    time.Time
	Rate     float64 // arrivals per second; <= 0 means none
	Duration time.Duration
}

// Total is the number of arrivals in the whole schedule: those due at
// Start + i/Rate < Start + Duration.
func (s Schedule) Total() int64 {
	if s.Rate <= 0 || s.Duration <= 0 {
		return 0
	}
	n := int64(math.Ceil(s.Duration.Seconds() * s.Rate))
	// Guard against floating-point rounding at the boundary.
	for n > 0 && !s.At(n-1).Before(s.Start.Add(s.Duration)) {
		n--
	}
	return n
}

// At is the time arrival i is due.
func (s Schedule) At(i int64) time.Time {
	return s.Start.Add(time.Duration(float64(i) / s.Rate * float64(time.Second)))
}

// Due is the number of arrivals due at or before now (arrivals 0 … Due-1),
// at most Total.
func (s Schedule) Due(now time.Time) int64 {
	if s.Rate <= 0 || now.Before(s.Start) {
		return 0
	}
	n := int64(math.Floor(now.Sub(s.Start).Seconds()*s.Rate)) + 1
	// Floating point may be one off either way at an exact boundary.
	for n > 0 && s.At(n-1).After(now) {
		n--
	}
	for !s.At(n).After(now) {
		n++
	}
	return min(n, s.Total())
}

// pacer walks several schedules at once and says which arrivals are due.
// It is driven by the caller's clock: step(now) returns the arrivals that
// became due since the last step, in schedule order per class, and the
// time the next one is due.
type pacer struct {
	sched []Schedule
	next  []int64 // next arrival index per schedule
}

func newPacer(sched []Schedule) *pacer {
	return &pacer{sched: sched, next: make([]int64, len(sched))}
}

// arrival is one due request: its class and the time it was due.
type arrival struct {
	class int
	due   time.Time
}

// step appends the arrivals due at or before now to out and returns it,
// with the time the earliest remaining arrival is due (ok false when every
// schedule is done).
func (p *pacer) step(now time.Time, out []arrival) ([]arrival, time.Time, bool) {
	var next time.Time
	ok := false
	for c, s := range p.sched {
		due := s.Due(now)
		for ; p.next[c] < due; p.next[c]++ {
			out = append(out, arrival{class: c, due: s.At(p.next[c])})
		}
		if p.next[c] < s.Total() {
			t := s.At(p.next[c])
			if !ok || t.Before(next) {
				next, ok = t, true
			}
		}
	}
	return out, next, ok
}
