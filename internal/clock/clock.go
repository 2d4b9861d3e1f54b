// Package clock abstracts time so that everything that waits can be driven
// by a fake clock in tests.
//
// Real is the wall clock. Fake only moves when told to (Advance, Set) and
// runs due AfterFunc callbacks synchronously, in deadline order, on the
// goroutine that advanced it, with its own lock released. Both are safe for
// concurrent use.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and schedules callbacks.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has elapsed. A non-positive d fires as soon
	// as possible (for Fake: at the next Advance, or Set, even by zero).
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not run yet; it reports whether it
	// did so.
	Stop() bool
}

// Real is the system clock. Its zero value is ready to use.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Fake is a manual clock for tests. Create it with NewFake.
type Fake struct {
	mu struct {
		sync.Mutex
		now    time.Time
		seq    uint64
		timers []*fakeTimer
	}
}

// NewFake returns a Fake clock set to start.
func NewFake(start time.Time) *Fake {
	f := &Fake{}
	f.mu.now = start
	return f
}

type fakeTimer struct {
	c     *Fake
	at    time.Time
	seq   uint64
	f     func()
	fired bool
}

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.now
}

// AfterFunc schedules f at Now()+d.
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.seq++
	t := &fakeTimer{c: c, at: c.mu.now.Add(d), seq: c.mu.seq, f: f}
	c.mu.timers = append(c.mu.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.mu.timers {
		if x == t {
			t.c.mu.timers = append(t.c.mu.timers[:i], t.c.mu.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Pending reports how many callbacks are scheduled and not yet run.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.timers)
}

// Advance moves the clock forward by d, running every callback that falls
// due on the way, each with the clock set to its own deadline.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.mu.now.Add(d)
	c.mu.Unlock()
	c.Set(target)
}

// Set moves the clock to t (never backwards), running due callbacks.
func (c *Fake) Set(target time.Time) {
	for {
		c.mu.Lock()
		if len(c.mu.timers) == 0 {
			break
		}
		sort.Slice(c.mu.timers, func(i, j int) bool {
			a, b := c.mu.timers[i], c.mu.timers[j]
			if !a.at.Equal(b.at) {
				return a.at.Before(b.at)
			}
			return a.seq < b.seq
		})
		next := c.mu.timers[0]
		if next.at.After(target) {
			break
		}
		c.mu.timers = c.mu.timers[1:]
		if next.at.After(c.mu.now) {
			c.mu.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
	if target.After(c.mu.now) {
		c.mu.now = target
	}
	c.mu.Unlock()
}
