package dispatch

import (
	"reflect"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/queue"
)

// Tokens quotas leased from a shared store (quotalease.go,
// docs/shared-quota.md "Tokens"), on the fake clock.

// tokensGrant grants n units of the rule's 1000/1m tokens quota as lease
// id, sent at sent, valid 100 ms, granted at Redis time at (µs).
func tokensGrant(h *harness, lease uint64, sent time.Time, at int64, n int) {
	h.d.GrantQuotas(lease, sent, sent.Add(100*time.Millisecond), []QuotaGrant{{Scope: api, Per: time.Minute, Unit: "tokens", N: n, At: at}})
}

// A leased tokens quota: Demand asks in tokens (the waiting requests'
// costs, cost.default for those without one) and names the rule's head
// (the most urgent, then earliest: its urgency, what it lacks beyond the
// unspent units, its sequence number); a head waits until the units it
// costs have arrived, over several grants if need be, and no smaller
// request behind it takes them meanwhile; it then spends units of both
// batches; a cancel takes its cost out of the demand.
func TestLeasedTokensTakeAndDemand(t *testing.T) {
	h := newCostHarness(t, 0, tokensRule(t, api, 100, tokensQuota(1000, time.Minute)))
	h.d.SetLeased(true)
	h.d.Grant(1000, t0.Add(time.Hour)) // global tokens aplenty: the quota binds
	h.priced("big", 3, api, 600)
	h.priced("small", 3, api, 50)
	h.priced("unpriced", 3, api, 0)
	h.priced("urgent", 1, api, 200)
	h.granted()
	demand := func() QuotaDemand {
		t.Helper()
		return demandOf(t, h.d.Demand(), api)
	}
	want := func(q QuotaDemand, waiting, unspent, u, need int, head string) {
		t.Helper()
		id := uint64(0)
		if head != "" {
			id = h.tickets[head].item.Seq()
		}
		if q.Waiting != waiting || q.Unspent != unspent || q.HeadUrgency != u || q.HeadNeed != need || q.HeadID != id || q.Unit != "tokens" {
			t.Fatalf("at +%v: demand %+v, want waiting %d, unspent %d, head %s (u=%d, needing %d, id %d)", h.clk.Now().Sub(t0), q, waiting, unspent, head, u, need, id)
		}
	}
	want(demand(), 600+50+100+200, 0, 1, 200, "urgent")
	// 150 of the urgent request's 200: nothing goes, though the small
	// one behind it would fit.
	tokensGrant(h, 1, t0, 1_000_000, 150)
	h.granted()
	want(demand(), 950, 150, 1, 50, "urgent")
	h.clk.Advance(5 * time.Millisecond)
	tokensGrant(h, 2, h.clk.Now(), 1_005_000, 60)
	h.granted("urgent")
	if p := h.permit("urgent"); len(p.quotaToks) != 2 || p.quotaToks[0].n != 150 || p.quotaToks[1].n != 50 {
		t.Fatalf("urgent's receipts %+v, want 150 of lease 1 and 50 of lease 2", p.quotaToks)
	}
	want(demand(), 750, 10, 3, 590, "big")
	// The big head is not overtaken by the small request behind it.
	tokensGrant(h, 3, h.clk.Now(), 1_005_500, 100)
	h.granted("urgent")
	want(demand(), 750, 110, 3, 490, "big")
	h.tickets["big"].Cancel()
	h.granted("urgent", "small")
	want(demand(), 100, 60, 3, 40, "unpriced")
	// Nothing waits: no head.
	h.tickets["unpriced"].Cancel()
	want(demand(), 0, 60, queue.Levels, 0, "")
}

// Corrections of leased units (Permit.Settle): while the batch is not
// settled, a refund makes it spend fewer (the units may be spent again);
// once it is settled, a refund is reported to be uncharged from the
// slot where the batch's spends were placed (the grant's Redis time plus
// its latest spend); debt is reported as lease 0, once per quota, at the
// call's time. A permit spread over two batches gives back at most the
// difference in all.
func TestLeasedTokensSettle(t *testing.T) {
	h := newCostHarness(t, 0, tokensRule(t, api, 100, tokensQuota(1000, time.Minute)))
	h.d.SetLeased(true)
	h.d.Grant(1000, t0.Add(time.Hour)) // global tokens aplenty: the quota binds
	settle := func() []QuotaSettlement {
		t.Helper()
		return demandOf(t, h.d.Demand(), api).Settle
	}
	tokensGrant(h, 1, t0, 7_000_000, 1000)
	h.clk.Set(t0.Add(10 * time.Millisecond))
	h.priced("r1", 3, api, 300)
	h.clk.Set(t0.Add(20 * time.Millisecond))
	h.priced("r2", 3, api, 400)
	h.granted("r1", "r2")
	h.permit("r1").Settle(100) // 200 back to lease 1, not settled yet
	if q := demandOf(t, h.d.Demand(), api); q.Unspent != 500 || q.Settle != nil {
		t.Fatalf("after r1's refund: %+v, want 500 unspent, nothing settled", q)
	}
	h.clk.Set(t0.Add(150 * time.Millisecond)) // lease 1 ends
	if got, want := settle(), []QuotaSettlement{{Lease: 1, Spent: 500, Offset: 20 * time.Millisecond}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("lease 1 settled as %+v, want %+v", got, want)
	}
	h.permit("r2").Settle(150) // after the settlement: a refund from its slot
	if got, want := settle(), []QuotaSettlement{{Refund: 250, At: 7_000_000 + 20_000}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("r2's refund %+v, want %+v", got, want)
	}
	// r3 spreads over leases 2 and 3; its refund gives back 150 in all
	// (100 to lease 2, 50 to lease 3), not 150 to each.
	tokensGrant(h, 2, h.clk.Now(), 8_000_000, 100)
	tokensGrant(h, 3, h.clk.Now(), 8_000_000, 150)
	h.priced("r3", 3, api, 200)
	h.granted("r1", "r2", "r3")
	h.permit("r3").Settle(50)
	if q := demandOf(t, h.d.Demand(), api); q.Unspent != 200 || q.Settle != nil {
		t.Fatalf("after r3's refund: %+v, want 200 unspent (250 granted, 50 used)", q)
	}
	// r4 spreads over both too; its debt is reported once: 60 at the
	// call's time. A second Settle changes nothing.
	h.priced("r4", 3, api, 200)
	h.granted("r1", "r2", "r3", "r4")
	h.permit("r4").Settle(260)
	h.permit("r4").Settle(900)
	if got, want := settle(), []QuotaSettlement{{Spent: 60}, {Lease: 2, Spent: 100}, {Lease: 3, Spent: 150}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("r4's debt and the spent leases: %+v, want %+v", got, want)
	}
}
