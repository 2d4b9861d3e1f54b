package dispatch

import (
	"reflect"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
)

// demandOf returns the Demand's quota of scope, failing when it has none.
func demandOf(t *testing.T, dm Demand, scope string) QuotaDemand {
	t.Helper()
	for _, q := range dm.Quotas {
		if q.Scope == scope {
			return q
		}
	}
	t.Fatalf("no quota %q in the demand %+v", scope, dm.Quotas)
	return QuotaDemand{}
}

// A leased global quota: nothing goes without its units; a grant admits
// as many as it carries, most urgent first; a fully spent batch is
// settled with its latest spend as an offset from when its store call was
// sent; a partly spent one when it expires; a permit given back returns
// its unit to its batch until the batch is settled; Stats shows the
// fleet's count.
func TestLeasedQuotaGrantSpendSettle(t *testing.T) {
	q := Quota{Limit: 10, Per: time.Second, Unit: "requests"}
	l := unlimited()
	l.Quotas = []Quota{q}
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	h.d.Grant(100, t0.Add(time.Hour)) // global tokens aplenty: the quota binds
	h.add("a5", 5)
	h.add("b1", 1)
	h.add("c3", 3)
	h.granted()
	if got := demandOf(t, h.d.Demand(), ""); got.Waiting != 3 || got.Unspent != 0 || got.Limit != 10 || got.Per != time.Second || got.Unit != "requests" || got.Settle != nil {
		t.Fatalf("demand %+v, want 3 waiting for 10/1s, nothing leased", got)
	}
	grant := func(lease uint64, sent time.Time, n, used int) {
		h.d.GrantQuotas(lease, sent, sent.Add(100*time.Millisecond), []QuotaGrant{{Per: time.Second, Unit: "requests", N: n, Used: used}})
	}
	// The call was sent 10 ms before its grant arrives.
	h.clk.Advance(10 * time.Millisecond)
	grant(7, t0, 2, 2)
	h.granted("b1", "c3")
	h.clk.Advance(20 * time.Millisecond) // t0+30ms
	grant(8, t0.Add(25*time.Millisecond), 3, 5)
	h.granted("b1", "c3", "a5") // 2 of lease 8 left
	h.add("d0", 0)
	h.granted("b1", "c3", "a5", "d0")
	dm := demandOf(t, h.d.Demand(), "")
	if want := []QuotaSettlement{{Lease: 7, Spent: 2, Offset: 10 * time.Millisecond}}; !reflect.DeepEqual(dm.Settle, want) || dm.Unspent != 1 {
		t.Fatalf("after spending lease 7: %+v, want settlements %+v and 1 unspent", dm, want)
	}
	if s := h.d.Stats(); s.Quotas[0].Used != 5 {
		t.Errorf("Stats().Quotas %+v, want the fleet's 5 used", s.Quotas)
	}
	// A refund returns the unit to lease 8; lease 8 then expires with 1
	// spent at +5ms from its send (a refund keeps the latest spend).
	h.tickets["d0"].Cancel()
	delete(h.tickets, "d0")
	if dm := demandOf(t, h.d.Demand(), ""); dm.Unspent != 2 || dm.Settle != nil {
		t.Fatalf("after a refund: %+v, want 2 unspent, nothing settled", dm)
	}
	h.clk.Set(t0.Add(125 * time.Millisecond)) // lease 8 ends
	h.add("e2", 2)
	h.granted("b1", "c3", "a5")
	dm = demandOf(t, h.d.Demand(), "")
	if want := []QuotaSettlement{{Lease: 8, Spent: 1, Offset: 5 * time.Millisecond}}; !reflect.DeepEqual(dm.Settle, want) || dm.Unspent != 0 || dm.Waiting != 1 {
		t.Fatalf("after lease 8 ended: %+v, want settlements %+v, 1 waiting", dm, want)
	}
	// A unit given back after its batch was settled stays spent: the
	// settlement reported it (never fewer than were admitted).
	grant(9, h.clk.Now(), 1, 6)
	h.granted("b1", "c3", "a5", "e2")
	if dm := demandOf(t, h.d.Demand(), ""); !reflect.DeepEqual(dm.Settle, []QuotaSettlement{{Lease: 9, Spent: 1}}) {
		t.Fatalf("settlements %+v, want lease 9 fully spent at offset 0", dm.Settle)
	}
	h.tickets["e2"].Cancel()
	delete(h.tickets, "e2")
	if dm := demandOf(t, h.d.Demand(), ""); dm.Unspent != 0 || dm.Settle != nil {
		t.Fatalf("a refund after the settlement: %+v, want nothing back", dm)
	}
}

