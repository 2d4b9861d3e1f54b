package clock

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFakeRunsDueCallbacksInOrder(t *testing.T) {
	c := NewFake(t0)
	var got []string
	var at []time.Duration
	add := func(name string, d time.Duration) Timer {
		return c.AfterFunc(d, func() {
			got = append(got, name)
			at = append(at, c.Now().Sub(t0))
		})
	}
	add("b", 2*time.Second)
	add("a", time.Second)
	add("a2", time.Second) // same deadline: scheduling order
	stopped := add("never", 1500*time.Millisecond)
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should succeed once")
	}
	c.Advance(1500 * time.Millisecond)
	if len(got) != 2 || got[0] != "a" || got[1] != "a2" || at[0] != time.Second {
		t.Fatalf("after 1.5s: %v at %v", got, at)
	}
	if c.Now() != t0.Add(1500*time.Millisecond) || c.Pending() != 1 {
		t.Fatalf("now %v pending %d", c.Now(), c.Pending())
	}
	// A callback may schedule another that is already due.
	c.AfterFunc(time.Second, func() {
		got = append(got, "c")
		c.AfterFunc(0, func() { got = append(got, "d") })
	})
	c.Advance(time.Hour)
	want := []string{"a", "a2", "b", "c", "d"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	c.Set(t0) // never backwards
	if c.Now() != t0.Add(time.Hour+1500*time.Millisecond) {
		t.Fatalf("Set moved the clock back to %v", c.Now())
	}
}

func TestReal(t *testing.T) {
	var c Clock = Real{}
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	if tm := c.AfterFunc(time.Hour, func() {}); !tm.Stop() {
		t.Fatal("Stop of a pending real timer")
	}
	if c.Now().IsZero() {
		t.Fatal("zero time")
	}
}
