package dispatch

import (
	"testing"
	"time"
)

// AcquireFree takes a free tunnel slot while the queue is full, without
// evicting anyone (Enqueue would shed the waiting request); it holds
// nothing when no slot is free, for a request that needs a token, or while
// draining. Its permit takes no token and gives the slot back on Release,
// to a queued free request first.
func TestAcquireFree(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst, l.Concurrency, l.QueueSize, l.MaxTunnels = 1, 1, 1, 1, 2
	h := newHarness(t, l, 0)
	h.add("running", 7) // takes the token and the concurrency slot
	h.add("waiting", 7) // the queue (size 1) is full
	h.granted("running")
	tunnel := Request{Urgency: 0, Kind: Tunnel, Dest: "api.example:443", NoToken: true}

	if _, ok := h.d.AcquireFree(Request{Urgency: 0, Kind: Tunnel, Dest: "api.example:443"}); ok {
		t.Fatal("AcquireFree granted a request that needs a token")
	}
	p1, ok := h.d.AcquireFree(tunnel)
	if !ok {
		t.Fatal("AcquireFree refused a free request with a free tunnel slot")
	}
	p2, ok := h.d.AcquireFree(tunnel)
	if !ok {
		t.Fatal("AcquireFree refused the second tunnel slot")
	}
	if _, ok := h.d.AcquireFree(tunnel); ok {
		t.Fatal("AcquireFree granted beyond max_tunnels")
	}
	h.pending("waiting") // not shed
	s := h.d.Stats()
	if s.Tunnels != 2 || s.Depth != 1 || s.Tokens > 0.001 || s.Admitted != 3 {
		t.Fatalf("tunnels %d depth %d tokens %.3f admitted %d: want 2 tunnels, the one waiting request, no token taken, 3 admitted",
			s.Tunnels, s.Depth, s.Tokens, s.Admitted)
	}
	if p1.Waited() != 0 {
		t.Errorf("waited %v, want 0", p1.Waited())
	}

	// A released slot goes to a free request already queued for it, not to
	// AcquireFree.
	h.release("running")
	h.clk.Advance(time.Second) // the next token: the queue empties
	h.granted("waiting")
	if err := h.enqueue("queued tunnel", tunnel); err != nil {
		t.Fatal(err)
	}
	h.pending("queued tunnel")
	p1.Release()
	p1.Release() // idempotent
	h.granted("waiting", "queued tunnel")
	if _, ok := h.d.AcquireFree(tunnel); ok {
		t.Fatal("AcquireFree took a slot the queued tunnel holds")
	}
	p2.Release()
	p3, ok := h.d.AcquireFree(tunnel)
	if !ok {
		t.Fatal("AcquireFree refused a released slot")
	}
	p3.Release()

	h.d.Drain()
	if _, ok := h.d.AcquireFree(tunnel); ok {
		t.Fatal("AcquireFree granted while draining")
	}
}
