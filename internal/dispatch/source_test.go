package dispatch

import (
	"testing"
	"time"
)

// A token goes back to the source it came from, whatever the mode is
// when the permit is given back: a leased token canceled after leases
// were turned off returns to the (dropped) lease, never to the local
// bucket, which would then admit one more than its rate.
func TestRefundGoesToItsSource(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst = 1, 1
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	h.add("a", 3)
	h.d.Grant(1, t0.Add(time.Hour))
	h.granted("a")
	h.d.SetLeased(false) // the local bucket again, empty at first: a token a second
	h.add("b", 3)
	h.granted("a")
	h.clk.Advance(time.Second)
	h.granted("a", "b")
	h.add("c", 3)
	h.tickets["a"].Cancel() // a leased token: not the local bucket's
	delete(h.tickets, "a")
	h.granted("b")
	h.clk.Advance(time.Second)
	h.granted("b", "c")
}

// A hosts rule's lanes asleep for its tokens wake on a grant or refund
// for that rule only; lanes of another rule sleep on.
func TestRuleGrantWakesItsOwnLanes(t *testing.T) {
	h := newHostsHarness(t, unlimited(), hostLimit(t, "a.example", 1000, 1000, 0), hostLimit(t, "b.example", 1000, 1000, 0))
	h.d.SetLeased(true)
	h.d.Grant(100, t0.Add(time.Hour))
	h.addTo("a1", 3, "a.example:443")
	h.addTo("a2", 3, "a.example:8443")
	h.addTo("b1", 3, "b.example:443")
	h.granted()
	if dm := h.d.Dump(); dm.Rules[0].SlotWaiters != 0 || len(dm.Lanes) != 3 || dm.Lanes[0].State != "sleeping" || dm.Lanes[2].State != "sleeping" {
		t.Fatalf("dump %+v", dm)
	}
	h.d.GrantRules(map[string]int{"a.example": 1}, t0.Add(time.Hour))
	h.granted("a1")
	h.d.GrantRules(map[string]int{"b.example": 2}, t0.Add(time.Hour))
	h.granted("a1", "b1")
	h.tickets["a1"].Cancel() // its rule token back: a2 goes
	delete(h.tickets, "a1")
	h.granted("b1", "a2")
	if dm := h.d.Dump(); dm.Rules[0].Unspent != 0 || dm.Rules[1].Unspent != 1 {
		t.Fatalf("rules %+v: want a's refunded token spent, b's spare one left", dm.Rules)
	}
}

// A leased pool takes n tokens from the grants that expire first, and a
// refund of them lasts no longer than the soonest of their leases.
func TestLeasePoolTakeN(t *testing.T) {
	var p leasePool
	p.grant(2, t0.Add(100*time.Millisecond))
	p.grant(3, t0.Add(200*time.Millisecond))
	if ok, _ := p.check(t0, 6); ok {
		t.Fatal("6 of 5 tokens available")
	}
	tk, ok, retry := p.take(t0, 3, 0)
	if !ok || !retry.IsZero() || p.unspent(t0) != 2 {
		t.Fatalf("take 3: ok %v, %d left", ok, p.unspent(t0))
	}
	if _, ok, retry := p.take(t0, 3, 0); ok || !retry.IsZero() {
		t.Fatalf("took 3 of 2: ok %v retry %v (want a wait for the next grant)", ok, retry)
	}
	p.refund(tk, t0.Add(50*time.Millisecond))
	if n := p.unspent(t0.Add(99 * time.Millisecond)); n != 5 {
		t.Fatalf("%d tokens at +99ms after the refund, want 5", n)
	}
	if n := p.unspent(t0.Add(150 * time.Millisecond)); n != 2 {
		t.Fatalf("%d tokens at +150ms, want 2: the refund outlived its first lease", n)
	}
}

// A rule's waiting requests (Stats, Demand) follow its lanes through a
// hosts change that re-matches them.
func TestRuleWaitingFollowsRematch(t *testing.T) {
	h := newHostsHarness(t, unlimited(), hostLimit(t, "*.example", 1, 1, 0))
	for _, n := range []string{"x1", "x2", "x3"} {
		h.addTo(n, 3, "x.example:443")
	}
	h.addTo("y1", 3, "y.example:443")
	h.granted("x1")
	if s := h.d.Stats(); s.Hosts[0].Waiting != 3 {
		t.Fatalf("hosts %+v, want 3 waiting under *.example", s.Hosts)
	}
	h.d.SetHosts([]HostLimit{hostLimit(t, "x.example", 1, 1, 0), hostLimit(t, "*.example", 1, 1, 0)})
	h.granted("x1", "x2") // x.example's new bucket has a token
	s := h.d.Stats()
	if s.Hosts[0].Waiting != 1 || s.Hosts[1].Waiting != 1 {
		t.Fatalf("hosts %+v, want 1 waiting under each rule", s.Hosts)
	}
	h.d.SetLeased(true)
	if dm := h.d.Demand(); len(dm.Rules) != 2 || dm.Rules[0].Waiting != 1 || dm.Rules[1].Waiting != 1 {
		t.Fatalf("demand rules %+v", dm.Rules)
	}
}
