package dispatch

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
)

// Requests priced in tokens (cost.go), on the fake clock.

const api = "api.example:443"

// tokensRule is a hosts rule for api.example with the given quotas and
// cost.default.
func tokensRule(t *testing.T, match string, costDefault int64, qs ...Quota) HostLimit {
	t.Helper()
	p, err := config.ParseHostPattern(match)
	if err != nil {
		t.Fatal(err)
	}
	return HostLimit{Match: p, Quotas: qs, CostDefault: costDefault}
}

func tokensQuota(limit int, per time.Duration) Quota {
	return Quota{Limit: limit, Per: per, Unit: config.QuotaTokens}
}

func newCostHarness(t *testing.T, reserve int, hosts ...HostLimit) *harness {
	t.Helper()
	clk := clock.NewFake(t0)
	d := New(Config{Limits: unlimited(), Hosts: hosts, Reserve: reserve}, Deps{Clock: clk})
	return &harness{t: t, clk: clk, d: d, tickets: map[string]*Ticket{}}
}

// priced enqueues a request to dest at urgency u costing cost tokens.
func (h *harness) priced(name string, u int, dest string, cost int64) {
	h.t.Helper()
	if err := h.enqueue(name, Request{Urgency: u, Dest: dest, Cost: cost}); err != nil {
		h.t.Fatalf("enqueue %s: %v", name, err)
	}
}

func (h *harness) permit(name string) *Permit {
	h.t.Helper()
	p, err := h.tickets[name].Poll()
	if err != nil {
		h.t.Fatalf("%s: not granted: %v", name, err)
	}
	return p
}

// used is the rule's quotas' use now, in rule order.
func (h *harness) used() []int {
	var out []int
	for _, q := range h.d.Stats().Hosts[0].Quotas {
		out = append(out, q.Used)
	}
	return out
}

// A tokens quota is never exceeded in any window of its length, counting
// each request at what it finally used (settled later, refunds only:
// usage at most the estimate), whatever the arrivals; and under overload
// most of it is used.
func TestTokensQuotaWindowBound(t *testing.T) {
	for _, q := range []Quota{tokensQuota(1000, time.Second), tokensQuota(200000, time.Minute)} {
		t.Run(q.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(q.Limit)))
			h := newCostHarness(t, 0, tokensRule(t, "api.example", 100, q))
			type req struct {
				name                string
				cost, actual        int64
				enq, admitted, done time.Time
			}
			var reqs []*req
			step := q.Per / 100
			horizon := 10 * q.Per
			maxCost := int64(q.Limit) * 2 / 5
			offered := int64(0)
			for now := time.Duration(0); now < horizon; now += step {
				h.clk.Set(t0.Add(now))
				// 2× the quota offered, in heavy-tailed sizes.
				for offered < int64(now+step)*2*int64(q.Limit)/int64(q.Per) {
					cost := 1 + int64(float64(maxCost)*rng.Float64()*rng.Float64()*rng.Float64())
					r := &req{name: fmt.Sprintf("r%d", len(reqs)), cost: cost, actual: rng.Int64N(cost + 1), enq: h.clk.Now()}
					reqs = append(reqs, r)
					offered += cost
					h.priced(r.name, rng.IntN(8), api, cost)
				}
				for _, r := range reqs {
					p, err := h.tickets[r.name].Poll()
					if err != nil || !r.admitted.IsZero() {
						continue
					}
					r.admitted = r.enq.Add(p.Waited())
					// The response ends some time later and tells its usage.
					r.done = h.clk.Now().Add(time.Duration(rng.Int64N(int64(q.Per / 4))))
				}
				for _, r := range reqs {
					if !r.admitted.IsZero() && !r.done.IsZero() && !r.done.After(h.clk.Now()) {
						p := h.permit(r.name)
						p.Settle(r.actual)
						p.Release()
						r.done = time.Time{}
					}
				}
			}
			var adm []*req
			for _, r := range reqs {
				if !r.admitted.IsZero() {
					adm = append(adm, r)
				}
			}
			sort.Slice(adm, func(i, j int) bool { return adm[i].admitted.Before(adm[j].admitted) })
			// The fullest window starts at an admission.
			for i := range adm {
				sum := int64(0)
				for j := i; j < len(adm) && adm[j].admitted.Sub(adm[i].admitted) < q.Per; j++ {
					if adm[j].done.IsZero() { // settled
						sum += adm[j].actual
					} else {
						sum += adm[j].cost
					}
				}
				if sum > int64(q.Limit) {
					t.Fatalf("%d tokens in the window from +%v, limit %d", sum, adm[i].admitted.Sub(t0), q.Limit)
				}
			}
			// Utilisation over the steady part: what was used per window
			// is most of the limit (the quota, not the admissions, binds).
			// Below 100%: a request counts at its estimate until its
			// response ends (up to per/4 here), and a big head waits for
			// room rather than let smaller ones by (92% with the usage
			// known at once, 81 to 85% with it known up to per/4 later).
			var used int64
			for _, r := range adm {
				if at := r.admitted.Sub(t0); at >= 2*q.Per && at < 9*q.Per {
					used += r.actual
				}
			}
			share := float64(used) / float64(7*int64(q.Limit))
			if share < 0.75 {
				t.Errorf("used %.0f%% of the quota under 2x overload, want >= 75%%", 100*share)
			}
			t.Logf("%d requests offered, %d admitted, %.1f%% of the quota used", len(reqs), len(adm), 100*share)
		})
	}
}

