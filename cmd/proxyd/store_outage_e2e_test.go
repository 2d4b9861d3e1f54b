package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/testredis"
)

// limitRate is the proxyd_limit_rate gauge: the rate this replica enforces.
func limitRate(t *testing.T, p *proc) float64 {
	t.Helper()
	f := scrape(t, p)["proxyd_limit_rate"]
	if f == nil || len(f.GetMetric()) == 0 {
		t.Fatal("no proxyd_limit_rate")
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// Two replicas at rate 200, Redis killed: each keeps 200 / 2 locally. A
// PATCH that does not touch the rate (concurrency) keeps that share; a
// PATCH of the rate during the outage applies at once, at the share
// (50 / 2), and is written to the store when it answers again, so that
// both replicas then show and enforce 50 (docs/shared-quota.md). The
// replica that made the change never logs it as another replica's.
// Before issue 22 the concurrency PATCH put the full 200 back on that
// replica, and the rate PATCH was replaced by 200 after the outage.
func TestSharedStoreOutageKeepsLocalShare(t *testing.T) {
	r := testredis.Start(t)
	ps := startReplicas(t, 2, r.URL(), "")
	for _, p := range ps {
		waitFor(t, 5*time.Second, "both replicas seen", func() (bool, any) {
			s := readStore(t, p)
			return s.Replicas == 2, s
		})
	}
	r.Kill()
	for _, p := range ps {
		waitStore(t, p, false)
		if g := limitRate(t, p); g != 100 {
			t.Fatalf("proxyd_limit_rate %v during the outage, want 200 / 2", g)
		}
	}
	patch(t, ps[0], `{"concurrency":32}`)
	if g := limitRate(t, ps[0]); g != 100 {
		t.Errorf("proxyd_limit_rate %v after a concurrency PATCH during the outage, want 100: the share was lost", g)
	}
	patch(t, ps[0], `{"rate":50}`)
	if g := limitRate(t, ps[0]); g != 25 {
		t.Errorf("proxyd_limit_rate %v after PATCH rate 50 during the outage, want 50 / 2", g)
	}
	if l := readLimits(t, ps[0]); l["rate"] != 50.0 || l["concurrency"] != 32.0 {
		t.Errorf("GET /api/v1/limits during the outage: %v", l)
	}
	r.Restart()
	for _, p := range ps {
		waitStore(t, p, true)
	}
	for i, p := range ps {
		waitFor(t, 1500*time.Millisecond, fmt.Sprintf("replica %d shows and enforces the change made during the outage", i), func() (bool, any) {
			l, g := readLimits(t, p), limitRate(t, p)
			return l["rate"] == 50.0 && g == 50, fmt.Sprintf("limits %v, gauge %v", l, g)
		})
	}
	// The log is flushed every 200 ms.
	waitFor(t, time.Second, "the other replica logs the fleet-wide change", func() (bool, any) {
		return strings.Contains(ps[1].log.String(), "fleet-wide limits changed by another replica"), nil
	})
	if strings.Contains(ps[0].log.String(), "fleet-wide limits changed by another replica") {
		t.Errorf("the replica that made the change logged it as another replica's:\n%s", ps[0].log.String())
	}
}

// One replica, limits PATCHed in quick succession while its lease loop
// runs: it never logs one of its own changes as another replica's, and
// ends with the last one.
func TestSharedLimitsOwnChangesNotLogged(t *testing.T) {
	r := testredis.Start(t)
	ps := startReplicas(t, 1, r.URL(), "")
	for i := range 40 {
		patch(t, ps[0], fmt.Sprintf(`{"rate":%d,"burst":%d}`, 100+i, 10+i))
	}
	if l := readLimits(t, ps[0]); l["rate"] != 139.0 || l["burst"] != 49.0 {
		t.Fatalf("limits %v, want the last PATCH", l)
	}
	// Two more lease calls (IdleInterval 100 ms each) to see the reply
	// that raced with the last write, if any.
	calls := func() float64 {
		f := scrape(t, ps[0])["proxyd_store_requests_total"]
		if f == nil {
			t.Fatal("no proxyd_store_requests_total")
		}
		return f.GetMetric()[0].GetCounter().GetValue()
	}
	before := calls()
	waitFor(t, 2*time.Second, "two more lease calls", func() (bool, any) {
		n := calls()
		return n >= before+2, n
	})
	if l := readLimits(t, ps[0]); l["rate"] != 139.0 || l["burst"] != 49.0 {
		t.Fatalf("limits %v after the lease calls, want the last PATCH", l)
	}
	ps[0].stop(t) // flushes the log
	if n := strings.Count(ps[0].log.String(), "fleet-wide limits changed by another replica"); n > 0 {
		t.Errorf("a single replica logged %d fleet-wide changes by another replica", n)
	}
}
