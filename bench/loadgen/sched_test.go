package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestScheduleArithmetic(t *testing.T) {
	s := Schedule{Start: t0, Rate: 1000, Duration: time.Second}
	if got := s.Total(); got != 1000 {
		t.Fatalf("Total = %d, want 1000", got)
	}
	steps := []struct {
		at   time.Duration
		want int64
	}{
		{-time.Millisecond, 0},
		{0, 1}, // arrival 0 is due at Start
		{999 * time.Microsecond, 1},
		{time.Millisecond, 2},
		{500 * time.Millisecond, 501},
		{999 * time.Millisecond, 1000},
		{time.Second, 1000}, // capped at Total
		{time.Hour, 1000},
	}
	for _, st := range steps {
		if got := s.Due(t0.Add(st.at)); got != st.want {
			t.Errorf("Due(start+%v) = %d, want %d", st.at, got, st.want)
		}
	}
	if got := s.At(250); !got.Equal(t0.Add(250 * time.Millisecond)) {
		t.Errorf("At(250) = start+%v, want start+250ms", got.Sub(t0))
	}
}

func TestScheduleTotals(t *testing.T) {
	tests := []struct {
		rate float64
		dur  time.Duration
		want int64
	}{
		{100, 10 * time.Second, 1000},
		{10000, 10 * time.Second, 100000},
		{3, time.Second, 3},
		{0.5, 3 * time.Second, 2}, // at 0s and 2s
		{7, 0, 0},
		{0, time.Second, 0},
		{1e6 / 3, time.Second, 333334}, // a rate that does not divide a second
	}
	for _, tc := range tests {
		s := Schedule{Start: t0, Rate: tc.rate, Duration: tc.dur}
		if got := s.Total(); got != tc.want {
			t.Errorf("rate %v for %v: Total = %d, want %d", tc.rate, tc.dur, got, tc.want)
		}
	}
}

// TestPacerArrivalRate drives the pacer with a fake clock that advances by
// irregular steps, as a real sleeping loop does, and checks that every
// class gets exactly its arrivals, in order, each released no earlier than
// due, with per-second counts equal to the rate.
func TestPacerArrivalRate(t *testing.T) {
	sched := []Schedule{
		{Start: t0, Rate: 400, Duration: 10 * time.Second},
		{Start: t0, Rate: 1600, Duration: 10 * time.Second},
	}
	p := newPacer(sched)
	steps := []time.Duration{37 * time.Microsecond, 1300 * time.Microsecond, 5 * time.Millisecond, 250 * time.Microsecond}
	now := t0.Add(-time.Millisecond)
	perSecond := make([][10]int, len(sched))
	last := make([]time.Time, len(sched))
	total := make([]int, len(sched))
	var buf []arrival
	for i := 0; ; i++ {
		var next time.Time
		var more bool
		buf, next, more = p.step(now, buf[:0])
		for _, a := range buf {
			if a.due.After(now) {
				t.Fatalf("class %d: arrival due %v released early at %v", a.class, a.due.Sub(t0), now.Sub(t0))
			}
			if !last[a.class].IsZero() && !a.due.After(last[a.class]) {
				t.Fatalf("class %d: arrivals out of order", a.class)
			}
			last[a.class] = a.due
			perSecond[a.class][int(a.due.Sub(t0)/time.Second)]++
			total[a.class]++
		}
		if !more {
			break
		}
		if next.Before(now) {
			t.Fatalf("next arrival %v is before now %v", next.Sub(t0), now.Sub(t0))
		}
		now = now.Add(steps[i%len(steps)])
	}
	for c, s := range sched {
		if total[c] != int(s.Rate*10) {
			t.Errorf("class %d: %d arrivals, want %d", c, total[c], int(s.Rate*10))
		}
		for sec, n := range perSecond[c] {
			if n != int(s.Rate) {
				t.Errorf("class %d second %d: %d arrivals, want %v", c, sec, n, s.Rate)
			}
		}
	}
}

// TestRunOpenOffersTheRate runs the real open loop for a fraction of a
// second against a local server and checks the offered rate.
func TestRunOpenOffersTheRate(t *testing.T) {
	var hits [2]atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Priority") == "u=1" {
			hits[0].Add(1)
		} else {
			hits[1].Add(1)
		}
	}))
	defer srv.Close()
	res, err := RunOpen(context.Background(), Options{
		URL:      srv.URL,
		Duration: 500 * time.Millisecond,
		Grace:    2 * time.Second,
		Classes: []Class{
			{Name: "urgent", Rate: 200, Header: http.Header{"Priority": {"u=1"}}},
			{Name: "bulk", Rate: 800, Header: http.Header{"Priority": {"u=5"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{100, 400} {
		c := res.Classes[i]
		if c.Sent != want || c.OK != want || hits[i].Load() != want {
			t.Errorf("%s: sent %d, ok %d, server saw %d; want %d each (errors %d: %s, overflow %d)",
				c.Name, c.Sent, c.OK, hits[i].Load(), want, c.Errors, c.FirstError, c.Overflow)
		}
		if c.Latency.Count() != uint64(want) || c.Status[200] != want {
			t.Errorf("%s: %d latencies, status %v", c.Name, c.Latency.Count(), c.Status)
		}
	}
}
