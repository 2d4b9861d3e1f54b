package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness drives a dispatcher on a fake clock with named tickets.
type harness struct {
	t       *testing.T
	clk     *clock.Fake
	d       *Dispatcher
	tickets map[string]*Ticket
}

func newHarness(t *testing.T, l Limits, aging time.Duration) *harness {
	t.Helper()
	clk := clock.NewFake(t0)
	return &harness{t: t, clk: clk, d: New(Config{Limits: l, Aging: aging}, Deps{Clock: clk}), tickets: map[string]*Ticket{}}
}

func unlimited() Limits {
	return Limits{Rate: 0, Burst: 1, Concurrency: 0, QueueSize: 100, MaxWait: time.Hour, MaxTunnels: 10}
}

func (h *harness) enqueue(name string, r Request) error {
	h.t.Helper()
	tk, err := h.d.Enqueue(r)
	if err == nil {
		h.tickets[name] = tk
	}
	return err
}

func (h *harness) add(name string, urgency int) {
	h.t.Helper()
	if err := h.enqueue(name, Request{Urgency: urgency}); err != nil {
		h.t.Fatalf("enqueue %s: %v", name, err)
	}
}

// granted asserts exactly which tickets hold an unreleased permit.
func (h *harness) granted(names ...string) {
	h.t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for n, tk := range h.tickets {
		p, err := tk.Poll()
		got := err == nil && p != nil
		if got != want[n] {
			h.t.Fatalf("at +%v: %s granted=%v, want %v (err %v)", h.clk.Now().Sub(t0), n, got, want[n], err)
		}
	}
}

func (h *harness) release(name string) {
	h.t.Helper()
	p, err := h.tickets[name].Poll()
	if err != nil {
		h.t.Fatalf("release %s: not granted: %v", name, err)
	}
	p.Release()
	p.Release() // idempotent
}

func (h *harness) rejected(name string, want error) *RejectError {
	h.t.Helper()
	_, err := h.tickets[name].Poll()
	var re *RejectError
	if !errors.As(err, &re) || !errors.Is(err, want) {
		h.t.Fatalf("%s: err %v, want %v", name, err, want)
	}
	if re.RetryAfter < time.Second {
		h.t.Fatalf("%s: RetryAfter %v < 1s", name, re.RetryAfter)
	}
	return re
}

func (h *harness) pending(name string) {
	h.t.Helper()
	if _, err := h.tickets[name].Poll(); !errors.Is(err, ErrPending) {
		h.t.Fatalf("%s: %v, want pending", name, err)
	}
}

func TestPriorityOrderAndFIFO(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.add("a3", 3) // admitted at once
	h.add("b5", 5)
	h.add("c1", 1)
	h.add("d1", 1)
	h.add("e5", 5)
	h.add("f0", 0)
	h.granted("a3")
	for _, next := range []string{"f0", "c1", "d1", "b5", "e5"} {
		prev := ""
		for n, tk := range h.tickets {
			if p, err := tk.Poll(); err == nil && p != nil {
				prev = n
			}
		}
		h.release(prev)
		h.granted(next)
	}
	if s := h.d.Stats(); s.Depth != 0 || s.InFlight != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRateTokensOnTimer(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst = 10, 2
	h := newHarness(t, l, 0)
	for i := 0; i < 5; i++ {
		h.add(fmt.Sprint("r", i), 3)
	}
	h.granted("r0", "r1") // the burst
	h.clk.Advance(99 * time.Millisecond)
	h.granted("r0", "r1")
	h.clk.Advance(time.Millisecond)
	h.granted("r0", "r1", "r2")
	h.clk.Advance(100 * time.Millisecond)
	h.granted("r0", "r1", "r2", "r3")
	h.clk.Advance(time.Second)
	h.granted("r0", "r1", "r2", "r3", "r4")
	if h.clk.Pending() > 1 {
		t.Fatalf("%d timers pending with nothing waiting on tokens", h.clk.Pending())
	}
	// The wait recorded on the permit is the queue time.
	p, _ := h.tickets["r3"].Poll()
	if p.Waited() != 200*time.Millisecond {
		t.Fatalf("r3 waited %v, want 200ms", p.Waited())
	}
}

func TestEvictionSheds(t *testing.T) {
	l := unlimited()
	l.Concurrency, l.QueueSize = 1, 2
	h := newHarness(t, l, 0)
	h.add("busy", 3)
	h.add("w5", 5)
	h.add("w6a", 6)
	// Full; equal or less urgent newcomers are refused at once.
	for _, u := range []int{6, 7} {
		err := h.enqueue("x", Request{Urgency: u})
		var re *RejectError
		if !errors.As(err, &re) || !errors.Is(err, ErrQueueFull) || re.RetryAfter < time.Second {
			t.Fatalf("u%d on a full queue: %v", u, err)
		}
	}
	h.add("w2", 2) // evicts w6a
	h.rejected("w6a", ErrShed)
	h.add("w1", 1) // evicts w5
	h.rejected("w5", ErrShed)
	if s := h.d.Stats(); s.Depth != 2 || s.ByPriority[1] != 1 || s.ByPriority[2] != 1 {
		t.Fatalf("stats %+v", s)
	}
	h.release("busy")
	h.granted("w1")
}

func TestAgingLetsOldRequestsThrough(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, time.Second)
	h.add("busy", 0)
	h.add("old7", 7)
	h.clk.Advance(5 * time.Second)
	h.add("new3", 3) // rank 5s+3s = 8s > old7's 7s
	h.release("busy")
	h.granted("old7")
	h.release("old7")
	h.granted("new3")

	// Strict priority: the newcomer wins however long the other waited.
	l2 := unlimited()
	l2.Concurrency = 1
	s := newHarness(t, l2, 0)
	s.add("busy", 0)
	s.add("old7", 7)
	s.clk.Advance(time.Hour - time.Second)
	s.add("new3", 3)
	s.release("busy")
	s.granted("new3")
}

