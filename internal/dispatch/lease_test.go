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
	// Off: the local bucket again, leases dropped; it starts empty
	// (outage.go): its first token comes after 1/rate.
	h.d.SetLeased(false)
	h.add("e4", 4)
	h.granted("b1", "c3", "a5")
	h.clk.Advance(time.Millisecond)
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
	h.d.SetLeased(false) // the rule's local bucket (1000/s) again, empty at first
	h.granted("other", "a")
	h.clk.Advance(time.Millisecond)
	h.granted("other", "a", "b")
}

// Each Grant's tokens expire on their own: a later Grant never extends an
// earlier one's. Requests held by the concurrency cap while grants keep
// coming must not find, when the cap opens, tokens leased long ago: spent
// at once, they would break the shared bucket's rate × t + burst bound
// (the over-admission after a concurrency raise, issue 22).
func TestLeaseGrantKeepsEarlierExpiry(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	h.add("a", 3)
	h.add("b", 3)
	h.add("c", 3)
	h.d.Grant(3, t0.Add(100*time.Millisecond)) // a goes; b and c wait for the slot
	h.granted("a")
	h.clk.Advance(60 * time.Millisecond)
	h.d.Grant(1, h.clk.Now().Add(100*time.Millisecond))
	if dm := h.d.Demand(); dm.Unspent != 3 {
		t.Fatalf("unspent %d, want 3", dm.Unspent)
	}
	h.clk.Advance(50 * time.Millisecond) // the first grant's two are gone
	if dm := h.d.Demand(); dm.Unspent != 1 {
		t.Fatalf("unspent %d at +110ms, want 1: the second grant extended the first", dm.Unspent)
	}
	h.release("a") // the cap opens: one token left, b goes, c waits
	h.granted("b")
	h.pending("c")
	// A refund returns the token to its own lease, which still ends at
	// +160ms.
	h.tickets["b"].Cancel()
	delete(h.tickets, "b")
	h.granted("c")
	h.tickets["c"].Cancel()
	delete(h.tickets, "c")
	if dm := h.d.Demand(); dm.Unspent != 1 {
		t.Fatalf("unspent %d after the refund, want 1", dm.Unspent)
	}
	h.clk.Advance(50 * time.Millisecond)
	if dm := h.d.Demand(); dm.Unspent != 0 {
		t.Fatalf("unspent %d at +160ms, want 0: a refund outlived its lease", dm.Unspent)
	}
}
