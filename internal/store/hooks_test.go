package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/testredis"
)

// eventually waits until cond holds, looking every 5 ms, for up to d: the
// store's loop runs on the real clock against a real redis-server, and
// nothing signals its state changes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(d)
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("not within %v: %s", d, what)
		}
	}
}

// hookLog records the Limits hook's calls.
type hookLog struct {
	mu    sync.Mutex
	calls []float64
}

func (h *hookLog) hooks() Hooks {
	return Hooks{Limits: func(rate float64, _ int) { h.mu.Lock(); h.calls = append(h.calls, rate); h.mu.Unlock() }}
}

func (h *hookLog) get() []float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]float64(nil), h.calls...)
}

func newStoreWith(t *testing.T, url string, d Dispatcher, h Hooks, onError string) *Store {
	t.Helper()
	s, err := New(config.Redis{URL: url, KeyPrefix: "t", Timeout: 200 * time.Millisecond, OnError: onError}, d, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A replica whose waiting requests cannot use their tokens (held by a
// concurrency cap) never holds more than one small lease: before,
// each call asked for up to 4 more until it held one token per waiting
// request, all spent at once when the cap opened (issue 22).
func TestLeaseNeverPilesUp(t *testing.T) {
	r := testredis.Start(t)
	d := &fakeDisp{hold: true}
	d.setDemand(3, 100)
	s := newStore(t, r.URL(), d)
	defer s.Close()
	if err := initScript.Run(context.Background(), s.rdb, s.keys, "200", 1000).Err(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.mu.rate, s.mu.burst = 200, 1000 // as Start sets them
	s.mu.Unlock()
	for range 20 {
		s.lease(context.Background())
	}
	if got, most := d.total(), maxLease(200); got > most {
		t.Fatalf("holds %d unspent tokens after 20 calls, want at most %d", got, most)
	}
}

// The shared bucket counts the tokens replicas hold: a replica holding a
// full burst unspent leaves nothing to refill for the others until its
// lease ends, so the bucket and the leases together stay within burst.
func TestLeaseScriptCountsHeldTokens(t *testing.T) {
	r := testredis.Start(t)
	s := newStore(t, r.URL(), &fakeDisp{})
	defer s.Close()
	ctx := context.Background()
	// A rate so high that the bucket refills to its cap at once: what b
	// gets depends only on what a holds, not on how much time passed.
	if err := initScript.Run(ctx, s.rdb, s.keys, "1000000", 5).Err(); err != nil {
		t.Fatal(err)
	}
	lease := func(id string, want, unspent int) int64 {
		t.Helper()
		res, err := leaseScript.Run(ctx, s.rdb, s.keys, id, want, "0,0,0,1,0,0,0,0", FreshDemand.Microseconds(),
			(2 * time.Second).Microseconds(), 0, unspent, (time.Second).Microseconds()).Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res[0].(int64)
	}
	if g := lease("a", 5, 0); g != 5 {
		t.Fatalf("a got %d, want the burst of 5", g)
	}
	if g := lease("b", 5, 0); g != 0 { // the bucket is refilled, but a still holds 5
		t.Fatalf("b got %d while a holds the whole burst", g)
	}
	lease("a", 0, 2) // a spent 3: the bucket may refill to 3
	if g := lease("b", 5, 0); g != 3 {
		t.Fatalf("b got %d after a spent 3, want 3 (burst 5 less the 2 a holds)", g)
	}
}

// A change written by this replica is never reported as another
// replica's, even when a lease call that read the old version returns
// after the write (the chaos run's "fleet-wide limits changed by another
// replica" with one replica, and limits flapping 13 → 49 → 13 → 49).
func TestOwnChangeIsNotAFleetChange(t *testing.T) {
	r := testredis.Start(t)
	d := &fakeDisp{}
	d.setDemand(3, 1)
	var h hookLog
	s := newStoreWith(t, r.URL(), d, h.hooks(), config.OnErrorLocal)
	defer s.Close()
	ctx := context.Background()
	if err := initScript.Run(ctx, s.rdb, s.keys, "13", 13).Err(); err != nil {
		t.Fatal(err)
	}
	s.lease(ctx) // version 1 seen
	if got := h.get(); len(got) != 1 || got[0] != 13 {
		t.Fatalf("first call: hook %v, want the fleet's 13 once", got)
	}
	// The next call's script reads version 1; before its reply is
	// handled, this replica writes 49 (version 2).
	rates := []float64{49, 50, 51}
	i := 0
	d.mu.Lock()
	d.onGrant = func() {
		if i < len(rates) {
			if err := s.SetLimits(ctx, rates[i], 49); err != nil {
				t.Error(err)
			}
			i++
		}
	}
	d.mu.Unlock()
	for range 5 {
		s.lease(ctx)
	}
	if got := h.get(); len(got) != 1 {
		t.Fatalf("hook called %v: this replica's own writes reported as the fleet's", got)
	}
	s.mu.Lock()
	rate := s.mu.rate
	s.mu.Unlock()
	if rate != 51 {
		t.Fatalf("store's rate %v, want 51 (the last written)", rate)
	}
}

// Outage transitions, on a real redis-server: on_error local gives the
// dispatcher the share 1/replicas and turns leases off; a change made
// meanwhile is kept (ErrPending) and written when Redis answers again,
// where the other replica sees it and this one does not report it back;
// the share returns to 1 with the leases.
func TestOutageTransitions(t *testing.T) {
	r := testredis.Start(t)
	da, db := &fakeDisp{}, &fakeDisp{}
	var ha, hb hookLog
	a := newStoreWith(t, r.URL(), da, ha.hooks(), config.OnErrorLocal)
	b := newStoreWith(t, r.URL(), db, hb.hooks(), config.OnErrorLocal)
	a.Start(200, 10)
	b.Start(200, 10)
	defer a.Close()
	defer b.Close()
	eventually(t, 2*time.Second, "both replicas seen", func() bool { st := a.Status(); return st.Up && st.Replicas == 2 })
	r.Kill()
	eventually(t, 2*time.Second, "a down", func() bool { return !a.Status().Up })
	if leased, share := da.state(); leased || share != 0.5 {
		t.Fatalf("during the outage: leased %v, share %v; want the local bucket at 1/2", leased, share)
	}
	err := a.SetLimits(context.Background(), 50, 5)
	if !errors.Is(err, ErrPending) {
		t.Fatalf("SetLimits during the outage: %v, want ErrPending", err)
	}
	if leased, share := da.state(); leased || share != 0.5 {
		t.Fatalf("after the change: leased %v, share %v; the share must stay", leased, share)
	}
	r.Restart()
	eventually(t, 2*time.Second, "a up again", func() bool { return a.Status().Up })
	if leased, share := da.state(); !leased || share != 1 {
		t.Fatalf("after the outage: leased %v, share %v", leased, share)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	eventually(t, 2*time.Second, "the pending change written", func() bool {
		return rdb.HGet(context.Background(), "{t}:limits", "rate").Val() == "50"
	})
	eventually(t, 2*time.Second, "b applies the change", func() bool {
		got := hb.get()
		return len(got) > 0 && got[len(got)-1] == 50
	})
	for _, rate := range ha.get() {
		if rate != 200 {
			t.Fatalf("a's hook %v: its own change reported back, or the old limits re-applied", ha.get())
		}
	}
}

// on_error open keeps the full rate locally; closed keeps the leases on
// (and gets none: nothing is admitted).
func TestOutageOpenAndClosed(t *testing.T) {
	for _, mode := range []string{config.OnErrorOpen, config.OnErrorClosed} {
		t.Run(mode, func(t *testing.T) {
			r := testredis.Start(t)
			d := &fakeDisp{}
			s := newStoreWith(t, r.URL(), d, Hooks{}, mode)
			s.Start(200, 10)
			defer s.Close()
			eventually(t, 2*time.Second, "up", func() bool { return s.Status().Up })
			d.SetLocalShare(0.25) // as if left over: open must set 1
			r.Kill()
			eventually(t, 2*time.Second, "down", func() bool { return !s.Status().Up })
			leased, share := d.state()
			switch mode {
			case config.OnErrorOpen:
				if leased || share != 1 {
					t.Fatalf("open: leased %v, share %v; want the local bucket at the full rate", leased, share)
				}
			case config.OnErrorClosed:
				if !leased {
					t.Fatal("closed: leases off, the local bucket would admit")
				}
			}
		})
	}
}