// The most urgent waiting request that fits goes first; within an
// urgency, FIFO, and a big request at the head is not overtaken by a
// smaller one behind it.
func TestTokensPriorityWithinBudget(t *testing.T) {
	h := newCostHarness(t, 0, tokensRule(t, "api.example", 100, tokensQuota(1000, time.Second)))
	h.priced("fill", 0, api, 1000)
	h.priced("b1", 7, api, 400)
	h.priced("b2", 7, api, 400)
	h.priced("a1", 0, api, 400)
	h.granted("fill")
	h.clk.Advance(time.Second) // room for 1000: a1; b1 leaves a1's headroom (quota.go)
	h.granted("fill", "a1")
	h.pending("b1")
	h.clk.Advance(999 * time.Millisecond) // the headroom is due by the window's end: b1; b2 does not fit
	h.granted("fill", "a1", "b1")
	h.pending("b2")

	// b2 (400) waits for room; a big b3 behind it, and a small b4 behind
	// that, wait too even where b4 alone would fit.
	h.priced("b3", 7, api, 900)
	h.priced("b4", 7, api, 10)
	h.pending("b4")
	// A more urgent small one goes before them all: 200 left.
	h.priced("a2", 2, api, 150)
	h.granted("fill", "a1", "b1", "a2")
	h.clk.Advance(time.Second) // 1000 again: b2 (400), then b3 (900) does not fit, b4 waits behind it
	h.granted("fill", "a1", "b1", "a2", "b2")
	h.pending("b3")
	h.pending("b4")
	h.clk.Advance(time.Second)
	h.granted("fill", "a1", "b1", "a2", "b2", "b3", "b4")
}

// Across the destinations of one rule (a wildcard shares its quotas), a
// lane whose head goes after a head waiting for the rule's tokens waits
// too; a more urgent one does not.
func TestTokensOrderAcrossDestinations(t *testing.T) {
	const a, b = "a.example:443", "b.example:443"
	h := newCostHarness(t, 0, tokensRule(t, "*.example", 100, tokensQuota(1000, time.Second)))
	h.priced("fill", 3, a, 500)
	h.priced("big", 3, a, 900) // waits for room
	h.priced("small", 5, b, 200)
	h.granted("fill")
	h.pending("small")
	h.priced("urgent", 0, b, 100)
	h.granted("fill", "urgent")
	h.clk.Advance(time.Second)
	h.granted("fill", "urgent", "big")
	h.pending("small") // 900 of 1000 in the window
	h.clk.Advance(time.Second)
	h.granted("fill", "urgent", "big", "small")
}

// priority.reserve keeps reserve × cost.default tokens for more urgent
// arrivals in a tokens quota.
func TestTokensReserve(t *testing.T) {
	h := newCostHarness(t, 2, tokensRule(t, "api.example", 100, tokensQuota(1000, time.Second)))
	h.priced("u", 0, api, 100)
	h.priced("batch", 7, api, 800) // 100 + 800 fits, but not with 200 kept
	h.granted("u")
	h.pending("batch")
	h.priced("u2", 0, api, 100)
	h.granted("u", "u2")
	h.pending("batch")
	// A second after the last urgent arrival nothing is kept; the window
	// still holds 200 then, and 800 fits.
	h.clk.Advance(time.Second)
	h.granted("u", "u2", "batch")

	// Without a reserve, batch goes at once (leaving the urgency headroom
	// of u's 100: quota.go).
	h = newCostHarness(t, 0, tokensRule(t, "api.example", 100, tokensQuota(1000, time.Second)))
	h.priced("u", 0, api, 100)
	h.priced("batch", 7, api, 700)
	h.granted("u", "batch")
}