func TestMaxWaitAndDeadline(t *testing.T) {
	l := unlimited()
	l.Concurrency, l.MaxWait = 1, 5*time.Second
	h := newHarness(t, l, 0)
	h.add("busy", 3)
	h.add("a", 3)
	h.clk.Advance(time.Second)
	if err := h.enqueue("b", Request{Urgency: 3, Deadline: t0.Add(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	h.add("c", 3)
	h.clk.Advance(2*time.Second - time.Nanosecond)
	h.pending("b")
	h.clk.Advance(time.Nanosecond) // t0+3s: b's own deadline
	h.rejected("b", ErrQueueTimeout)
	h.pending("a")
	h.clk.Advance(2 * time.Second) // t0+5s: a's max wait
	h.rejected("a", ErrQueueTimeout)
	h.pending("c")
	h.clk.Advance(time.Second) // t0+6s: c's max wait
	h.rejected("c", ErrQueueTimeout)
	if s := h.d.Stats(); s.Depth != 0 {
		t.Fatalf("depth %d", s.Depth)
	}
	// A deadline already past is refused without queueing.
	if err := h.enqueue("late", Request{Deadline: h.clk.Now()}); !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("past deadline: %v", err)
	}
}

func TestCancelLeavesQueue(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.add("busy", 3)
	h.add("gone", 0)
	h.add("next", 5)
	h.tickets["gone"].Cancel()
	if _, err := h.tickets["gone"].Poll(); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ticket: %v", err)
	}
	if s := h.d.Stats(); s.Depth != 1 || s.ByPriority[0] != 0 {
		t.Fatalf("after cancel: %+v", s)
	}
	h.release("busy")
	h.granted("next")
}

func TestGrantGivenBack(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst, l.Concurrency = 1, 1, 1
	h := newHarness(t, l, 0)
	h.add("a", 3) // takes the only token and the only slot
	h.add("b", 3)
	h.granted("a")
	// a's caller has gone before using its permit: slot and token return,
	// so b goes at once, without waiting a second for a token.
	h.tickets["a"].Cancel()
	h.granted("b")
	if s := h.d.Stats(); s.InFlight != 1 {
		t.Fatalf("in flight %d", s.InFlight)
	}
	// A used permit's token is not refunded.
	h.release("b")
	h.add("c", 3)
	h.pending("c")
	h.clk.Advance(time.Second)
	h.granted("c")
}

func TestLimitChangesApplyToWaiting(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst = 1, 1
	h := newHarness(t, l, 0)
	for i := 0; i < 6; i++ {
		h.add(fmt.Sprint("w", i), 6-i) // w5 most urgent
	}
	h.granted("w0")
	// Shrinking the queue does not drop anyone.
	nl := l
	nl.QueueSize = 1
	h.d.SetLimits(nl)
	if s := h.d.Stats(); s.Depth != 5 {
		t.Fatalf("depth after shrinking queue_size: %d", s.Depth)
	}
	// More rate admits at once, in priority order.
	nl.Rate, nl.Burst, nl.Concurrency = 100, 2, 3
	old := h.d.SetLimits(nl)
	if old.Rate != 1 {
		t.Fatalf("old limits %+v", old)
	}
	h.granted("w0") // no token saved up: the new pace, not a jump
	h.clk.Advance(10 * time.Millisecond)
	h.granted("w0", "w5")
	h.clk.Advance(10 * time.Millisecond)
	h.granted("w0", "w5", "w4") // concurrency 3 caps now
	h.clk.Advance(30 * time.Minute)
	h.granted("w0", "w5", "w4")
	nl.Concurrency = 0
	h.d.SetLimits(nl)
	h.granted("w0", "w5", "w4", "w3", "w2") // two tokens earned meanwhile
	h.clk.Advance(10 * time.Millisecond)
	h.granted("w0", "w5", "w4", "w3", "w2", "w1")
	// A shorter max wait expires those already older than it.
	nl.QueueSize, nl.Rate, nl.Burst = 100, 1, 1
	h.d.SetLimits(nl)
	h.add("later", 7) // no token yet: waits up to a second
	h.pending("later")
	h.clk.Advance(500 * time.Millisecond)
	nl.MaxWait = 100 * time.Millisecond
	h.d.SetLimits(nl)
	h.rejected("later", ErrQueueTimeout)
}

func TestTunnelsDoNotBlockHTTP(t *testing.T) {
	l := unlimited()
	l.MaxTunnels, l.Concurrency = 1, 1
	h := newHarness(t, l, 0)
	if err := h.enqueue("t1", Request{Urgency: 0, Kind: Tunnel}); err != nil {
		t.Fatal(err)
	}
	if err := h.enqueue("t2", Request{Urgency: 0, Kind: Tunnel}); err != nil {
		t.Fatal(err)
	}
	h.add("h7", 7)
	h.granted("t1", "h7")
	h.add("h6", 6)
	h.release("t1")
	h.granted("t2", "h7")
	if s := h.d.Stats(); s.Tunnels != 1 || s.InFlight != 1 || s.Waiting[HTTP] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRetryAfterEstimate(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst, l.QueueSize = 2, 1, 5
	h := newHarness(t, l, 0)
	for i := 0; i < 6; i++ {
		h.add(fmt.Sprint("w", i), 3)
	}
	// One admitted, five waiting at u3; a sixth u3 is refused: six ahead of
	// it including itself at 2/s with no tokens: 3 s.
	err := h.enqueue("x", Request{Urgency: 3})
	var re *RejectError
	if !errors.As(err, &re) || re.RetryAfter != 3*time.Second {
		t.Fatalf("refusal %v", err)
	}
}

func TestDrainAndClose(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.add("busy", 3)
	h.add("w", 3)
	h.d.Drain()
	if err := h.enqueue("new", Request{}); !errors.Is(err, ErrDraining) {
		t.Fatalf("new request while draining: %v", err)
	}
	h.release("busy") // waiting ones still go
	h.granted("w")

	c := newHarness(t, l, 0)
	c.add("busy", 3)
	c.add("w", 3)
	c.d.Close()
	c.rejected("w", ErrDraining)
	if err := c.enqueue("new", Request{}); !errors.Is(err, ErrDraining) {
		t.Fatalf("new request after close: %v", err)
	}
	c.granted("busy")
	c.release("busy")
	if c.clk.Pending() != 0 {
		t.Fatalf("%d timers left after Close", c.clk.Pending())
	}
}

// TestAcquireContext drives the blocking API: a caller whose context ends
// while it waits leaves the queue and gets ctx.Err(). The waiting calls are
// Enqueue (in the test goroutine, so that the queue holds the request before
// anything else happens) then Wait (in another): no polling, no sleep.
func TestAcquireContext(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	clk := clock.NewFake(t0)
	d := New(Config{Limits: l}, Deps{Clock: clk})
	busy, err := d.Acquire(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	tk, err := d.Enqueue(Request{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := tk.Wait(ctx)
		done <- err
	}()
	if s := d.Stats(); s.Depth != 1 {
		t.Fatalf("depth %d while waiting", s.Depth)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v", err)
	}
	if s := d.Stats(); s.Depth != 0 {
		t.Fatalf("depth %d after cancel", s.Depth)
	}
	// A waiting caller is woken by a release.
	tk, err = d.Enqueue(Request{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		p, err := tk.Wait(context.Background())
		if err == nil {
			p.Release()
		}
		done <- err
	}()
	if s := d.Stats(); s.Depth != 1 {
		t.Fatalf("depth %d while waiting", s.Depth)
	}
	busy.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := d.Acquire(ctx, Request{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a done context: %v", err)
	}
}

// TestWaitGivesBackGrantToCallerGone: the grant and the caller's ctx.Done()
// are ready together when Wait selects. The caller has left, so the permit
// is given back (slot free again) and Wait returns the context's error,
// every time (select alone would pick either at random).
func TestWaitGivesBackGrantToCallerGone(t *testing.T) {
	for _, end := range []struct {
		name string
		ctx  func() context.Context
		want error
	}{
		{"canceled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, context.Canceled},
		{"deadline", func() context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
			_ = cancel // already ended; cancel only frees the timer
			cancel()
			return ctx
		}, context.DeadlineExceeded},
	} {
		t.Run(end.name, func(t *testing.T) {
			for i := 0; i < 100; i++ {
				l := unlimited()
				l.Concurrency = 1
				h := newHarness(t, l, 0)
				h.add("busy", 3)
				h.add("w", 3)
				h.release("busy") // the grant lands in w's channel
				p, err := h.tickets["w"].Wait(end.ctx())
				if err == nil {
					t.Fatalf("try %d: Wait with a done context returned a permit (%v)", i, p)
				}
				if !errors.Is(err, end.want) {
					t.Fatalf("try %d: err %v, want %v", i, err, end.want)
				}
				if s := h.d.Stats(); s.InFlight != 0 || s.Depth != 0 {
					t.Fatalf("try %d: grant not given back: %+v", i, s)
				}
			}
		})
	}
}

// TestGrantGivenBackLater: a grant given back a moment after it was made
// (on a real clock, always) returns its rate token too.
func TestGrantGivenBackLater(t *testing.T) {
	l := unlimited()
	l.Rate, l.Burst, l.Concurrency = 1, 1, 1
	h := newHarness(t, l, 0)
	h.add("a", 3)
	h.add("b", 3)
	h.add("c", 3)
	h.granted("a")
	h.clk.Advance(time.Millisecond) // the caller leaves 1 ms after the grant
	h.tickets["a"].Cancel()
	h.granted("b") // at once: a's token came back
	// One token was refunded, not more (the bucket was full again, at
	// burst 1): c waits a whole second from b's grant.
	h.release("b")
	h.clk.Advance(time.Second - time.Microsecond)
	h.granted()
	h.clk.Advance(2 * time.Microsecond)
	h.granted("c")
}

// TestRetryDoesNotShedEqual: on a full queue, a retry (its first arrival
// and sequence number, which sort before a newer equal) does not shed a
// waiting request of the same urgency; it is refused (docs/configuration.md, "Global limits": limits.queue_size).
func TestRetryDoesNotShedEqual(t *testing.T) {
	l := unlimited()
	l.Concurrency, l.QueueSize = 1, 1
	h := newHarness(t, l, 0)
	h.add("first", 3)
	p, _ := h.tickets["first"].Poll()
	arrival, seq := p.Arrival(), p.Seq()
	h.release("first")
	h.add("busy", 3)
	h.add("later", 3) // fills the queue
	err := h.enqueue("retry", Request{Urgency: 3, Arrival: arrival, Seq: seq})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("equal-urgency retry on a full queue: %v, want queue full", err)
	}
	h.pending("later")
	// A more urgent retry does shed it.
	if err := h.enqueue("retry", Request{Urgency: 2, Arrival: arrival, Seq: seq}); err != nil {
		t.Fatal(err)
	}
	h.rejected("later", ErrShed)
}

// TestConcurrentCapHolds hammers a real-clock dispatcher from many
// goroutines and checks the concurrency cap is never exceeded and every
// caller gets exactly one answer.
func TestConcurrentCapHolds(t *testing.T) {
	const callers, cap = 64, 4
	d := New(Config{Limits: Limits{Rate: 0, Burst: 1, Concurrency: cap, QueueSize: 16, MaxWait: time.Minute, MaxTunnels: 1}}, Deps{})
	var inflight, peak, ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				p, err := d.Acquire(context.Background(), Request{Urgency: (i + j) % 8})
				if err != nil {
					if !errors.Is(err, ErrQueueFull) && !errors.Is(err, ErrShed) {
						t.Errorf("unexpected error %v", err)
					}
					refused.Add(1)
					continue
				}
				n := inflight.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				inflight.Add(-1)
				ok.Add(1)
				p.Release()
			}
		}(i)
	}
	wg.Wait()
	if peak.Load() > cap {
		t.Fatalf("peak in flight %d > cap %d", peak.Load(), cap)
	}
	if ok.Load()+refused.Load() != callers*50 {
		t.Fatalf("answers %d+%d != %d", ok.Load(), refused.Load(), callers*50)
	}
	if s := d.Stats(); s.Depth != 0 || s.InFlight != 0 {
		t.Fatalf("left over: %+v", s)
	}
}
