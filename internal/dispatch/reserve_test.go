package dispatch

import (
	"fmt"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
)

// reserveHarness is a dispatcher at rate 1000/s, burst 10, with reserve n.
func reserveHarness(t *testing.T, n int, burst int) *harness {
	t.Helper()
	clk := clock.NewFake(t0)
	l := Limits{Rate: 1000, Burst: burst, Concurrency: 0, QueueSize: 100000, MaxWait: time.Hour, MaxTunnels: 10}
	return &harness{t: t, clk: clk, d: New(Config{Limits: l, Reserve: n}, Deps{Clock: clk}), tickets: map[string]*Ticket{}}
}

func countGranted(h *harness, prefix string, n int) int {
	got := 0
	for i := range n {
		if p, err := h.tickets[fmt.Sprintf("%s%d", prefix, i)].Poll(); err == nil && p != nil {
			got++
		}
	}
	return got
}

// addN enqueues prefix0 … prefix(n-1) at urgency u.
func addN(h *harness, prefix string, n, u int) {
	for i := range n {
		h.add(fmt.Sprintf("%s%d", prefix, i), u)
	}
}

// wantGranted fails unless exactly want of prefix0 … prefix(n-1) hold a
// permit; what says when.
func wantGranted(h *harness, prefix string, n, want int, what string) {
	h.t.Helper()
	if got := countGranted(h, prefix, n); got != want {
		h.t.Fatalf("%s: %d of %s0..%s%d granted, want %d", what, got, prefix, prefix, n-1, want)
	}
}

// Without a more urgent arrival, a bulk backlog gets the whole burst: the
// reserve changes nothing for a workload of one urgency.
func TestReserveIdleWithoutUrgentTraffic(t *testing.T) {
	h := reserveHarness(t, 1, 10)
	addN(h, "b", 20, 5)
	wantGranted(h, "b", 20, 10, "bulk from a full burst of 10")
}

// With urgent traffic in the last second, bulk leaves one token: the next
// urgent arrival is granted inside Enqueue, without waiting for a refill.
func TestReserveUrgentFindsToken(t *testing.T) {
	h := reserveHarness(t, 1, 10)
	h.add("u-first", 1)
	addN(h, "b", 20, 5)
	// u-first took one of 10, bulk 8 of the 9 left: one stays.
	wantGranted(h, "b", 20, 8, "bulk, one token kept for urgent")
	h.clk.Advance(100 * time.Microsecond)
	h.add("u-next", 1)
	if p, err := h.tickets["u-next"].Poll(); err != nil || p.Waited() != 0 {
		t.Fatalf("urgent arrival: %v, %v; want granted at once from the reserve", p, err)
	}
	// The bucket is empty now; the next token goes back to the reserve,
	// the one after to bulk.
	h.clk.Advance(time.Millisecond)
	wantGranted(h, "b", 20, 8, "bulk after 1 ms (the token refills the reserve)")
	h.clk.Advance(time.Millisecond)
	wantGranted(h, "b", 20, 9, "bulk after 2 ms")
}

// The reserve never lowers the rate: under a standing bulk backlog with
// urgent arrivals every 2.5 ms, every token is spent, and urgent requests
// never wait.
func TestReserveKeepsRate(t *testing.T) {
	for _, reserve := range []int{0, 1, 3} {
		t.Run(fmt.Sprint("reserve=", reserve), func(t *testing.T) {
			h := reserveHarness(t, reserve, 10)
			const bulk = 3000
			addN(h, "b", bulk, 5)
			var urgentWait []time.Duration
			urgent := 0
			// One second in 100 µs steps; an urgent arrival every 2.5 ms.
			for step := 1; step <= 10000; step++ {
				h.clk.Advance(100 * time.Microsecond)
				if step%25 == 0 {
					name := fmt.Sprintf("u%d", urgent)
					h.add(name, 1)
					urgent++
					if p, err := h.tickets[name].Poll(); err == nil {
						urgentWait = append(urgentWait, p.Waited())
					} else {
						urgentWait = append(urgentWait, -1)
					}
				}
			}
			total := countGranted(h, "b", bulk) + countGranted(h, "u", urgent)
			// 1 s at 1000/s plus the burst of 10 is what the bucket
			// allows; the reserve leaves at most its own tokens unspent
			// at the end (it only delays bulk, it wastes no refill).
			if total > 1010 || total < 1010-reserve {
				t.Fatalf("granted in 1 s: %d, want %d..1010 (rate × t + burst, less the reserve still kept)", total, 1010-reserve)
			}
			// The first urgent arrival has nothing kept for it: bulk
			// had the bucket to itself until then.
			late := 0
			for _, w := range urgentWait[1:] {
				if w != 0 {
					late++
				}
			}
			if reserve > 0 && late != 0 {
				t.Fatalf("%d of %d urgent requests waited (or were not granted at arrival), want none", late, len(urgentWait))
			}
			if reserve == 0 && late == 0 {
				t.Fatalf("without a reserve every urgent request was granted at arrival; the test does not exercise the reserve")
			}
		})
	}
}

// The reserve stays below the burst: with burst 1 nothing is kept, so bulk
// is never starved; a reserve above burst-1 keeps burst-1.
func TestReserveCappedBelowBurst(t *testing.T) {
	h := reserveHarness(t, 5, 1)
	h.add("u", 1)
	h.add("b0", 5)
	h.granted("u")
	h.clk.Advance(time.Millisecond)
	h.granted("u", "b0")

	h = reserveHarness(t, 50, 3)
	h.add("u", 1)
	addN(h, "b", 5, 5)
	// 3 tokens: u takes one, 2 are left, bulk must leave 2 (burst-1).
	wantGranted(h, "b", 5, 0, "bulk, burst-1 = 2 kept")
	h.clk.Advance(time.Millisecond)
	wantGranted(h, "b", 5, 1, "bulk after one refill")
}

// The reserve lapses once no more urgent request arrived for
// ReserveWindow, and SetReserve changes it live.
func TestReserveWindowAndSet(t *testing.T) {
	h := reserveHarness(t, 1, 10)
	h.add("u", 1)
	h.granted("u")
	const bulk = 3000
	addN(h, "b", bulk, 5)
	wantGranted(h, "b", bulk, 8, "bulk, one token kept for urgent")
	// Within the window, bulk takes every refill but leaves one token.
	h.clk.Advance(ReserveWindow - time.Millisecond/2)
	if tok := h.d.Stats().Tokens; tok < 1-1e-6 {
		t.Fatalf("tokens just before the window ends: %v, want the reserve (>= 1)", tok)
	}
	// Past it the urgent class counts as quiet: the kept token goes too.
	h.clk.Advance(time.Millisecond)
	if tok := h.d.Stats().Tokens; tok >= 1 {
		t.Fatalf("tokens after the window: %v, want the reserve spent (< 1)", tok)
	}

	h = reserveHarness(t, 1, 10)
	h.add("u", 1)
	addN(h, "b", 20, 5)
	h.d.SetReserve(0)
	if r := h.d.Stats().Reserve; r != 0 {
		t.Fatalf("Stats().Reserve after SetReserve(0) = %d", r)
	}
	wantGranted(h, "b", 20, 9, "bulk after SetReserve(0)")
	// Equal urgency never reserves for itself.
	h = reserveHarness(t, 1, 10)
	addN(h, "u", 20, 1)
	wantGranted(h, "u", 20, 10, "urgent (equal urgency keeps nothing)")
}
