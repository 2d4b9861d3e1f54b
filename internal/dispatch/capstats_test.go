package dispatch

import (
	"testing"
	"time"
)

// The limit a response states is reported beside its cap (the dashboard's
// "Provider limits", docs/admin-api.md), with the hosts rule the
// destination falls under; a newer response that states none clears it.
// It is reported, not enforced: the remaining count alone caps.
func TestCapStatedLimitReported(t *testing.T) {
	h := newHarness(t, unlimited(), 0)
	const api = "api.example:443"
	until := t0.Add(time.Minute)
	h.d.CapStated(api, CapRequests, 1, 60, until)
	h.d.CapStated("tok.example:443", CapTokens, 900, -1, until)
	caps := h.d.Stats().Caps
	if len(caps) != 2 {
		t.Fatalf("caps %+v, want two", caps)
	}
	for _, c := range caps {
		switch c.Dest {
		case api:
			if c.Limit != 60 || c.Stated != 1 || c.Unit != CapRequests {
				t.Errorf("cap %+v, want 1 left of 60 requests", c)
			}
		default:
			if c.Limit != 0 || c.Stated != 900 || c.Unit != CapTokens {
				t.Errorf("cap %+v, want 900 tokens, no limit (0)", c)
			}
		}
	}
	h.addTo("a", 0, api)
	h.addTo("b", 0, api)
	h.granted("a")
	h.pending("b")
	h.d.Cap(api, CapRequests, 0, until) // a's response: no limit stated
	for _, c := range h.d.Stats().Caps {
		if c.Dest == api && c.Limit != 0 {
			t.Errorf("cap %+v after a response without a limit, want Limit 0", c)
		}
	}
}
