package dispatch

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Provider caps (caps.go; docs/shaping.md, "Provider rate-limit headers"),
// on the fake clock.

// An exhausted cap holds its destination's lane until the stated reset,
// other destinations go meanwhile, and at the reset the cap ends.
func TestCapExhaustedWaitsUntilReset(t *testing.T) {
	h := newHarness(t, unlimited(), 0)
	const api, other = "api.example:443", "other.example:443"
	reset := t0.Add(2 * time.Second)
	h.d.Cap(api, CapRequests, 3, reset)
	for i := range 3 {
		h.addTo(fmt.Sprintf("a%d", i), 0, api)
	}
	h.addTo("a3", 0, api) // the 4th: nothing left
	h.addTo("o", 7, other)
	h.granted("a0", "a1", "a2", "o")
	h.pending("a3")
	if c := h.d.Stats().Caps; len(c) != 1 || c[0].Dest != api || c[0].Remaining != 0 || c[0].Stated != 3 || !c[0].Until.Equal(reset) || c[0].Unit != CapRequests {
		t.Fatalf("Stats().Caps = %+v, want %s 0 left of 3 until +2s", c, api)
	}
	if l, _ := h.d.Dump().Lane(HTTP, api); l.State != "sleeping" || !l.WakeAt.Equal(reset) {
		t.Fatalf("lane %+v, want sleeping until the reset", l)
	}
	// Releasing does not give a unit back: the request was sent.
	h.release("a0")
	h.pending("a3")
	h.clk.Advance(2*time.Second - time.Nanosecond)
	h.pending("a3")
	h.clk.Advance(time.Nanosecond)
	h.granted("a1", "a2", "a3", "o")
	if c := h.d.Stats().Caps; len(c) != 0 {
		t.Fatalf("caps after the reset: %+v", c)
	}
	if dm := h.d.Dump(); dm.Caps != 0 {
		t.Fatalf("an ended cap is still remembered: %d", dm.Caps)
	}
}

// A newer response replaces the cap: a raise lets a waiting request go at
// once, a lowering holds requests that the old cap would have admitted.
func TestCapNewerResponseReplaces(t *testing.T) {
	h := newHarness(t, unlimited(), 0)
	const api = "api.example:443"
	h.d.Cap(api, CapRequests, 1, t0.Add(time.Minute))
	h.addTo("a", 0, api)
	h.addTo("b", 0, api)
	h.granted("a")
	// a's response: 2 left (the provider counted a, and the cap counts
	// admissions from now on).
	h.d.Cap(api, CapRequests, 2, t0.Add(time.Minute))
	h.granted("a", "b")
	h.addTo("c", 0, api)
	h.granted("a", "b", "c")
	h.addTo("d", 0, api)
	h.pending("d")
	// Lowered to 0 left until +10s (a later, shorter window): d waits
	// for that reset, not the minute.
	h.d.Cap(api, CapRequests, 0, t0.Add(10*time.Second))
	h.clk.Advance(9 * time.Second)
	h.pending("d")
	// Lowered from 5 to 1 before anything is admitted: 1 goes, not 5.
	h.d.Cap("low.example:443", CapRequests, 5, t0.Add(time.Minute))
	h.d.Cap("low.example:443", CapRequests, 1, t0.Add(time.Minute))
	h.addTo("l1", 0, "low.example:443")
	h.addTo("l2", 0, "low.example:443")
	h.granted("a", "b", "c", "l1")
	h.clk.Advance(time.Second)
	h.granted("a", "b", "c", "d", "l1")
	h.pending("l2")
}