// Switching leases off settles every batch as it stands and admits from
// the local window log again, at limit × the local share, counting this
// replica's admissions under leases and, for one window, its share of the
// rest of the fleet's count; a grant that arrives meanwhile is settled
// unspent; switching back on reports the admissions made while off (lease
// 0, at negative offsets) and waits for grants again.
func TestLeasedQuotaOffAndOn(t *testing.T) {
	q := Quota{Limit: 10, Per: time.Second, Unit: "requests"}
	l := unlimited()
	l.Quotas = []Quota{q}
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	h.d.Grant(100, t0.Add(time.Hour))
	for _, n := range []string{"a", "b", "c", "d"} {
		h.add(n, 3)
	}
	// The fleet's window holds 6 after this grant: 2 are another
	// replica's.
	h.d.GrantQuotas(1, t0, t0.Add(100*time.Millisecond), []QuotaGrant{{Per: time.Second, Unit: "requests", N: 5, Used: 6}})
	h.granted("a", "b", "c", "d")
	demandOf(t, h.d.Demand(), "") // nothing settled yet: 1 unit left
	// The store cannot be reached: local, at a share of 1/2 (5 of 10):
	// this replica's 4, and half of the other 2, fill it.
	h.clk.Advance(20 * time.Millisecond)
	h.d.SetLocalShare(0.5)
	h.d.SetLeased(false)
	if dm := demandOf(t, h.d.Demand(), ""); !reflect.DeepEqual(dm.Settle, []QuotaSettlement{{Lease: 1, Spent: 4}}) {
		t.Fatalf("leases off: settlements %+v, want lease 1 with its 4 spent", dm.Settle)
	}
	if s := h.d.Stats(); s.Quotas[0].Used != 5 {
		t.Errorf("Stats().Quotas %+v while off, want 5 counted (4 + 1 held)", s.Quotas)
	}
	h.add("e", 3)
	h.granted("a", "b", "c", "d")
	h.d.GrantQuotas(2, h.clk.Now(), h.clk.Now().Add(100*time.Millisecond), []QuotaGrant{{Per: time.Second, Unit: "requests", N: 3}})
	h.granted("a", "b", "c", "d")
	if dm := demandOf(t, h.d.Demand(), ""); !reflect.DeepEqual(dm.Settle, []QuotaSettlement{{Lease: 2}}) {
		t.Fatalf("a grant while off: settlements %+v, want lease 2 settled unspent", dm.Settle)
	}
	// This replica's 4 leave the window at t0+1s; the held one stays
	// until t0+1.02s: e goes, and f, within the local 5.
	h.clk.Set(t0.Add(time.Second))
	h.add("f", 3)
	h.granted("a", "b", "c", "d", "e", "f")
	// Back on: e's and f's admissions (made while off, 30 ms ago) are
	// reported; g waits for a grant.
	h.clk.Advance(30 * time.Millisecond)
	h.d.SetLeased(true) // as the store does when it answers again
	h.d.SetLocalShare(1)
	h.d.Grant(100, h.clk.Now().Add(time.Hour))
	h.add("g", 3)
	h.granted("a", "b", "c", "d", "e", "f")
	dm := demandOf(t, h.d.Demand(), "")
	if want := []QuotaSettlement{{Lease: 0, Spent: 2, Offset: -30 * time.Millisecond}}; !reflect.DeepEqual(dm.Settle, want) || dm.Waiting != 1 {
		t.Fatalf("leases on again: %+v, want settlements %+v and g waiting", dm, want)
	}
	h.d.GrantQuotas(3, h.clk.Now(), h.clk.Now().Add(100*time.Millisecond), []QuotaGrant{{Per: time.Second, Unit: "requests", N: 1}})
	h.granted("a", "b", "c", "d", "e", "f", "g")
}

