package dispatch

import (
	"time"
)

// Pause holds requests to dest ("host:port") until until (upstream
// back-pressure). They keep their place and still expire; other
// destinations are unaffected. A pause never shortens one already set.
func (d *Dispatcher) Pause(dest string, until time.Time) {
	if dest == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	if !now.Before(until) {
		return
	}
	if old, ok := d.mu.pauses[dest]; ok && !until.After(old) {
		return
	}
	_, extended := d.mu.pauses[dest]
	d.mu.pauses[dest] = until
	if !extended && len(d.mu.pauses) > maxPauses {
		d.evictPauseLocked()
	}
	for k := Kind(0); k < numKinds; k++ {
		if l, ok := d.mu.lanes[laneKey{k, dest, false}]; ok {
			l.pausedUntil = until
		}
	}
	d.pushPauseLocked(pauseEntry{dest: dest, until: until})
	if len(d.mu.pauseQ) > 2*len(d.mu.pauses)+64 {
		d.compactPausesLocked()
	}
	d.armLocked(now, time.Time{})
}

// maxPauses bounds the paused destinations remembered (each costs about
// 150 bytes): past it, the pause that ends soonest is forgotten, and that
// destination is sent requests again before its upstream asked (it will
// answer 429 and be paused again). Lanes with waiting requests keep their
// own copy of the pause.
const maxPauses = 16384

// evictPauseLocked forgets the live pause that ends soonest.
func (d *Dispatcher) evictPauseLocked() {
	for len(d.mu.pauseQ) > 0 {
		e := d.popPauseLocked()
		if until, ok := d.mu.pauses[e.dest]; ok && until.Equal(e.until) {
			delete(d.mu.pauses, e.dest)
			return
		}
		// A stale entry: the pause was extended (or already forgotten).
	}
}

// compactPausesLocked rebuilds pauseQ from pauses, dropping the stale
// entries left by extended pauses, so that pauseQ stays within twice the
// live pauses; amortized O(1) per Pause.
func (d *Dispatcher) compactPausesLocked() {
	d.mu.pauseQ = d.mu.pauseQ[:0]
	for dest, until := range d.mu.pauses {
		d.pushPauseLocked(pauseEntry{dest: dest, until: until})
	}
}

func (d *Dispatcher) pushPauseLocked(e pauseEntry) { pushUntil(&d.mu.pauseQ, e) }

func (d *Dispatcher) popPauseLocked() pauseEntry { return popUntil(&d.mu.pauseQ) }

// pushUntil adds e to the min-heap (by until) *q: the pauses' and the
// provider caps' (caps.go).
func pushUntil(q *[]pauseEntry, e pauseEntry) {
	h := append(*q, e)
	for j := len(h) - 1; j > 0; {
		i := (j - 1) / 2
		if !h[j].until.Before(h[i].until) {
			break
		}
		h[i], h[j] = h[j], h[i]
		j = i
	}
	*q = h
}

// popUntil removes and returns the entry of *q that ends soonest.
func popUntil(q *[]pauseEntry) pauseEntry {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h[r].until.Before(h[c].until) {
			c = r
		}
		if !h[c].until.Before(h[i].until) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	*q = h
	return top
}

// pauseEntry is a destination's back-pressure pause, in the pause heap
// so that expired pauses are forgotten (the state stays bounded).
type pauseEntry struct {
	dest  string
	until time.Time
	unit  CapUnit // a provider cap's unit (capQ); unused in pauseQ
}

// Paused is a destination held back by upstream back-pressure.
type Paused struct {
	Dest  string
	Until time.Time
}