// A cap binds HTTP requests only: tunnels and free requests pass, a cap in
// tokens is recorded but not enforced, and a refunded grant (caller gone)
// gives its unit back.
func TestCapScope(t *testing.T) {
	h := newHarness(t, unlimited(), 0)
	const api = "api.example:443"
	until := t0.Add(time.Minute)
	h.d.Cap(api, CapRequests, 1, until)
	h.d.Cap(api, CapTokens, 0, until)
	h.addTo("a", 0, api)
	h.addTo("b", 0, api)
	if err := h.enqueue("tun", Request{Kind: Tunnel, Dest: api}); err != nil {
		t.Fatal(err)
	}
	if err := h.enqueue("free", Request{NoToken: true, Dest: api}); err != nil {
		t.Fatal(err)
	}
	h.granted("a", "tun", "free")
	caps := h.d.Stats().Caps
	if len(caps) != 2 || caps[0].Unit != CapRequests || caps[1].Unit != CapTokens || caps[1].Stated != 0 {
		t.Fatalf("caps %+v, want requests and tokens", caps)
	}
	// a's caller leaves after the grant: the unit comes back, b goes.
	h.tickets["a"].Cancel()
	h.granted("b", "tun", "free")
	// A ticket waiting on an exhausted cap is told when it may retry.
	if err := h.enqueue("c", Request{Dest: api, Deadline: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(time.Second)
	if ra := h.rejected("c", ErrQueueTimeout).RetryAfter; ra < 59*time.Second {
		t.Fatalf("RetryAfter %v, want the cap's remaining 59s", ra)
	}
}

// A grant after a refund from a replaced cap does not inflate the new one.
func TestCapStaleRefundIgnored(t *testing.T) {
	h := newHarness(t, unlimited(), 0)
	const api = "api.example:443"
	h.d.Cap(api, CapRequests, 1, t0.Add(time.Minute))
	h.addTo("a", 0, api)
	h.d.Cap(api, CapRequests, 1, t0.Add(time.Minute)) // a newer response
	h.tickets["a"].Cancel()                           // refund: ignored
	if c := h.d.Stats().Caps[0]; c.Remaining != 1 {
		t.Fatalf("remaining %d after a stale refund, want 1", c.Remaining)
	}
}

// A waiting ticket goes when the timer marks the reset.
func TestCapWaitAtReset(t *testing.T) {
	h := newHarness(t, unlimited(), 0)
	const api = "api.example:443"
	h.d.Cap(api, CapRequests, 0, t0.Add(time.Second))
	tk, err := h.d.Enqueue(Request{Dest: api})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Poll(); err != ErrPending {
		t.Fatalf("before the reset: %v, want pending", err)
	}
	h.clk.Advance(time.Second)
	p, err := tk.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Release()
}

// Caps stay bounded whatever the number of destinations: at most
// maxPauses, the soonest-ending evicted, the heap within twice that.
func TestCapsBounded(t *testing.T) {
	h := newHarness(t, unlimited(), 0)
	n := 3 * maxPauses
	base := t0.Add(time.Hour)
	for i := range n {
		dest := fmt.Sprintf("h%d.example:443", i)
		h.d.Cap(dest, CapRequests, 10, base.Add(time.Duration(i)*time.Millisecond))
		if i%5 == 0 {
			h.d.Cap(dest, CapRequests, 9, base.Add(time.Duration(i)*time.Millisecond+time.Second)) // a stale heap entry
		}
		if dm := h.d.Dump(); i%1000 == 0 && (dm.Caps > maxPauses || dm.CapHeap > 2*maxPauses+65) {
			t.Fatalf("after %d destinations: %d caps, heap %d (bound %d)", i, dm.Caps, dm.CapHeap, maxPauses)
		}
	}
	dm := h.d.Dump()
	if dm.Caps != maxPauses || dm.CapHeap > 2*maxPauses+65 {
		t.Fatalf("%d caps, heap %d; want %d, heap within %d", dm.Caps, dm.CapHeap, maxPauses, 2*maxPauses+65)
	}
	// The soonest-ending were evicted: the last destination is still capped.
	caps := h.d.Stats().Caps
	kept := map[string]bool{}
	for _, c := range caps {
		kept[c.Dest] = true
	}
	if !kept[fmt.Sprintf("h%d.example:443", n-1)] || kept["h1.example:443"] {
		t.Fatalf("kept %d caps, the earliest first: %s", len(caps), caps[0].Dest)
	}
	h.clk.Advance(2 * time.Hour)
	h.addTo("x", 0, "x.example:443") // runs admission, which forgets ended caps
	if dm := h.d.Dump(); dm.Caps != 0 {
		t.Fatalf("%d caps after all ended", dm.Caps)
	}
}
