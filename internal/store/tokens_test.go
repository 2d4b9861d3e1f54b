package store

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/testredis"
)

// Tokens quotas shared through Redis (docs/shared-quota.md, "Tokens").

// The quota script for a hosts rule's tokens quota directly: a head is
// granted all it lacks or nothing; the replicas' heads are served in
// order (urgency, then when each was first reported): a later head of
// the same urgency does not take room that an earlier one waits for,
// however small it is, while a more urgent one does; a refund uncharges
// its units from the slot where its batch's spends were placed, and the
// waiting head then fits; a head's place is kept while it stays the head.
func TestQuotaScriptHeads(t *testing.T) {
	r := testredis.Start(t)
	s := newStore(t, r.URL(), &fakeDisp{})
	defer s.Close()
	ctx := context.Background()
	if err := initScript.Run(ctx, s.rdb, s.keys, "0", 1).Err(); err != nil {
		t.Fatal(err)
	}
	key := s.quotaKey(dispatch.QuotaDemand{Scope: "api.example:443", Per: time.Minute, Unit: "tokens"})
	if want := "{t}:quota:rule:api.example:443:1m:tokens"; key != want {
		t.Fatalf("quota key %q, want %q", key, want)
	}
	seq := uint64(0)
	// call runs the script for replica id with one rule quota of 1000
	// tokens per minute: its head (urgency u, lacking need, id hid),
	// want, and settlements (lease, spent, offset µs triples; lease "r":
	// a refund of spent at Redis µs offset); it returns {granted, used,
	// Redis time}.
	call := func(id string, u, need, want int, hid uint64, settle ...any) (g, used, at int64) {
		t.Helper()
		seq++
		args := []any{id, 0, "0,0,0,0,0,0,0,0", FreshDemand.Microseconds(), (2 * time.Second).Microseconds(), 0, 0, LeaseTTL.Microseconds(),
			1, seq, 0, 1000, time.Minute.Microseconds(), want, u, need, hid, len(settle) / 3}
		args = append(args, settle...)
		res, err := leaseScript.Run(ctx, s.rdb, append(slices.Clone(s.keys), key), args...).Slice()
		if err != nil {
			t.Fatal(err)
		}
		q := res[7].([]any)[0].([]any)
		return q[0].(int64), q[1].(int64), q[2].(int64)
	}
	g, used, atA := call("a", 3, 800, 800, 1)
	if g != 800 || used != 800 {
		t.Fatalf("a's head: %d granted, %d used; want 800, 800", g, used)
	}
	leaseA := seq
	// b's head (300) does not fit in the 200 left: nothing, not a part.
	if g, used, _ := call("b", 3, 300, 300, 1); g != 0 || used != 800 {
		t.Fatalf("b's head: %d granted (%d used); want nothing: 300 do not fit in 200", g, used)
	}
	// c's head came later at the same urgency: the 100 it needs fit,
	// but b's head goes first.
	if g, _, _ := call("c", 3, 100, 100, 1); g != 0 {
		t.Fatalf("c's later head got %d units that b's earlier one waits for", g)
	}
	// A more urgent head goes before both.
	if g, used, _ := call("d", 1, 150, 150, 1); g != 150 || used != 950 {
		t.Fatalf("d's urgent head: %d granted, %d used; want 150, 950", g, used)
	}
	// b asks again with the same head: still short, still first.
	if g, _, _ := call("b", 3, 300, 300, 1); g != 0 {
		t.Fatalf("b got %d of the 50 left", g)
	}
	// a's lease is spent (800 at +1 ms), then 500 of it refunded (the
	// usage was lower): 450 counted, 550 free; c's head fits in what
	// b's leaves (250), and b's in the rest.
	if g, used, _ := call("a", 8, 0, 0, 0, leaseA, 800, 1000, "r", 500, atA+1000); g != 0 || used != 450 {
		t.Fatalf("a's settlement and refund: %d granted, %d used; want 0, 450", g, used)
	}
	if g, used, _ := call("c", 3, 100, 100, 1); g != 100 || used != 550 {
		t.Fatalf("c's head: %d granted, %d used; want 100 of the 250 beyond b's head", g, used)
	}
	if g, used, _ := call("b", 3, 300, 300, 1); g != 300 || used != 850 {
		t.Fatalf("b's head after the refund: %d granted, %d used; want 300, 850", g, used)
	}
	// A refund whose slot is not in the window changes nothing.
	if _, used, _ := call("a", 8, 0, 0, 0, "r", 500, atA-2*time.Minute.Microseconds()); used != 850 {
		t.Fatalf("a refund from a slot that left the window: %d used, want 850", used)
	}
}

// tokensReq is one request of the tokens fleet test.
type tokensReq struct {
	est, actual int64
	at          time.Time // admitted
}

