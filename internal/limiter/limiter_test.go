package limiter

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBucketSteps(t *testing.T) {
	type step struct {
		at   time.Duration
		ok   bool
		wait time.Duration // when !ok, the wait reported (±1µs)
	}
	run := func(t *testing.T, b *Bucket, steps []step) {
		t.Helper()
		for i, s := range steps {
			_, ok, wait := b.Take(t0.Add(s.at))
			if ok != s.ok {
				t.Fatalf("step %d at %v: ok=%v, want %v", i, s.at, ok, s.ok)
			}
			if !ok && (wait < s.wait || wait > s.wait+time.Microsecond) {
				t.Fatalf("step %d at %v: wait %v, want %v", i, s.at, wait, s.wait)
			}
		}
	}
	t.Run("burst then rate", func(t *testing.T) {
		run(t, NewBucket(10, 2), []step{
			{0, true, 0},
			{0, true, 0},
			{0, false, 100 * time.Millisecond},
			{50 * time.Millisecond, false, 50 * time.Millisecond},
			{100 * time.Millisecond, true, 0},
			{100 * time.Millisecond, false, 100 * time.Millisecond},
			{time.Second, true, 0},
			{time.Second, true, 0},
			{time.Second, false, 100 * time.Millisecond},
		})
	})
	t.Run("unlimited", func(t *testing.T) {
		b := NewBucket(0, 0)
		for i := 0; i < 1000; i++ {
			if _, ok, _ := b.Take(t0); !ok {
				t.Fatal("unlimited bucket refused")
			}
		}
		if !math.IsInf(b.Tokens(t0), 1) {
			t.Fatal("unlimited bucket should report +Inf tokens")
		}
	})
	t.Run("zero burst never", func(t *testing.T) {
		_, ok, wait := NewBucket(5, 0).Take(t0)
		if ok || wait != time.Duration(math.MaxInt64) {
			t.Fatalf("ok=%v wait=%v", ok, wait)
		}
	})
}

func TestBucketRefund(t *testing.T) {
	b := NewBucket(1, 1)
	tok, ok, _ := b.Take(t0)
	if !ok {
		t.Fatal("first take")
	}
	if _, ok, _ := b.Take(t0); ok {
		t.Fatal("second take should wait")
	}
	b.Refund(tok, t0)
	if _, ok, _ := b.Take(t0); !ok {
		t.Fatal("refunded token not available")
	}
	b.Refund(Token{}, t0) // zero token: no-op, no panic
}

func TestBucketSet(t *testing.T) {
	b := NewBucket(1, 1)
	if _, ok, _ := b.Take(t0); !ok {
		t.Fatal("first take")
	}
	if _, _, wait := b.Take(t0); wait < time.Second {
		t.Fatalf("wait %v at 1/s", wait)
	}
	b.Set(t0, 100, 1)
	if _, _, wait := b.Take(t0); wait > 11*time.Millisecond {
		t.Fatalf("after raising to 100/s: wait %v", wait)
	}
	if b.Rate() != 100 || b.Burst() != 1 {
		t.Fatalf("settings %v/%d", b.Rate(), b.Burst())
	}
	b.Set(t0, 0, 1)
	if _, ok, _ := b.Take(t0); !ok || !b.Unlimited() {
		t.Fatal("rate 0 should be unlimited")
	}
}

func TestSlots(t *testing.T) {
	s := NewSlots(2)
	if !s.Acquire() || !s.Acquire() || s.Acquire() {
		t.Fatal("cap 2")
	}
	s.SetCap(1)
	s.Release()
	if s.Available() {
		t.Fatal("1 in use with cap 1: nothing available")
	}
	s.Release()
	if !s.Acquire() || s.InUse() != 1 || s.Cap() != 1 {
		t.Fatal("after release")
	}
	var unlimited Slots
	for i := 0; i < 100; i++ {
		if !unlimited.Acquire() {
			t.Fatal("zero value should be unlimited")
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Release without Acquire should panic")
		}
	}()
	var empty Slots
	empty.Release()
}

