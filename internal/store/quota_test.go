package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/testredis"
)

// The quota part of the lease script directly: a grant is at most limit
// less what the window counts; a settlement uncharges the unspent units
// of its lease, once (a repeat is ignored); lease 0 charges admissions
// made without a lease; a global quota leaves other replicas' more urgent
// demand to them.
func TestQuotaScript(t *testing.T) {
	r := testredis.Start(t)
	s := newStore(t, r.URL(), &fakeDisp{})
	defer s.Close()
	ctx := context.Background()
	if err := initScript.Run(ctx, s.rdb, s.keys, "0", 1).Err(); err != nil {
		t.Fatal(err)
	}
	key := s.quotaKey(dispatch.QuotaDemand{Per: time.Minute, Unit: "requests"})
	if want := "{t}:quota:global:1m:requests"; key != want {
		t.Fatalf("quota key %q, want %q", key, want)
	}
	// call runs the script for replica id with one global quota of 5/1m:
	// lease seq, want, waiting requests at urgency u, and settlements
	// (lease, spent, offset µs triples); it returns {granted, used}.
	call := func(id string, seq, want, u, waiting int, settle ...int64) (int64, int64) {
		t.Helper()
		demand := make([]string, 8)
		for i := range demand {
			demand[i] = "0"
		}
		demand[u] = strconv.Itoa(waiting)
		args := []any{id, 0, fmt.Sprint(demand[0], ",", demand[1], ",", demand[2], ",", demand[3], ",", demand[4], ",", demand[5], ",", demand[6], ",", demand[7]),
			FreshDemand.Microseconds(), (2 * time.Second).Microseconds(), 0, 0, LeaseTTL.Microseconds(),
			1, seq, 1, 5, time.Minute.Microseconds(), want, 8, 0, 0, len(settle) / 3}
		for _, v := range settle {
			args = append(args, v)
		}
		res, err := leaseScript.Run(ctx, s.rdb, append(slices.Clone(s.keys), key), args...).Slice()
		if err != nil {
			t.Fatal(err)
		}
		q := res[7].([]any)[0].([]any)
		return q[0].(int64), q[1].(int64)
	}
	if g, used := call("a", 1, 3, 3, 3); g != 3 || used != 3 {
		t.Fatalf("a's first lease: %d granted, %d used; want 3 and 3", g, used)
	}
	if g, used := call("b", 1, 4, 3, 4); g != 2 || used != 5 {
		t.Fatalf("b's lease: %d granted, %d used; want the 2 left", g, used)
	}
	// a spent 1 of its 3: 2 come back, and b may take them; the same
	// settlement again changes nothing.
	if g, used := call("a", 2, 0, 3, 0, 1, 1, 1000); g != 0 || used != 3 {
		t.Fatalf("a's settlement: %d granted, %d used; want 0 and 3", g, used)
	}
	if g, used := call("a", 3, 0, 3, 0, 1, 1, 1000); g != 0 || used != 3 {
		t.Fatalf("a's settlement again: %d granted, %d used; want it ignored", g, used)
	}
	// b records urgent demand (u=1, 2 waiting) without taking any; a
	// (u=3) may not take what b needs.
	call("b", 2, 0, 1, 2)
	if g, _ := call("a", 4, 2, 3, 2); g != 0 {
		t.Fatalf("a got %d units while b needs 2 more urgently", g)
	}
	if g, used := call("b", 3, 2, 1, 2); g != 2 || used != 5 {
		t.Fatalf("b's urgent lease: %d granted, %d used; want 2 and 5", g, used)
	}
	// b's two leases end unspent; 3 admissions made without a lease
	// (while the store was down) are charged.
	if g, used := call("b", 4, 0, 3, 0, 1, 0, 0, 3, 0, 0, 0, 3, -20000); g != 0 || used != 4 {
		t.Fatalf("b's settlements: %d granted, %d used; want 1 (a's) + 3 (without a lease)", g, used)
	}
	// Bounded: one lease record per replica with outstanding leases.
	if n := s.rdb.HLen(ctx, key).Val(); n > 8 {
		t.Errorf("the quota's hash has %d fields: %v", n, s.rdb.HGetAll(ctx, key).Val())
	}
	if ttl := s.rdb.PTTL(ctx, key).Val(); ttl <= time.Minute || ttl > 2*time.Minute {
		t.Errorf("the quota's hash expires in %v, want per + 60 s", ttl)
	}
}

