package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// fleet is n replicas (a real dispatcher and Store each) sharing one
// store, driven by an open-loop load: what the Sentinel and Cluster tests
// measure.
type fleet struct {
	t     *testing.T
	rate  float64
	burst int
	ds    []*dispatch.Dispatcher
	ss    []*Store

	mu       sync.Mutex
	admitted []time.Time // admission instants, by the dispatchers' clock
	refused  int         // answered with an error (queue timeout)
	hung     int         // not answered within maxWait + 1 s
	outages  []outage    // each replica's down → up, as seen by its Store
}

type outage struct{ down, up time.Time }

const fleetMaxWait = 500 * time.Millisecond

func newFleet(t *testing.T, rc config.Redis, n int, rate float64, burst int) *fleet {
	t.Helper()
	f := &fleet{t: t, rate: rate, burst: burst}
	for range n {
		d := dispatch.New(dispatch.Config{Limits: dispatch.Limits{Rate: rate, Burst: burst, QueueSize: 1000, MaxWait: fleetMaxWait, MaxTunnels: 1}}, dispatch.Deps{})
		s, err := New(rc, d, Hooks{}, fleetLog(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Start(rate, burst)
		f.ds, f.ss = append(f.ds, d), append(f.ss, s)
	}
	t.Cleanup(func() {
		for i := range f.ss {
			f.ss[i].Close()
			f.ds[i].Close()
		}
	})
	for i, s := range f.ss {
		eventually(t, 5*time.Second, fmt.Sprintf("replica %d up", i), func() bool { return s.Status().Up })
	}
	eventually(t, 5*time.Second, "every replica seen", func() bool { return f.ss[0].Status().Replicas == n })
	return f
}

// run offers each replica perReplica requests a second for d, calls mid
// (in its own goroutine) at d/3, and returns once every request is
// answered. Meanwhile it records each replica's outages.
func (f *fleet) run(d time.Duration, perReplica float64, mid func()) {
	ctx, stop := context.WithCancel(context.Background())
	var watch sync.WaitGroup
	for _, s := range f.ss {
		watch.Go(func() { f.watch(ctx, s) })
	}
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		<-time.After(d / 3) // the scenario: the event a third of the way in
		mid()
	})
	for _, disp := range f.ds {
		wg.Go(func() {
			interval := time.Duration(float64(time.Second) / perReplica)
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for time.Since(start) < d {
				<-tick.C
				wg.Go(func() { f.request(disp) })
			}
		})
	}
	wg.Wait()
	stop()
	watch.Wait()
}

func (f *fleet) request(d *dispatch.Dispatcher) {
	ctx, cancel := context.WithTimeout(context.Background(), fleetMaxWait+time.Second)
	defer cancel()
	p, err := d.Acquire(ctx, dispatch.Request{Urgency: 3})
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		f.hung++
	case err != nil:
		f.refused++
	default:
		f.admitted = append(f.admitted, p.Arrival().Add(p.Waited()))
		p.Release()
	}
}

// watch records s's outages (polled every millisecond).
func (f *fleet) watch(ctx context.Context, s *Store) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var o outage
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := s.Status()
		switch {
		case !st.Up && o.down.IsZero():
			o.down = st.Since
		case st.Up && !o.down.IsZero():
			o.up = st.Since
			f.mu.Lock()
			f.outages = append(f.outages, o)
			f.mu.Unlock()
			o = outage{}
		}
	}
}

// check asserts that every request was answered and that admissions over
// every window t stayed within rate × t + burst + allowance, and returns
// the admitted rate over [from, to) (offsets from the first admission).
func (f *fleet) check(allowance int) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hung > 0 {
		f.t.Errorf("%d requests not answered within max_wait + 1 s", f.hung)
	}
	at := slices.Clone(f.admitted)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	for _, w := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second} {
		bound := int(f.rate*w.Seconds()) + f.burst
		m := maxIn(at, w)
		f.t.Logf("at most %d admissions in any %v window (rate × t + burst = %d, allowance %d)", m, w, bound, allowance)
		if m > bound+allowance {
			f.t.Errorf("%d admissions in a %v window, above rate × t + burst + allowance = %d", m, w, bound+allowance)
		}
	}
}

// accuracy is the admitted rate between from and to after start.
func (f *fleet) accuracy(start time.Time, from, to time.Duration) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.admitted {
		if !a.Before(start.Add(from)) && a.Before(start.Add(to)) {
			n++
		}
	}
	return float64(n) / (to - from).Seconds()
}

// allowance is what the outages seen add to rate × t + burst: one burst
// each (docs/shared-quota.md, "The bound across an outage"). The local
// buckets start empty at the switch to on_error: local, so entering an
// outage adds nothing; but the shared bucket, unused meanwhile, holds a
// burst again when the replicas come back, beside what their local
// buckets saved (their bursts are each its share of burst, at least 1:
// max(burst, replicas) together). Outages of different replicas that
// overlap count once. (Before issue 27 the local buckets started full,
// with a whole burst each: (replicas + 1) × burst.)
func (f *fleet) allowance(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	events := 0
	var ends []time.Time
	for _, o := range f.outages {
		overlap := false
		for _, e := range ends {
			if !o.down.After(e) {
				overlap = true
			}
		}
		if !overlap {
			events++
		}
		ends = append(ends, o.up)
	}
	return events * max(f.burst, n)
}

// maxIn is the most instants of sorted at in any window of length w.
func maxIn(at []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range at {
		for at[i].Sub(at[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func fleetLog(t *testing.T) *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)) }
