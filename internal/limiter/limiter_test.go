package limiter

import (
	"math"
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
