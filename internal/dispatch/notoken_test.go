package dispatch

import (
	"testing"
	"time"
)

// A NoToken request (an intercepted CONNECT) needs its slot only: it goes
// at once while a backlog waits for rate tokens, takes no token, ignores
// hosts rules and pauses, and still waits for a free tunnel slot.
func TestNoTokenNeedsItsSlotOnly(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst, l.MaxTunnels = 1, 1, 2
	h := newHostsHarness(t, l, hostLimit(t, "api.example:443", 1, 1, 0))
	h.d.Pause("api.example:443", t0.Add(time.Hour))
	h.add("http1", 0) // takes the one token
	h.add("http2", 0) // waits a second for the next
	h.granted("http1")
	mustEnqueue := func(name string, r Request) {
		t.Helper()
		if err := h.enqueue(name, r); err != nil {
			t.Fatal(err)
		}
	}
	// A token-needing tunnel waits behind the backlog.
	mustEnqueue("plain", Request{Urgency: 7, Kind: Tunnel, Dest: "other.example:443"})
	// Free tunnels go at once, least urgent or not, to a paused and
	// rate-ruled destination, with no token left.
	mustEnqueue("free1", Request{Urgency: 7, Kind: Tunnel, Dest: "api.example:443", NoToken: true})
	h.granted("http1", "free1")
	mustEnqueue("free2", Request{Urgency: 7, Kind: Tunnel, Dest: "api.example:443", NoToken: true})
	h.granted("http1", "free1", "free2")
	// max_tunnels 2: the third free tunnel waits for a slot, not a token.
	mustEnqueue("free3", Request{Urgency: 7, Kind: Tunnel, Dest: "api.example:443", NoToken: true})
	h.pending("free3")
	h.release("free1")
	h.granted("http1", "free2", "free3")
	if s := h.d.Stats(); s.Tokens > 0.001 || s.Tunnels != 2 {
		t.Fatalf("tokens %.3f tunnels %d: free tunnels took a token or no slot", s.Tokens, s.Tunnels)
	}
	// The token-needing ones still follow the rate: one second later the
	// most urgent (http2) goes; the tunnel, once a slot and a token are
	// there.
	h.clk.Advance(time.Second)
	h.granted("http1", "http2", "free2", "free3")
	h.release("free2")
	h.clk.Advance(time.Second)
	h.granted("http1", "http2", "free3", "plain")
	// A released free permit gives back no token it never took.
	before := h.d.Stats().Tokens
	h.release("free3")
	if after := h.d.Stats().Tokens; after != before {
		t.Fatalf("tokens %v → %v on releasing a free permit", before, after)
	}
}
