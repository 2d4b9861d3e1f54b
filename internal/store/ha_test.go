package store

import (
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/testredis"
)

// haConfig is redis.* for the tests: timeout 100 ms, on_error local.
func haConfig(prefix string) config.Redis {
	return config.Redis{KeyPrefix: prefix, Timeout: 100 * time.Millisecond, OnError: config.OnErrorLocal}
}

// Sentinel: a master, a replica and three sentinels; three replicas
// offered twice a shared rate of 200/s; the master SIGKILLed a third of
// the way in. Every request is answered; admissions stay within
// rate × t + burst over every window, plus the outage allowance (one
// burst: fleet.allowance, docs/shared-quota.md); every replica uses the
// store again within 1 s of the promotion.
func TestSentinelFailover(t *testing.T) {
	set := testredis.StartSentinels(t)
	rc := haConfig("ha")
	rc.Sentinel = config.RedisSentinel{Master: testredis.SentinelMaster, Addrs: set.Addrs()}
	const rate, burst, n = 200, 10, 3
	f := newFleet(t, rc, n, rate, burst)
	// The promotion: the replica answers ROLE as master (REPLICAOF NO
	// ONE from the sentinels' leader); then the announcement: the first
	// sentinel that names it master, which is when a client can learn it.
	var promoted, announced time.Time
	f.run(6*time.Second, 2*rate/n, func() {
		set.Master.Kill()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline) && announced.IsZero(); <-tick.C {
			if role, err := set.Replica.Do("ROLE"); promoted.IsZero() && err == nil {
				if l, ok := role.([]any); ok && len(l) > 0 && l[0] == "master" {
					promoted = time.Now()
				}
			}
			for i := range set.Sentinels {
				if addr, err := set.MasterAddr(i); err == nil && addr == set.Replica.Addr() {
					announced = time.Now()
					break
				}
			}
		}
	})
	if promoted.IsZero() || announced.IsZero() {
		t.Fatalf("the replica was not promoted and announced within 4 s of the master's death (promoted %v)", promoted)
	}
	t.Logf("sentinels named the new master %v after its promotion", announced.Sub(promoted))
	f.mu.Lock()
	outages := f.outages
	f.mu.Unlock()
	if len(outages) == 0 {
		t.Fatal("no replica saw the store down while the master was dead")
	}
	worst := time.Duration(0)
	for _, o := range outages {
		after := o.up.Sub(announced)
		worst = max(worst, after)
		t.Logf("a replica was without the store for %v; up again %v after the announcement (%v after the promotion)", o.up.Sub(o.down), after, o.up.Sub(promoted))
	}
	if worst > time.Second {
		t.Errorf("a replica used the store again only %v after the sentinels named the new master, want within 1 s", worst)
	}
	for i, s := range f.ss {
		if !s.Status().Up {
			t.Errorf("replica %d still down at the end", i)
		}
	}
	// Redis replicates asynchronously: the promoted replica may miss the
	// master's last writes, and the tokens they granted can be granted
	// again (docs/shared-quota.md, "The bound across an outage"): allow
	// rate × 50 ms of replication lag.
	f.check(f.allowance(n) + rate*50/1000)
}

// Cluster: three masters; three replicas offered twice a shared rate of
// 200/s; the {prefix} slot moved to another node a third of the way in
// (IMPORTING, MIGRATING, MIGRATE one key at a time, SETSLOT NODE: the
// calls meet TRYAGAIN, ASK and MOVED). Every request is answered, every
// window within rate × t + burst (plus the outage allowance, if a
// replica fell back meanwhile), the rate within 2% after the first
// second.
func TestClusterReshard(t *testing.T) {
	c := testredis.StartCluster(t)
	rc := haConfig("ha")
	rc.Cluster.Addrs = c.Addrs()[:1] // one seed: the client learns the others
	slot := c.KeySlot("{ha}:bucket")
	from := c.Owner(slot)
	to := c.Nodes[0]
	if to == from {
		to = c.Nodes[1]
	}
	const rate, burst, n = 200, 10, 3
	f := newFleet(t, rc, n, rate, burst)
	start := time.Now()
	var moved time.Duration
	f.run(6*time.Second, 2*rate/n, func() {
		t0 := time.Now()
		c.Reshard(slot, from, to)
		moved = time.Since(t0)
	})
	if got := c.Owner(slot); got != to {
		t.Fatalf("slot %d on %s after the reshard, want %s", slot, got.Addr(), to.Addr())
	}
	if keys, _ := to.MustDo("CLUSTER", "COUNTKEYSINSLOT", slot).(int64); keys < 3 {
		t.Errorf("%d keys of the slot on the new node, want bucket, limits and replicas", keys)
	}
	f.mu.Lock()
	outages := len(f.outages)
	f.mu.Unlock()
	got := f.accuracy(start, time.Second, 6*time.Second)
	t.Logf("slot %d moved %s → %s in %v; admitted %.1f/s (rate %d); %d fallbacks to on_error", slot, from.Addr(), to.Addr(), moved, got, rate, outages)
	if got < 0.98*rate || got > 1.02*rate {
		t.Errorf("admitted %.1f/s across the reshard, want %d/s ± 2%%", got, rate)
	}
	f.check(f.allowance(n))
}