// An under-estimate goes into debt: the difference is charged when the
// usage is known, and a later request waits until it has left the window.
func TestTokensDebtDelays(t *testing.T) {
	h := newCostHarness(t, 0, tokensRule(t, "api.example", 100, tokensQuota(1000, time.Second)))
	h.priced("a", 0, api, 500)
	h.granted("a")
	h.clk.Advance(100 * time.Millisecond)
	h.permit("a").Settle(1500) // 1000 more than priced
	h.permit("a").Settle(10)   // once only
	h.release("a")
	if got := h.used(); got[0] != 1500 {
		t.Fatalf("used %v, want 1500 (in debt)", got)
	}
	h.clk.Advance(100 * time.Millisecond)
	h.priced("b", 0, api, 100)
	h.pending("b") // without the debt: 500 + 100 fits
	h.clk.Set(t0.Add(time.Second))
	h.pending("b") // a's 500 left; its debt of 1000 is counted from +100ms
	h.clk.Set(t0.Add(1100*time.Millisecond - time.Nanosecond))
	h.pending("b")
	h.clk.Set(t0.Add(1100 * time.Millisecond))
	h.granted("b")
}

// An over-estimate is given back when the usage is known, and a waiting
// request goes at once instead of when the window moves on.
func TestTokensRefundAdmitsSooner(t *testing.T) {
	h := newCostHarness(t, 0, tokensRule(t, "api.example", 100, tokensQuota(1000, time.Second)))
	h.priced("a", 0, api, 900)
	h.priced("b", 0, api, 500)
	h.granted("a")
	h.clk.Advance(100 * time.Millisecond)
	h.permit("a").Settle(200)
	h.granted("a", "b")
	if got := h.used(); got[0] != 700 {
		t.Fatalf("used %v, want 200 + 500", got)
	}
	// A response without usage keeps its cost: b is never settled, and
	// c waits for b's 500 to leave.
	h.release("a")
	h.release("b")
	h.priced("c", 0, api, 600)
	h.pending("c")
	h.clk.Set(t0.Add(time.Second))
	h.pending("c") // a's 200 is counted until +1s, b's 500 until +1.1s
	h.clk.Set(t0.Add(1100 * time.Millisecond))
	h.granted("c")
}

// A cost above a tokens quota's limit is refused at once, never queued
// (no RetryAfter); a limit lowered under a waiting request refuses it.
// Requests quotas of the same rule take 1 whatever the cost.
func TestTokensCostExceedsQuota(t *testing.T) {
	rule := tokensRule(t, "api.example", 100, Quota{Limit: 3, Per: time.Minute, Unit: config.QuotaRequests}, tokensQuota(1000, time.Minute))
	h := newCostHarness(t, 0, rule)
	_, err := h.d.Enqueue(Request{Dest: api, Cost: 1001})
	var re *RejectError
	if !errors.As(err, &re) || !errors.Is(err, ErrCostExceedsQuota) || re.RetryAfter != 0 {
		t.Fatalf("Enqueue(cost 1001) = %v, want ErrCostExceedsQuota without RetryAfter", err)
	}
	if s := h.d.Stats(); s.Depth != 0 || s.Lanes != 0 {
		t.Fatalf("a refused request is queued: %+v", s)
	}
	h.priced("a", 0, api, 1000)
	h.priced("b", 0, api, 800)
	h.granted("a")
	if got := h.used(); got[0] != 1 || got[1] != 1000 {
		t.Fatalf("used %v, want [1 1000]", got)
	}
	rule.Quotas[1].Limit = 500
	h.d.SetHosts([]HostLimit{rule})
	if _, err := h.tickets["b"].Poll(); !errors.Is(err, ErrCostExceedsQuota) {
		t.Fatalf("b after the limit fell under its cost: %v", err)
	}
	// Without a Cost, the rule's cost.default prices it.
	rule.Quotas[1].Limit = 1000
	rule.CostDefault = 2000
	h.d.SetHosts([]HostLimit{rule})
	if _, err := h.d.Enqueue(Request{Dest: api}); !errors.Is(err, ErrCostExceedsQuota) {
		t.Fatalf("Enqueue(no cost, cost.default 2000) = %v, want ErrCostExceedsQuota", err)
	}
}