// A leased hosts-rule quota: its waiting requests sleep until a grant for
// the rule wakes them, other destinations go meanwhile; Demand reports
// the rule's waiting requests under its match.
func TestLeasedRuleQuota(t *testing.T) {
	hl := hostLimit(t, "api.example:443", 0, 1, 0)
	hl.Quotas = []Quota{{Limit: 100, Per: time.Minute, Unit: "requests"}}
	h := newHostsHarness(t, unlimited(), hl)
	h.d.SetLeased(true)
	h.d.Grant(100, t0.Add(time.Hour))
	h.addTo("a", 3, "api.example:443")
	h.addTo("b", 3, "api.example:443")
	h.addTo("other", 3, "other.example:443")
	h.granted("other")
	dm := h.d.Demand()
	if rq := demandOf(t, dm, "api.example:443"); rq.Waiting != 2 || rq.Limit != 100 || rq.Per != time.Minute || len(dm.Quotas) != 1 {
		t.Fatalf("quota demand %+v", dm.Quotas)
	}
	h.d.GrantQuotas(1, t0, t0.Add(100*time.Millisecond), []QuotaGrant{{Scope: "api.example:443", Per: time.Minute, Unit: "requests", N: 1, Used: 40}})
	h.granted("other", "a")
	if s := h.d.Stats(); s.Hosts[0].Quotas[0].Used != 40 {
		t.Errorf("rule quota stats %+v, want the fleet's 40", s.Hosts[0].Quotas)
	}
	// A grant for a global quota of the same window does not reach it.
	h.d.GrantQuotas(2, t0, t0.Add(100*time.Millisecond), []QuotaGrant{{Per: time.Minute, Unit: "requests", N: 5}})
	h.granted("other", "a")
	h.d.GrantQuotas(3, t0, t0.Add(100*time.Millisecond), []QuotaGrant{{Scope: "api.example:443", Per: time.Minute, Unit: "requests", N: 1}})
	h.granted("other", "a", "b")
}

// A take of n units spread over several batches leaves one receipt per
// batch, and refunds go back to the batch each unit came from; expired
// batches give nothing and take nothing back.
func TestQuotaLeaseTakeAcrossBatches(t *testing.T) {
	l := quotaLease{on: true}
	l.grant(nil, 1, 0, t0, t0.Add(100*time.Millisecond), 2)
	l.grant(nil, 2, 0, t0.Add(10*time.Millisecond), t0.Add(110*time.Millisecond), 3)
	now := t0.Add(20 * time.Millisecond)
	if ok, _ := l.check(now, 6); ok {
		t.Fatal("6 units fit in 5")
	}
	got := l.takeInto(now, 4, nil)
	if len(got) != 2 || got[0].n != 2 || got[1].n != 2 {
		t.Fatalf("receipts %+v, want 2 from each batch", got)
	}
	if n := l.unspent(now); n != 1 {
		t.Fatalf("unspent %d, want 1", n)
	}
	got[1].giveBack(now)
	l.settleDone(now, true) // lease 1 is fully spent: settled
	if want := []QuotaSettlement{{Lease: 1, Spent: 2, Offset: 20 * time.Millisecond}}; !reflect.DeepEqual(l.settle, want) {
		t.Fatalf("settlements %+v, want %+v", l.settle, want)
	}
	got[0].giveBack(now) // lease 1 was settled: stays spent
	later := t0.Add(105 * time.Millisecond)
	if n := l.unspent(later); n != 3 {
		t.Fatalf("unspent %d at +105ms, want lease 2's 3", n)
	}
	if r := l.takeInto(t0.Add(110*time.Millisecond), 1, nil); len(r) != 0 {
		t.Fatalf("took %+v from an expired batch", r)
	}
}

