package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/testredis"
)

// slotReplicas starts n replicas (a real dispatcher and Store each) on the
// Redis at url, sharing limits.concurrency = capacity, no rate limit.
func slotReplicas(t *testing.T, url string, n, capacity int, lease time.Duration) ([]*dispatch.Dispatcher, []*Store) {
	t.Helper()
	var ds []*dispatch.Dispatcher
	var ss []*Store
	for range n {
		d := dispatch.New(dispatch.Config{Limits: dispatch.Limits{Concurrency: capacity, SharedConcurrency: true, QueueSize: 1000, MaxWait: time.Minute, MaxTunnels: 1}}, dispatch.Deps{})
		s, err := New(config.Redis{URL: url, KeyPrefix: "slots", Timeout: 100 * time.Millisecond, OnError: config.OnErrorLocal, SlotLease: lease}, d, Hooks{}, fleetLog(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Start(0, 1)
		ds, ss = append(ds, d), append(ss, s)
	}
	t.Cleanup(func() {
		for i := range ss {
			ss[i].Close()
			ds[i].Close()
		}
	})
	for i, s := range ss {
		eventually(t, 5*time.Second, fmt.Sprintf("replica %d up", i), func() bool { return s.Status().Up })
	}
	return ds, ss
}

// inFlight counts permits held across replicas, from the moment Acquire
// returns to just before Release: never more than the slots held.
type inFlight struct {
	now, peak atomic.Int64
}

func (f *inFlight) enter() {
	n := f.now.Add(1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
}

func (f *inFlight) leave() { f.now.Add(-1) }

// Three replicas share limits.concurrency: 10 through a real
// redis-server; each has 60 requests waiting at once, each holding its
// slot 40 ms (a slow upstream). Counted by the test across the three,
// never more than 10 in flight; every request admitted; the cap used.
func TestSharedConcurrencyAcrossReplicas(t *testing.T) {
	r := testredis.Start(t)
	const capacity, perReplica, hold = 10, 60, 40 * time.Millisecond
	ds, _ := slotReplicas(t, r.URL(), 3, capacity, DefaultSlotLease)
	<-time.After(slotGrace) // a new fleet grants nothing for slotGrace (slots.go)
	var f inFlight
	var wg sync.WaitGroup
	var admitted [3]atomic.Int64
	start := time.Now()
	for i, d := range ds {
		for range perReplica {
			wg.Go(func() {
				p, err := d.Acquire(context.Background(), dispatch.Request{Urgency: 3})
				if err != nil {
					t.Error(err)
					return
				}
				f.enter()
				admitted[i].Add(1)
				<-time.After(hold) // the slow upstream
				f.leave()
				p.Release()
			})
		}
	}
	wg.Wait()
	took := time.Since(start)
	ideal := time.Duration(3*perReplica/capacity) * hold
	t.Logf("peak %d in flight across 3 replicas (fleet-wide cap %d); %d requests in %v (%v at the cap exactly); by replica %d/%d/%d",
		f.peak.Load(), capacity, 3*perReplica, took.Round(time.Millisecond), ideal, admitted[0].Load(), admitted[1].Load(), admitted[2].Load())
	if p := f.peak.Load(); p > capacity {
		t.Errorf("%d requests in flight across the replicas, above the fleet-wide cap %d", p, capacity)
	}
	if p := f.peak.Load(); p < capacity-2 {
		t.Errorf("at most %d in flight: the replicas did not use the cap of %d", p, capacity)
	}
	for i := range admitted {
		if n := admitted[i].Load(); n != perReplica {
			t.Errorf("replica %d: %d of %d admitted", i, n, perReplica)
		}
	}
}

// Priority across replicas: replica A holds every slot of a cap of 4 with
// bulk requests (u=5) and has more waiting; replica B's urgent requests
// (u=1) arrive. As A's requests end, their slots go to B, not to A's
// next: no bulk request is admitted from B's arrival until B's last one.
func TestSharedConcurrencyPriority(t *testing.T) {
	r := testredis.Start(t)
	const capacity, hold = 4, 300 * time.Millisecond
	ds, _ := slotReplicas(t, r.URL(), 2, capacity, DefaultSlotLease)
	<-time.After(slotGrace)
	var mu sync.Mutex
	var bulkAt []time.Time
	var urgentAt []time.Time
	var f inFlight
	run := func(d *dispatch.Dispatcher, u int, at *[]time.Time, wg *sync.WaitGroup) {
		wg.Go(func() {
			p, err := d.Acquire(context.Background(), dispatch.Request{Urgency: u})
			if err != nil {
				t.Error(err)
				return
			}
			f.enter()
			mu.Lock()
			*at = append(*at, time.Now())
			mu.Unlock()
			<-time.After(hold)
			f.leave()
			p.Release()
		})
	}
	var wg sync.WaitGroup
	for range 3 * capacity {
		run(ds[0], 5, &bulkAt, &wg)
	}
	eventually(t, 5*time.Second, "A holding every slot", func() bool { return f.now.Load() == capacity })
	arrived := time.Now()
	for range capacity {
		run(ds[1], 1, &urgentAt, &wg)
	}
	wg.Wait()
	last := urgentAt[0]
	for _, a := range urgentAt {
		if a.After(last) {
			last = a
		}
	}
	t.Logf("urgent requests on B admitted %v after their arrival (bulk on A held each slot %v); peak in flight %d",
		last.Sub(arrived).Round(time.Millisecond), hold, f.peak.Load())
	for _, a := range bulkAt {
		if a.After(arrived) && a.Before(last) {
			t.Errorf("a bulk request on A admitted %v after B's urgent ones arrived, before the last of them (%v)", a.Sub(arrived), last.Sub(arrived))
		}
	}
	if f.peak.Load() > capacity {
		t.Errorf("%d in flight, above the cap %d", f.peak.Load(), capacity)
	}
}

// A replica that dies holding slots (its store stops calling; its
// requests never end) gives them back when its record expires: the other
// replica gets the whole cap slot_lease after the dead one's last call,
// not before.
func TestSharedConcurrencyDeadReplica(t *testing.T) {
	r := testredis.Start(t)
	const capacity, lease = 6, time.Second
	ds, ss := slotReplicas(t, r.URL(), 2, capacity, lease)
	<-time.After(slotGrace)
	for range capacity {
		if _, err := ds[0].Acquire(context.Background(), dispatch.Request{Urgency: 3}); err != nil {
			t.Fatal(err)
		}
	}
	ss[0].Close() // dies: no more calls, its slots still recorded
	died := time.Now()
	var got atomic.Int64
	var wg sync.WaitGroup
	var last atomic.Int64
	for range capacity {
		wg.Go(func() {
			p, err := ds[1].Acquire(context.Background(), dispatch.Request{Urgency: 3})
			if err != nil {
				t.Error(err)
				return
			}
			last.Store(int64(time.Since(died)))
			got.Add(1)
			p.Release()
		})
	}
	wg.Wait()
	back := time.Duration(last.Load())
	t.Logf("the dead replica's %d slots served the other replica %v after its last call (redis.slot_lease %v)", capacity, back.Round(time.Millisecond), lease)
	if back < lease-IdleInterval {
		t.Errorf("the dead replica's slots came back after %v, before its lease of %v ended", back, lease)
	}
	if back > lease+500*time.Millisecond {
		t.Errorf("the dead replica's slots came back only after %v (lease %v)", back, lease)
	}
}
