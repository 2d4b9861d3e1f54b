package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/testredis"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDisp is a replica's dispatcher: a fixed demand, the grants counted.
type fakeDisp struct {
	mu      sync.Mutex
	demand  dispatch.Demand
	granted int
	leased  bool
	share   float64
	// hold: granted tokens are never spent (Demand reports them unspent),
	// as behind a concurrency cap.
	hold    bool
	onGrant func() // called (without mu) after each Grant
}

func (f *fakeDisp) Demand() dispatch.Demand {
	f.mu.Lock()
	defer f.mu.Unlock()
	dm := f.demand
	if f.hold {
		dm.Unspent = f.granted
	}
	return dm
}
func (f *fakeDisp) Grant(n int, _ time.Time) {
	f.mu.Lock()
	f.granted += n
	g := f.onGrant
	f.mu.Unlock()
	if g != nil {
		g()
	}
}
func (f *fakeDisp) SetLocalShare(v float64) { f.mu.Lock(); defer f.mu.Unlock(); f.share = v }
func (f *fakeDisp) state() (leased bool, share float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leased, f.share
}
func (f *fakeDisp) GrantRules(map[string]int, time.Time)                            {}
func (f *fakeDisp) GrantQuotas(uint64, time.Time, time.Time, []dispatch.QuotaGrant) {}
func (f *fakeDisp) GrantSlots([]dispatch.SlotGrant, time.Time)                      {}
func (f *fakeDisp) SetLeased(on bool)                                               { f.mu.Lock(); defer f.mu.Unlock(); f.leased = on }
func (f *fakeDisp) SetLeaseWake(chan<- struct{})                                    {}
func (f *fakeDisp) total() int                                                      { f.mu.Lock(); defer f.mu.Unlock(); return f.granted }
func (f *fakeDisp) setDemand(u, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.demand = dispatch.Demand{}
	f.demand.ByPriority[u] = n
	f.demand.Waiting = n
}

func newStore(t *testing.T, url string, d Dispatcher) *Store {
	t.Helper()
	s, err := New(config.Redis{URL: url, KeyPrefix: "t", Timeout: 200 * time.Millisecond, OnError: config.OnErrorLocal}, d, Hooks{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The lease script directly: grants are bounded by the bucket (burst,
// then rate in Redis time), and a replica is left only what more urgent
// demand elsewhere does not need.
func TestLeaseScript(t *testing.T) {
	r := testredis.Start(t)
	d := &fakeDisp{}
	s := newStore(t, r.URL(), d)
	defer s.Close()
	ctx := context.Background()
	if err := initScript.Run(ctx, s.rdb, s.keys, "10", 5).Err(); err != nil {
		t.Fatal(err)
	}
	lease := func(id string, want int, demand string) []any {
		t.Helper()
		res, err := leaseScript.Run(ctx, s.rdb, s.keys, id, want, demand, FreshDemand.Microseconds(), (2 * time.Second).Microseconds()).Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// A full bucket of 5 (burst): asking 8 gets 5.
	if res := lease("a", 8, "0,0,0,8,0,0,0,0"); res[0].(int64) != 5 || res[1] != "10" || res[2].(int64) != 5 || res[3].(int64) != 1 {
		t.Fatalf("first lease %v, want 5 tokens, rate 10, burst 5, version 1", res)
	}
	// Replica b records urgent demand (u=1: 2 waiting) and gets nothing
	// yet (empty bucket); then a (u=3) may not take what b needs.
	time.Sleep(300 * time.Millisecond) // ≈ 3 tokens at 10/s
	lease("b", 0, "0,2,0,0,0,0,0,0")   // b's demand recorded (fresh for 100 ms)
	if res := lease("a", 8, "0,0,0,8,0,0,0,0"); res[0].(int64) > 1 {
		t.Fatalf("a got %v tokens while b needs 2 more urgently", res[0])
	}
	if res := lease("b", 2, "0,2,0,0,0,0,0,0"); res[0].(int64) != 2 {
		t.Fatalf("b got %v, want its 2", res[0])
	}
	if res := lease("c", 0, "0,0,0,0,0,0,0,0"); res[4].(int64) != 3 {
		t.Fatalf("replicas %v, want 3", res[4])
	}
	// An empty Redis: version -1, nothing granted.
	if err := s.rdb.Del(ctx, s.keys[1]).Err(); err != nil {
		t.Fatal(err)
	}
	if res := lease("a", 8, "0,0,0,8,0,0,0,0"); res[0].(int64) != 0 || res[3].(int64) != -1 {
		t.Fatalf("lease without limits %v, want 0 and version -1", res)
	}
}

// Two Stores against one Redis: over 1.5 s at rate 20 and burst 5 they
// are granted rate × t + burst between them, not each; limits set by one
// reach the other; a Redis that comes back empty gets the limits again.
func TestStoresShareOneBucket(t *testing.T) {
	r := testredis.Start(t)
	da, db := &fakeDisp{}, &fakeDisp{}
	da.setDemand(3, 100)
	db.setDemand(3, 100)
	var mu sync.Mutex
	var seen []float64
	a := newStore(t, r.URL(), da)
	b, err := New(config.Redis{URL: r.URL(), KeyPrefix: "t", Timeout: 200 * time.Millisecond, OnError: config.OnErrorLocal}, db,
		Hooks{Limits: func(rate float64, _ int) { mu.Lock(); seen = append(seen, rate); mu.Unlock() }}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a.Start(20, 5)
	b.Start(20, 5)
	time.Sleep(1500 * time.Millisecond)
	elapsed := time.Since(start).Seconds()
	total := da.total() + db.total()
	if max := int(20*elapsed) + 5; total > max || total < int(20*(elapsed-0.2)) {
		t.Errorf("granted %d in %.2f s at rate 20, burst 5: want at most %d and close to it", total, elapsed, max)
	}
	if da.total() == 0 || db.total() == 0 {
		t.Errorf("one replica got nothing: %d / %d", da.total(), db.total())
	}
	if err := a.SetLimits(context.Background(), 7, 3); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		mu.Lock()
		got := len(seen) > 0 && seen[len(seen)-1] == 7
		mu.Unlock()
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b did not see the new rate within 1 s: %v", seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Redis restarts empty: the replicas write their limits again.
	r.Restart()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	deadline = time.Now().Add(2 * time.Second)
	for rdb.HGet(context.Background(), "{t}:limits", "rate").Val() != "7" {
		if time.Now().After(deadline) {
			t.Fatalf("limits not written again after Redis came back empty: %q", rdb.HGet(context.Background(), "{t}:limits", "rate").Val())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.Close()
	b.Close()
}