// BenchmarkAdmitLeasedQuotas compares admission (Enqueue, grant, Release)
// under a global 1m and 24h quota from the local window logs and from
// leased units, side by side: "leased" spends one large batch per quota;
// "leased-settle-8" also runs the store's side every 8 admissions (a
// Demand taking the settlements, a GrantQuotas of 8 more units), as a
// busy replica would.
func BenchmarkAdmitLeasedQuotas(b *testing.B) {
	big := 1 << 40 >> 10 // never binding
	quotas := []Quota{{Limit: big, Per: time.Minute, Unit: "requests"}, {Limit: big, Per: 24 * time.Hour, Unit: "requests"}}
	for _, tc := range []struct {
		name   string
		leased bool
		every  int // store calls every this many admissions; 0: one large grant
	}{{"local", false, 0}, {"leased", true, 0}, {"leased-settle-8", true, 8}} {
		b.Run(tc.name, func(b *testing.B) {
			clk := clock.NewFake(t0)
			l := unlimited()
			l.Quotas = quotas
			d := New(Config{Limits: l}, Deps{Clock: clk})
			defer d.Close()
			far := t0.Add(1000 * time.Hour)
			grant := func(seq uint64, n int) {
				d.GrantQuotas(seq, clk.Now(), far, []QuotaGrant{{Per: time.Minute, Unit: "requests", N: n}, {Per: 24 * time.Hour, Unit: "requests", N: n}})
			}
			if tc.leased {
				d.SetLeased(true)
				d.Grant(1<<30, far)
				if tc.every == 0 {
					grant(1, 1<<30)
				}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%64 == 0 {
					clk.Advance(time.Second) // admissions spread over the windows
				}
				if tc.every > 0 && i%tc.every == 0 {
					d.Demand()
					grant(uint64(i+2), tc.every)
				}
				tk, err := d.Enqueue(Request{})
				if err != nil {
					b.Fatal(err)
				}
				p, err := tk.Poll()
				if err != nil {
					b.Fatal(err)
				}
				p.Release()
			}
		})
	}
}

// While leased, the window log goes on recording this replica's
// admissions (for redis.on_error) and stays bounded: its groups are
// pruned as they leave the window, as they are without leases.
func TestLeasedQuotaLogBounded(t *testing.T) {
	l := unlimited()
	l.Quotas = []Quota{{Limit: 1 << 30, Per: time.Second, Unit: "requests"}}
	h := newHarness(t, l, 0)
	h.d.SetLeased(true)
	far := t0.Add(time.Hour)
	h.d.Grant(1<<30, far)
	h.d.GrantQuotas(1, t0, far, []QuotaGrant{{Per: time.Second, Unit: "requests", N: 1 << 30}})
	for i := range 20_000 {
		h.clk.Advance(time.Millisecond) // 20 windows, a group per admission
		tk, err := h.d.Enqueue(Request{})
		if err != nil {
			t.Fatal(err)
		}
		if p, err := tk.Poll(); err != nil {
			t.Fatalf("admission %d: %v", i, err)
		} else {
			p.Release()
		}
	}
	h.d.mu.Lock()
	w := h.d.mu.quotas[0]
	n := len(w.groups) - w.head
	h.d.mu.Unlock()
	if n > windowGroups+1 {
		t.Fatalf("the log holds %d groups after 20 windows, want at most %d", n, windowGroups+1)
	}
}
