package dispatch

import (
	"testing"
	"time"
)

// Leased global tokens: nothing goes without a Grant, a Grant admits as
// many as it carries, most urgent first; unspent tokens expire; a permit
// given back returns its token to the lease; Demand counts by urgency.
func TestLeasedTokens(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst = 1000, 1000 // the local bucket would admit everything
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	h.add("a5", 5)
	h.add("b1", 1)
	h.add("c3", 3)
	h.granted()
	if dm := h.d.Demand(); dm.Waiting != 3 || dm.ByPriority[1] != 1 || dm.ByPriority[5] != 1 || dm.Unspent != 0 {
		t.Fatalf("demand %+v", dm)
	}
	h.d.Grant(2, t0.Add(100*time.Millisecond))
	h.granted("b1", "c3")
	// Unspent tokens expire.
	h.d.Grant(3, t0.Add(100*time.Millisecond)) // a5 takes one, two stay
	h.granted("b1", "c3", "a5")
	if dm := h.d.Demand(); dm.Unspent != 2 || dm.Waiting != 0 {
		t.Fatalf("demand %+v, want 2 unspent", dm)
	}
	h.clk.Advance(150 * time.Millisecond)
	h.add("d0", 0)
	h.granted("b1", "c3", "a5")
	if dm := h.d.Demand(); dm.Unspent != 0 {
		t.Fatalf("expired lease still counted: %+v", dm)
	}
	// A canceled grant gives its token back to the lease.
	h.d.Grant(1, h.clk.Now().Add(100*time.Millisecond))
	h.granted("b1", "c3", "a5", "d0")
	h.tickets["d0"].Cancel()
	delete(h.tickets, "d0")
	if dm := h.d.Demand(); dm.Unspent != 1 {
		t.Fatalf("refund: %+v, want the token back", dm)
	}
	// Off: the local bucket again, leases dropped.
	h.d.SetLeased(false)
	h.add("e4", 4)
	h.granted("b1", "c3", "a5", "e4")
}

// With leases on, a hosts rule with a rate spends its own leased tokens
// (GrantRules) besides the global ones; Demand reports its waiting
// requests; turning leases off hands the rule back to its local bucket.
func TestLeasedRuleTokens(t *testing.T) {
	l := unlimited()
	h := newHostsHarness(t, l, hostLimit(t, "api.example:443", 1000, 1000, 0))
	h.d.SetLeased(true)
	h.d.Grant(100, t0.Add(time.Hour)) // global tokens aplenty
	h.addTo("a", 3, "api.example:443")
	h.addTo("b", 3, "api.example:443")
	h.addTo("other", 3, "other.example:443")
	h.granted("other") // no rule: the global lease is enough
	dm := h.d.Demand()
	if len(dm.Rules) != 1 || dm.Rules[0].Match != "api.example:443" || dm.Rules[0].Waiting != 2 || dm.Rules[0].Rate != 1000 {
		t.Fatalf("rule demand %+v", dm.Rules)
	}
	h.d.GrantRules(map[string]int{"api.example:443": 1}, t0.Add(time.Hour))
	h.granted("other", "a")
	h.d.SetLeased(false) // the rule's local bucket (1000/s) again
	h.granted("other", "a", "b")
}
