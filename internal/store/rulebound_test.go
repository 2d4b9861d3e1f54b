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

// TestLeasedBoundAfterConcurrencyRaise for a hosts rule's bucket: a
// replica on a real redis-server, the global rate unlimited, a hosts rule
// at rate 200, burst 10, concurrency 1, with 150 requests waiting behind
// the rule's cap for a second while the store keeps leasing the rule's
// tokens; then the rule's cap is raised to 100. The rule's admissions over
// every window t stay within rate × t + burst: the rule's bucket refills
// only up to burst less the rule tokens that replicas hold, as the global
// bucket does. Without that, the tokens held when the cap opened were
// spent on top of a full bucket.
func TestLeasedRuleBoundAfterConcurrencyRaise(t *testing.T) {
	const rate, burst = 200, 10
	r := testredis.Start(t)
	match, err := config.ParseHostPattern("api.example:443")
	if err != nil {
		t.Fatal(err)
	}
	rule := dispatch.HostLimit{Match: match, Rate: rate, Burst: burst, Concurrency: 1}
	lim := dispatch.Limits{QueueSize: 1000, MaxWait: time.Minute, MaxTunnels: 1}
	d := dispatch.New(dispatch.Config{Limits: lim, Hosts: []dispatch.HostLimit{rule}}, dispatch.Deps{})
	defer d.Close()
	s := newStoreWith(t, r.URL(), d, Hooks{}, config.OnErrorLocal)
	s.Start(0, 1)
	defer s.Close()

	req := dispatch.Request{Urgency: 3, Dest: "api.example:443"}
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := tk.Wait(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			at = append(at, p.Arrival().Add(p.Waited()))
			mu.Unlock()
			p.Release()
		}()
	}
	<-time.After(time.Second) // the scenario: a second behind the rule's cap while leases go on
	rule.Concurrency = 100
	d.SetHosts([]dispatch.HostLimit{rule})
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
	if len(at) != 150 {
		t.Fatalf("%d admitted, want 150", len(at))
	}
}
