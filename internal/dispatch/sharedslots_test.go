package dispatch

import (
	"context"
	"testing"
	"time"
)

// sharedLimits is a dispatcher with a fleet-wide cap of capacity and no
// rate limit, and leases on with global tokens aplenty: only slots hold
// requests back.
func sharedHarness(t *testing.T, capacity int, hosts ...HostLimit) *harness {
	t.Helper()
	l := unlimited()
	l.Concurrency, l.SharedConcurrency = capacity, true
	h := newHostsHarness(t, l, hosts...)
	h.d.SetLeased(true)
	h.d.Grant(1000, t0.Add(time.Hour))
	return h
}

// slotDemand returns the Demand of the cap of scope, failing when absent.
func (h *harness) slotDemand(scope string) SlotDemand {
	h.t.Helper()
	for _, s := range h.d.Demand().Slots {
		if s.Scope == scope {
			return s
		}
	}
	h.t.Fatalf("no slot demand for %q in %+v", scope, h.d.Demand().Slots)
	return SlotDemand{}
}

// The leased slot source: nothing goes without a grant; a grant admits as
// many as it carries, never beyond the target; a freed slot is reused
// here while requests wait; idle slots are given back at the next
// Demand; a lease that is not renewed ends at its expiry.
func TestSharedSlotsLeased(t *testing.T) {
	h := sharedHarness(t, 8)
	h.add("a", 3)
	h.add("b", 3)
	h.add("c", 1)
	h.granted() // no slot leased yet
	want := SlotDemand{Scope: "", Cap: 8, Held: 0, InUse: 0, Want: 1, Waiting: 3, Best: 1}
	if got := h.slotDemand(""); got != want {
		t.Fatalf("demand %+v, want %+v (a batch of one: slotBatch(8))", got, want)
	}
	exp := t0.Add(10 * time.Second)
	h.d.GrantSlots([]SlotGrant{{N: 1, Target: 8}}, exp)
	h.granted("c") // the most urgent
	if got := h.slotDemand(""); got.Held != 1 || got.InUse != 1 || got.Want != 1 || got.Waiting != 2 || got.Best != 3 {
		t.Fatalf("demand %+v, want held 1, in use 1, want 1, 2 waiting at 3", got)
	}
	// A grant beyond the target is cut to it: one more, not three.
	h.d.GrantSlots([]SlotGrant{{N: 3, Target: 2}}, exp)
	h.granted("c", "a")
	// A freed slot goes to the next waiting request here, with no call.
	h.release("c")
	h.granted("a", "b")
	// Idle: the next Demand gives back what nobody needs.
	h.release("a")
	if got := h.slotDemand(""); got.Held != 1 || got.InUse != 1 || got.Want != 0 {
		t.Fatalf("demand %+v, want held 1 (in use), want 0: the idle slot given back", got)
	}
	h.add("d", 3)
	h.granted("b") // its slot was given back: d waits for a grant
	h.d.GrantSlots([]SlotGrant{{N: 1, Target: 8}}, exp)
	h.granted("b", "d")
	// The lease ends at its expiry unless a call renews it: in-flight
	// requests keep their slots, nobody new gets one.
	h.add("e", 3)
	h.clk.Advance(10 * time.Second)
	h.release("b")
	h.granted("d")
	if got := h.slotDemand(""); got.Held != 1 || got.InUse != 1 || got.Want != 1 {
		t.Fatalf("demand after expiry %+v, want held 1 (what is in use), want 1", got)
	}
	h.d.GrantSlots([]SlotGrant{{N: 1, Target: 8}}, h.clk.Now().Add(10*time.Second))
	h.granted("d", "e")
}

// Asked to yield (a target below what it holds, others waiting more
// urgently), a replica keeps its requests in flight but gives each slot
// back as it frees, instead of reusing it for its own waiting requests.
func TestSharedSlotsYield(t *testing.T) {
	h := sharedHarness(t, 8)
	for _, n := range []string{"a", "b", "c", "d"} {
		h.add(n, 5)
	}
	h.d.GrantSlots([]SlotGrant{{N: 3, Target: 8}}, t0.Add(10*time.Second))
	h.granted("a", "b", "c")
	h.d.Demand()
	h.d.GrantSlots([]SlotGrant{{N: 0, Target: 1}}, t0.Add(10*time.Second))
	h.release("a")
	h.release("b")
	h.granted("c") // d waits: the slots went back
	if got := h.slotDemand(""); got.Held != 1 || got.Want != 1 {
		t.Fatalf("demand %+v, want held 1 (c), asking for 1", got)
	}
	h.release("c")
	h.d.GrantSlots([]SlotGrant{{N: 1, Target: 1}}, t0.Add(10*time.Second))
	h.granted("d")
}

