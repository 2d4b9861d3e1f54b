package store

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/testredis"
)

// The bound after a concurrency raise: a replica on a real redis-server,
// a bucket at rate 200, burst 10 and a cap of 1, with 150 requests waiting
// behind the cap for a second while the store keeps leasing; then the cap
// is raised to 100 (the chaos run's PATCH of concurrency 31 → 77).
// Admissions over every window t stay within rate × t + burst. Before
// issue 22 the tokens leased meanwhile piled up (each Grant extended the
// earlier ones' expiry, each call asked for more) and were all spent the
// moment the cap opened.
const boundRate, boundBurst = 200, 10

// TestLeasedBoundAfterConcurrencyRaise: the global bucket and cap.
func TestLeasedBoundAfterConcurrencyRaise(t *testing.T) {
	lim := dispatch.Limits{Rate: boundRate, Burst: boundBurst, Concurrency: 1, QueueSize: 1000, MaxWait: time.Minute, MaxTunnels: 1}
	d := dispatch.New(dispatch.Config{Limits: lim}, dispatch.Deps{})
	defer d.Close()
	checkBoundAfterRaise(t, d, boundRate, boundBurst, dispatch.Request{Urgency: 3}, func() {
		lim.Concurrency = 100
		d.SetLimits(lim)
	})
}

// TestLeasedRuleBoundAfterConcurrencyRaise: a hosts rule's bucket and cap,
// the global rate unlimited. The rule's bucket refills only up to burst
// less the rule tokens that replicas hold, as the global bucket does.
func TestLeasedRuleBoundAfterConcurrencyRaise(t *testing.T) {
	match, err := config.ParseHostPattern("api.example:443")
	if err != nil {
		t.Fatal(err)
	}
	rule := dispatch.HostLimit{Match: match, Rate: boundRate, Burst: boundBurst, Concurrency: 1}
	lim := dispatch.Limits{QueueSize: 1000, MaxWait: time.Minute, MaxTunnels: 1}
	d := dispatch.New(dispatch.Config{Limits: lim, Hosts: []dispatch.HostLimit{rule}}, dispatch.Deps{})
	defer d.Close()
	checkBoundAfterRaise(t, d, 0, 1, dispatch.Request{Urgency: 3, Dest: "api.example:443"}, func() {
		rule.Concurrency = 100
		d.SetHosts([]dispatch.HostLimit{rule})
	})
}

// checkBoundAfterRaise runs the scenario on d with the store started at
// (rate, burst): one request holds the cap, 150 more wait for a second,
// raise lifts the cap; then every window of the admissions is checked
// against boundRate × t + boundBurst.
func checkBoundAfterRaise(t *testing.T, d *dispatch.Dispatcher, rate float64, burst int, req dispatch.Request, raise func()) {
	t.Helper()
	r := testredis.Start(t)
	s := newStoreWith(t, r.URL(), d, Hooks{}, config.OnErrorLocal)
	s.Start(rate, burst)
	defer s.Close()

	first, err := d.Acquire(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var at []time.Time // grant instants, by the dispatcher's clock
	var wg sync.WaitGroup
	for range 150 {
		tk, err := d.Enqueue(req)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			p, err := tk.Wait(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			at = append(at, p.Arrival().Add(p.Waited())) // the dispatcher's own instants
			mu.Unlock()
			p.Release()
		})
	}
	<-time.After(time.Second) // the scenario: a second behind the cap while leases go on
	raise()
	first.Release()
	wg.Wait()
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	worst, worstAt := 0.0, 0
	for i := range at {
		for j := i; j < len(at); j++ {
			n := float64(j - i + 1)
			bound := boundRate*at[j].Sub(at[i]).Seconds() + boundBurst
			if over := n - bound; over > worst {
				worst, worstAt = over, i
			}
		}
	}
	if worst > 0 {
		t.Fatalf("%.1f admissions over rate × t + burst in a window from admission %d of %d", worst, worstAt, len(at))
	}
	if len(at) != 150 {
		t.Fatalf("%d admitted, want 150", len(at))
	}
}