// quotaFleet is n replicas, each a dispatcher and its Store, on one Redis.
type quotaFleet struct {
	ds []*dispatch.Dispatcher
	ss []*Store
}

func startFleet(t *testing.T, n int, cfg dispatch.Config) *quotaFleet {
	t.Helper()
	r := testredis.Start(t)
	f := &quotaFleet{}
	for range n {
		d := dispatch.New(cfg, dispatch.Deps{})
		s := newStoreWith(t, r.URL(), d, Hooks{}, config.OnErrorLocal)
		s.Start(cfg.Limits.Rate, cfg.Limits.Burst)
		f.ds, f.ss = append(f.ds, d), append(f.ss, s)
	}
	t.Cleanup(f.close)
	return f
}

func (f *quotaFleet) close() {
	for i := range f.ds {
		f.ss[i].Close()
		f.ds[i].Close()
	}
	f.ds, f.ss = nil, nil
}

// admission is one permit granted: when (by the dispatcher's clock),
// and when its request was enqueued.
type admission struct {
	at, enq time.Time
	urgency int
}

// offered records what offer sent and how it was answered.
type offered struct {
	mu       sync.Mutex
	adm      []admission
	sent     int
	answered int
}

// offer sends req to d at perSecond, open loop (a tick every 5 ms sends
// what is due), from start for dur; every request's answer (a permit,
// released at once: quotas count admissions, or a refusal) is recorded.
func (o *offered) offer(t *testing.T, wg *sync.WaitGroup, d *dispatch.Dispatcher, req dispatch.Request, perSecond float64, start time.Time, dur time.Duration) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for now := time.Now(); now.Before(start.Add(dur)); now = <-tick.C {
		for ; float64(sent) < now.Sub(start).Seconds()*perSecond; sent++ {
			tk, err := d.Enqueue(req)
			o.mu.Lock()
			o.sent++
			if err != nil {
				o.answered++
				o.mu.Unlock()
				continue
			}
			o.mu.Unlock()
			enq := time.Now()
			wg.Go(func() {
				p, err := tk.Wait(context.Background())
				o.mu.Lock()
				defer o.mu.Unlock()
				o.answered++
				if err != nil {
					var rej *dispatch.RejectError
					if !errors.As(err, &rej) {
						t.Errorf("request answered %v", err)
					}
					return
				}
				o.adm = append(o.adm, admission{at: p.Arrival().Add(p.Waited()), enq: enq, urgency: req.Urgency})
				p.Release()
			})
		}
	}
}

// times returns the admission instants, sorted.
func (o *offered) times() []time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	var at []time.Time
	for _, a := range o.adm {
		at = append(at, a.at)
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	return at
}

// checkQuotaWindows fails if any interval of length per holds more than
// limit of the sorted admissions (the tightest starts at one).
func checkQuotaWindows(t *testing.T, at []time.Time, limit int, per time.Duration) {
	t.Helper()
	for i := 0; i+limit < len(at); i++ {
		if d := at[i+limit].Sub(at[i]); d < per {
			t.Fatalf("%d admissions within %v (from +%v): the quota is %d per %v", limit+1, d, at[i].Sub(at[0]), limit, per)
		}
	}
}

