package proxy

import (
	"net/http"
	"time"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/headers"
)

// capProvider caps dest by what a response says is left of its
// provider's quota (docs/shaping.md, "Provider rate-limit headers"): per
// unit, the dimension with the fewest remaining (the latest reset among
// equals) replaces dest's cap until that reset, at most maxPause ahead
// (upstream.max_pause, as for pauses; a maxPause that is not positive
// disables both). Requests are enforced, tokens only recorded; the
// dimension's stated limit, when known, is recorded beside it (the
// dashboard's "Provider limits").
func (h *Handler) capProvider(dest string, hdr http.Header, now time.Time, maxPause time.Duration) {
	if maxPause <= 0 {
		return
	}
	sigs := headers.ProviderSignals(hdr, now)
	if len(sigs) == 0 {
		return
	}
	for _, unit := range [...]struct {
		h headers.Unit
		d dispatch.CapUnit
	}{{headers.UnitRequests, dispatch.CapRequests}, {headers.UnitTokens, dispatch.CapTokens}} {
		var best headers.Signal
		found := false
		for _, s := range sigs {
			if s.Unit != unit.h || s.Remaining < 0 || s.Reset.IsZero() {
				continue
			}
			if !found || s.Remaining < best.Remaining || (s.Remaining == best.Remaining && s.Reset.After(best.Reset)) {
				best, found = s, true
			}
		}
		if !found {
			continue
		}
		until := best.Reset
		if limit := now.Add(maxPause); until.After(limit) {
			until = limit
		}
		h.disp.CapStated(dest, unit.d, best.Remaining, best.Limit, until)
	}
}