// A granted request whose caller left gives its tokens back, all of them.
func TestTokensCancelGivesBack(t *testing.T) {
	h := newCostHarness(t, 0, tokensRule(t, "api.example", 100, tokensQuota(1000, time.Second)))
	h.priced("a", 0, api, 700)
	h.priced("b", 0, api, 700)
	h.granted("a")
	h.tickets["a"].Cancel()
	h.granted("b")
	if got := h.used(); got[0] != 700 {
		t.Fatalf("used %v, want b's 700 only", got)
	}
	if c := h.permit("b").Cost(); c != 700 {
		t.Fatalf("Cost() = %d", c)
	}
}

// A provider's tokens remaining caps the costs admitted to its
// destination until its reset, as requests remaining does for requests;
// a correction moves what is left; requests not priced are not held.
func TestTokenCap(t *testing.T) {
	h := newCostHarness(t, 0, tokensRule(t, "api.example", 100, tokensQuota(1_000_000, time.Minute)))
	reset := t0.Add(2 * time.Second)
	h.d.Cap(api, CapTokens, 500, reset)
	h.priced("a", 0, api, 300)
	h.priced("b", 0, api, 300)
	h.granted("a")
	if c := h.d.Stats().Caps; len(c) != 1 || c[0].Unit != CapTokens || c[0].Remaining != 200 || c[0].Stated != 500 {
		t.Fatalf("caps %+v, want 200 of 500 tokens left", c)
	}
	// a used 50: 250 come back, and b (300) fits in 450.
	h.permit("a").Settle(50)
	h.granted("a", "b")
	h.priced("c", 0, api, 300)
	h.pending("c") // 150 left
	// Not priced (no tokens quota, no Cost): not held by a tokens cap.
	h.d.Cap("plain.example:443", CapTokens, 0, reset)
	h.priced("p", 0, "plain.example:443", 0)
	h.granted("a", "b", "p")
	// A newer response raises it: c goes.
	h.d.Cap(api, CapTokens, 1000, reset)
	h.granted("a", "b", "p", "c")
	h.priced("d", 0, api, 800)
	h.pending("d") // 700 left
	h.clk.Set(reset)
	h.granted("a", "b", "p", "c", "d")
}

// Admission under a rule with quotas, side by side: a requests quota (one
// unit per request) and the same rule with a tokens quota too (the cost
// taken, then settled with a smaller usage), on a fake clock that moves
// 1 ms per admission (the quotas are large enough never to bind).
func BenchmarkAdmitTokens(b *testing.B) {
	for _, tokens := range []bool{false, true} {
		b.Run(fmt.Sprintf("tokens=%v", tokens), func(b *testing.B) {
			p, err := config.ParseHostPattern("api.example")
			if err != nil {
				b.Fatal(err)
			}
			h := HostLimit{Match: p, Quotas: []Quota{{Limit: 1 << 30, Per: time.Minute, Unit: config.QuotaRequests}}, CostDefault: 1000}
			if tokens {
				h.Quotas = append(h.Quotas, tokensQuota(1<<30, time.Minute))
			}
			clk := clock.NewFake(t0)
			d := New(Config{Limits: unlimited(), Hosts: []HostLimit{h}}, Deps{Clock: clk})
			defer d.Close()
			b.ReportAllocs()
			for b.Loop() {
				tk, err := d.Enqueue(Request{Dest: api, Cost: 1200})
				if err != nil {
					b.Fatal(err)
				}
				p, err := tk.Poll()
				if err != nil {
					b.Fatal(err)
				}
				if tokens {
					p.Settle(800)
				}
				p.Release()
				clk.Advance(time.Millisecond)
			}
		})
	}
}

// With limits.store: redis, tokens quotas are shared like requests
// quotas (docs/shared-quota.md, "Tokens"): the configuration is accepted
// and the rule keeps both quotas.
func TestTokensQuotasWithSharedStore(t *testing.T) {
	cfg := config.Default()
	cfg.Limits.Store, cfg.Redis.URL = config.StoreRedis, "redis://127.0.0.1:6379/0"
	cfg.Hosts = []config.HostRule{{Match: "api.openai.com", Quotas: []config.Quota{{Limit: 500, Per: time.Minute}, {Limit: 90000, Per: time.Minute, Unit: config.QuotaTokens}}}}
	dc, err := ConfigOf(cfg)
	if err != nil {
		t.Fatalf("ConfigOf = %v, want tokens quotas accepted with limits.store: redis", err)
	}
	if qs := dc.Hosts[0].Quotas; len(qs) != 2 || qs[1].Unit != config.QuotaTokens || qs[1].Limit != 90000 {
		t.Fatalf("the rule's quotas %+v, want 500/1m requests and 90000/1m tokens", qs)
	}
}
