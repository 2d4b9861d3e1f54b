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

// A replica on a real redis-server at rate 200, burst 10, concurrency 1,
// with 150 requests waiting behind the cap for a second while the store
// keeps leasing; then the cap is raised to 100 (the chaos run's PATCH of
// concurrency 31 → 77). Admissions over every window t stay within
// rate × t + burst. Before issue 22 the tokens leased meanwhile piled up
// (each Grant extended the earlier ones' expiry, each call asked for more)
// and were all spent the moment the cap opened.
func TestLeasedBoundAfterConcurrencyRaise(t *testing.T) {
	const rate, burst = 200, 10
	r := testredis.Start(t)
	lim := dispatch.Limits{Rate: rate, Burst: burst, Concurrency: 1, QueueSize: 1000, MaxWait: time.Minute, MaxTunnels: 1}
	d := dispatch.New(dispatch.Config{Limits: lim}, dispatch.Deps{})
	defer d.Close()
	s := newStoreWith(t, r.URL(), d, Hooks{}, config.OnErrorLocal)
	s.Start(rate, burst)
	defer s.Close()

	first, err := d.Acquire(context.Background(), dispatch.Request{Urgency: 3})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var at []time.Time // grant instants, by the dispatcher's clock
	var wg sync.WaitGroup
	for range 150 {
		tk, err := d.Enqueue(dispatch.Request{Urgency: 3})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := tk.Wait(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			at = append(at, p.Arrival().Add(p.Waited())) // the dispatcher's own instants
			mu.Unlock()
			p.Release()
		}()
	}
	<-time.After(time.Second) // the scenario: a second behind the cap while leases go on
	lim.Concurrency = 100
	d.SetLimits(lim)
	first.Release()
	wg.Wait()
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	worst, worstAt := 0.0, 0
	for i := range at {
		for j := i; j < len(at); j++ {
			n := float64(j - i + 1)
			bound := rate*at[j].Sub(at[i]).Seconds() + burst
			if over := n - bound; over > worst {
				worst, worstAt = over, i
			}
		}
	}
	if worst > 0 {
		t.Fatalf("%.1f admissions over rate × t + burst in a window from admission %d of %d", worst, worstAt, len(at))
	}
}