// Three replicas share one quota of 100 per second, offered twice that
// between them for 3.3 s: no interval of 1 s holds more than 100
// admissions fleet-wide, at least 98% of the quota is used over the
// whole windows, every request is answered. For a global quota, a hosts
// rule's, and a global one beside the global bucket.
func TestSharedQuotaAcrossReplicas(t *testing.T) {
	const limit, per = 100, time.Second
	q := []dispatch.Quota{{Limit: limit, Per: per, Unit: "requests"}}
	match, err := config.ParseHostPattern("api.example:443")
	if err != nil {
		t.Fatal(err)
	}
	base := dispatch.Limits{QueueSize: 10000, MaxWait: 600 * time.Millisecond, MaxTunnels: 1, Burst: 1}
	for _, tc := range []struct {
		name string
		cfg  func() dispatch.Config
		dest string
	}{
		{"global", func() dispatch.Config { l := base; l.Quotas = q; return dispatch.Config{Limits: l} }, ""},
		{"rule", func() dispatch.Config {
			return dispatch.Config{Limits: base, Hosts: []dispatch.HostLimit{{Match: match, Burst: 1, Quotas: q}}}
		}, "api.example:443"},
		{"with the global bucket", func() dispatch.Config {
			l := base
			l.Rate, l.Burst, l.Quotas = 120, 5, q
			return dispatch.Config{Limits: l}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg()
			f := startFleet(t, 3, cfg)
			const dur = 3300 * time.Millisecond
			var o offered
			var wg sync.WaitGroup
			start := time.Now()
			var load sync.WaitGroup
			for _, d := range f.ds {
				load.Go(func() { o.offer(t, &wg, d, dispatch.Request{Urgency: 3, Dest: tc.dest}, 2*limit/3.0, start, dur) })
			}
			load.Wait()
			wg.Wait()
			at := o.times()
			if len(at) == 0 {
				t.Fatal("nothing admitted")
			}
			checkQuotaWindows(t, at, limit, per)
			n := 0
			for _, a := range at {
				if a.Before(at[0].Add(3 * per)) {
					n++
				}
			}
			t.Logf("%d admitted in the first 3 windows of %v (quota %d), %d in all, %d offered", n, per, limit, len(at), o.sent)
			if n*100 < 98*3*limit {
				t.Errorf("%d admitted over 3 windows, want at least 98%% of %d", n, 3*limit)
			}
			if o.answered != o.sent {
				t.Errorf("%d of %d requests answered", o.answered, o.sent)
			}
			if cfg.Limits.Rate > 0 {
				// The global bucket's own bound holds beside the quota.
				for _, w := range []time.Duration{100 * time.Millisecond, time.Second} {
					bound := int(cfg.Limits.Rate*w.Seconds()) + cfg.Limits.Burst
					for i := 0; i+bound < len(at); i++ {
						if at[i+bound].Sub(at[i]) < w {
							t.Fatalf("%d admissions within %v: above rate × t + burst", bound+1, w)
						}
					}
				}
			}
		})
	}
}

// Priority across replicas for a global quota: replica A offers bulk
// requests (u=5) at twice the quota, replica B urgent ones (u=1) at a
// tenth of it. While the quota is the bottleneck, B's requests take the
// units that free up before A's: no A admission happens while a B
// request has waited longer than the documented 50 ms, and A gets the
// rest of the quota.
func TestSharedQuotaPriorityAcrossReplicas(t *testing.T) {
	const limit, per = 100, time.Second
	l := dispatch.Limits{QueueSize: 10000, MaxWait: 2 * time.Second, MaxTunnels: 1, Burst: 1,
		Quotas: []dispatch.Quota{{Limit: limit, Per: per, Unit: "requests"}}}
	f := startFleet(t, 2, dispatch.Config{Limits: l})
	var a, b offered
	var wg, load sync.WaitGroup
	start := time.Now()
	load.Go(func() { a.offer(t, &wg, f.ds[0], dispatch.Request{Urgency: 5}, 2*limit, start, 3500*time.Millisecond) })
	load.Go(func() {
		b.offer(t, &wg, f.ds[1], dispatch.Request{Urgency: 1}, limit/10, start.Add(1200*time.Millisecond), 2300*time.Millisecond)
	})
	load.Wait()
	wg.Wait()
	if b.answered != b.sent || len(b.adm) != b.sent {
		t.Fatalf("B: %d urgent requests sent, %d admitted, %d answered: want all admitted", b.sent, len(b.adm), b.answered)
	}
	aAt := a.times()
	const grace = 50 * time.Millisecond
	var worst time.Duration
	late := 0
	for _, u := range b.adm {
		worst = max(worst, u.at.Sub(u.enq))
		for _, x := range aAt {
			if x.After(u.enq.Add(grace)) && x.Before(u.at) {
				late++
			}
		}
	}
	t.Logf("B: %d urgent admitted, longest wait %v; A: %d bulk admitted of %d", len(b.adm), worst, len(a.adm), a.sent)
	if late > 0 {
		t.Errorf("%d bulk admissions on A while an urgent request had waited over %v on B", late, grace)
	}
	if len(a.adm) < 2*limit {
		t.Errorf("A got only %d bulk requests through: B should leave it the rest of the quota", len(a.adm))
	}
	checkQuotaWindows(t, slices.SortedFunc(slices.Values(append(aAt, b.times()...)), func(x, y time.Time) int { return x.Compare(y) }), limit, per)
}