// Three replicas (a dispatcher and a Store each) share a hosts rule's
// tokens quota of 20,000 per second through a real redis-server, offered
// twice that in usage between them (three times in estimates) for 4.3 s,
// in heavy-tailed sizes (20 to 4,000 tokens, most small); each response
// "ends" 10–60 ms after its admission and settles its usage: a quarter
// to all of its estimate, and one in ten 20% more (debt). Admission-time
// bound: in every interval of 1 s the requests admitted fleet-wide, each
// counted at the lesser of its usage and its estimate, hold at most
// 20,000 tokens. Utilisation: the usage admitted over 3 windows (after
// the first, once the overload is sustained) is at least 90% of the
// quota, which their estimates exceed by far: the refunds reached the
// fleet's window. Every request is answered.
func TestSharedTokensQuotaAcrossReplicas(t *testing.T) {
	const limit, per = 20000, time.Second
	match, err := config.ParseHostPattern("api.example:443")
	if err != nil {
		t.Fatal(err)
	}
	cfg := dispatch.Config{
		Limits: dispatch.Limits{QueueSize: 10000, MaxWait: 1500 * time.Millisecond, MaxTunnels: 1, Burst: 1},
		Hosts: []dispatch.HostLimit{{Match: match, CostDefault: 1000,
			Quotas: []dispatch.Quota{{Limit: limit, Per: per, Unit: config.QuotaTokens}}}},
	}
	f := startFleet(t, 3, cfg)
	const dur = 4300 * time.Millisecond
	var mu sync.Mutex
	var adm []tokensReq
	var sent, answered, debts int
	var wg, load sync.WaitGroup
	start := time.Now()
	for i, d := range f.ds {
		load.Go(func() {
			rng := rand.New(rand.NewPCG(24, uint64(i)))
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			var offered int64
			for now := time.Now(); now.Before(start.Add(dur)); now = <-tick.C {
				for float64(offered) < now.Sub(start).Seconds()*3*limit/3 {
					u := rng.Float64()
					est := 20 + int64(3980*u*u*u)
					actual := int64(float64(est) * (0.25 + 0.75*rng.Float64()))
					if rng.IntN(10) == 0 {
						actual = est * 6 / 5
					}
					offered += est
					tk, err := d.Enqueue(dispatch.Request{Urgency: 3, Dest: "api.example:443", Cost: est})
					mu.Lock()
					sent++
					if err != nil {
						answered++
						mu.Unlock()
						continue
					}
					mu.Unlock()
					hold := time.Duration(10+rng.IntN(50)) * time.Millisecond
					wg.Add(1)
					go func() {
						p, err := tk.Wait(context.Background())
						mu.Lock()
						answered++
						if err != nil {
							mu.Unlock()
							var rej *dispatch.RejectError
							if !errors.As(err, &rej) {
								t.Errorf("request answered %v", err)
							}
							wg.Done()
							return
						}
						adm = append(adm, tokensReq{est: est, actual: actual, at: p.Arrival().Add(p.Waited())})
						if actual > est {
							debts++
						}
						mu.Unlock()
						time.AfterFunc(hold, func() { // the response ends
							p.Settle(actual)
							p.Release()
							wg.Done()
						})
					}()
				}
			}
		})
	}
	load.Wait()
	wg.Wait()
	if answered != sent || len(adm) == 0 {
		t.Fatalf("%d of %d requests answered, %d admitted", answered, sent, len(adm))
	}
	slices.SortFunc(adm, func(a, b tokensReq) int { return a.at.Compare(b.at) })
	worst := int64(0)
	for i := range adm {
		var n int64
		for _, r := range adm[i:] {
			if r.at.Sub(adm[i].at) >= per {
				break
			}
			n += min(r.actual, r.est)
		}
		worst = max(worst, n)
	}
	var used, est int64
	for _, r := range adm {
		// The 3 windows after the first: sustained overload.
		if d := r.at.Sub(adm[0].at); d >= per && d < 4*per {
			used += r.actual
			est += r.est
		}
	}
	t.Logf("%d of %d admitted (%d with debt); any 1 s: at most %d tokens at min(usage, estimate) (quota %d); windows 2–4: usage %d (%.1f%% of %d), estimates %d",
		len(adm), sent, debts, worst, limit, used, float64(used)*100/(3*limit), 3*limit, est)
	if worst > limit {
		t.Errorf("%d tokens (each at the lesser of usage and estimate) admitted within %v: the quota is %d", worst, per, limit)
	}
	if used*100 < 90*3*limit {
		t.Errorf("usage %d admitted over 3 windows, want at least 90%% of %d", used, 3*limit)
	}
	if est <= int64(math.Round(1.1*3*limit)) {
		t.Errorf("estimates admitted over 3 windows %d: not above the quota, so the test does not show that refunds reached Redis", est)
	}
}