// The store cannot be reached (leases off). With on_error: local (share
// 1/2) the replica keeps exactly the slots the store still records for it
// until their lease ends, then caps itself at its share of the cap;
// with open (share 1), the whole cap at once.
func TestSharedSlotsOutage(t *testing.T) {
	h := sharedHarness(t, 4)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		h.add(n, 3)
	}
	h.d.GrantSlots([]SlotGrant{{N: 1, Target: 4}}, t0.Add(time.Second))
	h.granted("a")
	h.d.SetLocalShare(0.5)
	h.d.SetLeased(false)
	h.granted("a") // one slot leased, one used: no more until the lease ends
	if got := h.slotDemand(""); got.Held != 1 {
		t.Fatalf("demand during the outage %+v, want held 1 (the lease, still valid)", got)
	}
	h.clk.Advance(time.Second) // the lease ends: the share, 4 × 1/2
	h.granted("a", "b")
	if got := h.slotDemand(""); got.Held != 2 || got.InUse != 2 {
		t.Fatalf("demand after the lease %+v, want held 2: what is in use", got)
	}
	// on_error: open: the whole cap.
	h.d.SetLocalShare(1)
	h.granted("a", "b", "c", "d")
	// Back: the store's grants again, from what is in use.
	h.d.SetLeased(true)
	h.d.Grant(1000, h.clk.Now().Add(time.Hour)) // tokens: the pool was dropped
	h.release("a")
	h.granted("b", "c", "d") // no lease yet: e waits
	if got := h.slotDemand(""); got.Held != 3 || got.Want != 1 {
		t.Fatalf("demand on return %+v, want held 3 (in use), want 1", got)
	}
	h.d.GrantSlots([]SlotGrant{{N: 1, Target: 4}}, h.clk.Now().Add(time.Second))
	h.granted("b", "c", "d", "e")
}

// A hosts rule's shared cap: its own scope in Demand; a grant wakes the
// lanes waiting for the rule's slots; the global cap, not shared, stays
// per replica; a request held by its rule's cap does not ask for a global
// slot.
func TestSharedRuleSlots(t *testing.T) {
	rule := hostLimit(t, "api.example:443", 0, 1, 2)
	rule.SharedConcurrency = true
	l := unlimited()
	l.Concurrency = 10
	h := newHostsHarness(t, l, rule)
	h.d.SetLeased(true)
	h.d.Grant(1000, t0.Add(time.Hour))
	h.addTo("a", 3, "api.example:443")
	h.addTo("b", 2, "api.example:443")
	h.addTo("x", 3, "other.example:443")
	h.granted("x") // the global cap is this replica's
	dm := h.d.Demand().Slots
	if len(dm) != 1 || dm[0].Scope != "api.example:443" || dm[0].Cap != 2 || dm[0].Waiting != 2 || dm[0].Best != 2 || dm[0].Want != 1 {
		t.Fatalf("slot demand %+v, want the rule's only: 2 waiting, best 2, want 1", dm)
	}
	h.d.GrantSlots([]SlotGrant{{Scope: "api.example:443", N: 1, Target: 2}}, t0.Add(10*time.Second))
	h.granted("x", "b")
	h.d.GrantSlots([]SlotGrant{{Scope: "api.example:443", N: 0, Target: 2}}, t0.Add(10*time.Second))
	h.granted("x", "b")
	h.d.Demand()
	h.d.GrantSlots([]SlotGrant{{Scope: "api.example:443", N: 1, Target: 2}}, t0.Add(10*time.Second))
	h.granted("x", "b", "a")
}

// Without shared_concurrency, or with no cap to share, Demand reports no
// slots and the cap is this replica's alone.
func TestSharedSlotsOffByDefault(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	h.d.Grant(10, t0.Add(time.Hour))
	h.add("a", 3)
	h.granted("a")
	if dm := h.d.Demand(); len(dm.Slots) != 0 {
		t.Fatalf("slots %+v without shared_concurrency", dm.Slots)
	}
	l.Concurrency, l.SharedConcurrency = 0, true // unlimited: nothing to share
	h.d.SetLimits(l)
	h.add("b", 3)
	h.granted("a", "b")
	if dm := h.d.Demand(); len(dm.Slots) != 0 {
		t.Fatalf("slots %+v for an unlimited cap", dm.Slots)
	}
}

// BenchmarkAdmitSharedCap compares admission (Acquire, Release) under a
// cap of this replica's with a fleet-wide one whose slots are leased:
// the shared cap's check is one comparison more, so the two ns/op should
// be within a few percent. Both spend leased tokens.
func BenchmarkAdmitSharedCap(b *testing.B) {
	for _, shared := range []bool{false, true} {
		b.Run(map[bool]string{false: "local", true: "shared"}[shared], func(b *testing.B) {
			d := New(Config{Limits: Limits{Concurrency: 1000, SharedConcurrency: shared, QueueSize: 100, MaxWait: time.Hour, MaxTunnels: 1}}, Deps{})
			defer d.Close()
			far := time.Now().Add(time.Hour)
			d.SetLeased(true)
			d.Grant(1<<30, far)
			d.GrantSlots([]SlotGrant{{N: 1000, Target: 1000}}, far)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				p, err := d.Acquire(ctx, Request{Urgency: 3})
				if err != nil {
					b.Fatal(err)
				}
				p.Release()
			}
		})
	}
}