// A token given back after the instant it was taken returns too (a caller
// found gone a moment after its grant, as on any real clock).
func TestBucketRefundLater(t *testing.T) {
	b := NewBucket(1, 1)
	tok, ok, _ := b.Take(t0)
	if !ok {
		t.Fatal("first take")
	}
	at := t0.Add(time.Millisecond)
	if _, ok, _ := b.Take(at); ok {
		t.Fatal("second take should wait")
	}
	b.Refund(tok, at) // 0.001 earned + 1 given back, capped at burst
	if got := b.Tokens(at); got != 1 {
		t.Fatalf("tokens after a late refund: %v, want 1 (burst)", got)
	}
	if _, ok, _ := b.Take(at); !ok {
		t.Fatal("token refunded 1ms after the grant not available")
	}
	// Spent again: the next one is a full second away, not sooner.
	if _, ok, wait := b.Take(at); ok || wait < 999*time.Millisecond {
		t.Fatalf("after using the refund: ok=%v wait=%v", ok, wait)
	}
}

// A refund never fills the bucket beyond burst, and the credit it left is
// trimmed as the limiter refills underneath it.
func TestBucketRefundCappedAtBurst(t *testing.T) {
	b := NewBucket(10, 2)
	tok, _, _ := b.Take(t0)
	b.Refund(tok, t0.Add(time.Hour)) // full again by then
	if got := b.Tokens(t0.Add(time.Hour)); got != 2 {
		t.Fatalf("tokens %v, want burst 2", got)
	}
	tok1, _, _ := b.Take(t0.Add(time.Hour))
	tok2, _, _ := b.Take(t0.Add(time.Hour))
	b.Refund(tok1, t0.Add(time.Hour))
	b.Refund(tok2, t0.Add(time.Hour+50*time.Millisecond)) // 0.5 earned meanwhile
	if got := b.Tokens(t0.Add(time.Hour + time.Second)); got != 2 {
		t.Fatalf("tokens %v a second later, want burst 2", got)
	}
	// A fractional credit and a fractional limiter balance add up.
	c := NewBucket(1, 1)
	tk, _, _ := c.Take(t0)
	c.Refund(tk, t0.Add(600*time.Millisecond)) // limiter 0.6, credit 0.4
	if _, ok, _ := c.Take(t0.Add(600 * time.Millisecond)); !ok {
		t.Fatal("0.6 + 0.4 refunded should make a token")
	}
	if _, ok, wait := c.Take(t0.Add(600 * time.Millisecond)); ok || wait < 999*time.Millisecond || wait > time.Second+time.Microsecond {
		t.Fatalf("then empty: ok=%v wait=%v, want 1s", ok, wait)
	}
}

// TestBucketNeverExceedsRate runs random takes, refunds (at any later time)
// and time steps on a fake timeline, and checks two things:
//
//   - the bucket agrees with a model token bucket that counts a refund as
//     one more token (up to burst): every Take succeeds exactly when the
//     model holds a token, and the wait it reports is when the model
//     will;
//   - over every window [s, e] of the timeline, tokens taken minus tokens
//     refunded within it is at most rate×(e-s) + burst.
func TestBucketNeverExceedsRate(t *testing.T) {
	type event struct {
		at time.Duration
		n  int // +1 take, -1 refund
	}
	for _, cfg := range []struct {
		rate  float64
		burst int
	}{{1, 1}, {10, 3}, {2.5, 2}, {1000, 50}} {
		t.Run(fmt.Sprintf("rate=%v/burst=%d", cfg.rate, cfg.burst), func(t *testing.T) {
			rng := rand.New(rand.NewSource(int64(cfg.burst)))
			b := NewBucket(cfg.rate, cfg.burst)
			model := float64(cfg.burst)
			var now time.Duration
			var held []Token
			var events []event
			period := time.Duration(float64(time.Second) / cfg.rate)
			for step := 0; step < 3000; step++ {
				switch op := rng.Intn(10); {
				case op < 3:
					d := time.Duration(rng.Int63n(int64(2 * period)))
					if rng.Intn(4) == 0 {
						d = 0
					}
					now += d
					model = min(float64(cfg.burst), model+d.Seconds()*cfg.rate)
				case op < 7:
					tok, ok, wait := b.Take(t0.Add(now))
					if close := math.Abs(model-1) < 1e-6; !close && ok != (model >= 1) {
						t.Fatalf("step %d at %v: take ok=%v, model has %v tokens", step, now, ok, model)
					}
					if !ok {
						want := time.Duration((1 - model) / cfg.rate * 1e9)
						if wait < want-time.Microsecond || wait > want+time.Microsecond {
							t.Fatalf("step %d: wait %v, model %v", step, wait, want)
						}
						break
					}
					model--
					held = append(held, tok)
					events = append(events, event{now, 1})
				default:
					if len(held) == 0 {
						break
					}
					i := rng.Intn(len(held))
					b.Refund(held[i], t0.Add(now))
					held = append(held[:i], held[i+1:]...)
					model = min(float64(cfg.burst), model+1)
					events = append(events, event{now, -1})
				}
				if got := b.Tokens(t0.Add(now)); math.Abs(got-model) > 1e-6 {
					t.Fatalf("step %d: %v tokens, model %v", step, got, model)
				}
			}
			for s := range events {
				net := 0
				for e := s; e < len(events); e++ {
					net += events[e].n
					limit := cfg.rate*(events[e].at-events[s].at).Seconds() + float64(cfg.burst)
					if float64(net) > limit+1e-6 {
						t.Fatalf("window [%v, %v]: %d tokens net, limit %.3f", events[s].at, events[e].at, net, limit)
					}
				}
			}
		})
	}
}

// BenchmarkBucketTake measures one Take on a bucket that always has a token
// (the dispatcher's common case), and a Take followed by a Refund (a grant
// given back) with the clock moving on between them.
func BenchmarkBucketTake(b *testing.B) {
	b.Run("take", func(b *testing.B) {
		bk := NewBucket(1e9, 1<<20)
		now := t0
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			now = now.Add(time.Microsecond)
			if _, ok, _ := bk.Take(now); !ok {
				b.Fatal("no token")
			}
		}
	})
	b.Run("take+refund", func(b *testing.B) {
		bk := NewBucket(1, 1)
		now := t0
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tok, ok, _ := bk.Take(now)
			if !ok {
				b.Fatal("no token")
			}
			now = now.Add(time.Microsecond)
			bk.Refund(tok, now)
		}
	})
}

// TakeLeaving takes a token only while keep more stay, reports the wait
// until they do, caps keep at burst-1, and spends a refund's credit under
// the same rule.
func TestBucketTakeLeaving(t *testing.T) {
	type step struct {
		at   time.Duration
		keep int
		ok   bool
		wait time.Duration // when !ok (±1µs)
	}
	for _, tc := range []struct {
		name  string
		b     *Bucket
		steps []step
	}{
		{"keep 1 of burst 3 at 10/s", NewBucket(10, 3), []step{
			{0, 1, true, 0},
			{0, 1, true, 0},
			{0, 1, false, 100 * time.Millisecond}, // 1 left: it stays
			{0, 0, true, 0},                       // keep 0 takes it
			{0, 1, false, 200 * time.Millisecond}, // two refills to have 1 + 1
			{200 * time.Millisecond, 1, true, 0},
		}},
		{"keep above burst-1 is burst-1", NewBucket(10, 2), []step{
			{0, 5, true, 0}, // keeps 1
			{0, 5, false, 100 * time.Millisecond},
			{100 * time.Millisecond, 5, true, 0},
		}},
		{"burst 1 keeps nothing", NewBucket(10, 1), []step{
			{0, 3, true, 0},
			{0, 3, false, 100 * time.Millisecond},
		}},
		{"negative keep is 0", NewBucket(10, 2), []step{
			{0, -1, true, 0},
			{0, -1, true, 0},
			{0, -1, false, 100 * time.Millisecond},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, s := range tc.steps {
				_, ok, wait := tc.b.TakeLeaving(t0.Add(s.at), s.keep)
				if ok != s.ok {
					t.Fatalf("step %d at %v keep %d: ok=%v, want %v", i, s.at, s.keep, ok, s.ok)
				}
				if !ok && (wait < s.wait || wait > s.wait+time.Microsecond) {
					t.Fatalf("step %d at %v keep %d: wait %v, want %v", i, s.at, s.keep, wait, s.wait)
				}
			}
		})
	}
	t.Run("a refund's credit", func(t *testing.T) {
		b := NewBucket(10, 2)
		tok, _, _ := b.Take(t0)
		b.Take(t0)
		b.Refund(tok, t0) // one token back, as credit
		if _, ok, _ := b.TakeLeaving(t0, 1); ok {
			t.Fatal("took the only token although one must stay")
		}
		if _, ok, _ := b.TakeLeaving(t0, 0); !ok {
			t.Fatal("the refunded token is not there for keep 0")
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		if _, ok, _ := NewBucket(0, 0).TakeLeaving(t0, 5); !ok {
			t.Fatal("an unlimited bucket refused")
		}
	})
}
