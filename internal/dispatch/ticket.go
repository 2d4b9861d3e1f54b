package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/proxyd/proxyd/internal/queue"
)

type state uint8

const (
	waiting state = iota
	granted
	rejected
	canceled
	released
)

// Ticket is a request that entered the queue. Exactly one of its outcomes
// happens: granted (a Permit), rejected (a *RejectError) or canceled. It is
// allocated once and carries the queue item, the permit and the result
// channel.
type Ticket struct {
	d      *Dispatcher
	item   queue.Item
	kind   Kind
	lane   *lane
	state  state
	ch     chan error // created only when the caller has to wait
	err    error
	permit Permit
	cost   int64 // Request.Cost (cost.go)
}

// Urgency is the urgency the ticket was queued with.
func (w *Ticket) Urgency() int { return w.item.Urgency }

// Permit is an admission. Release it exactly when the request is done
// (response body closed, tunnel closed); Release is idempotent.
type Permit struct {
	w       *Ticket
	d       *Dispatcher
	tok     taken // its global tokens, for a refund
	rule    *rule // whose slot (HTTP) and tokens it holds, or nil
	ruleTok taken
	// quotaToks are its units in the global quotas and its rule's, for
	// a refund; nil without quotas.
	quotaToks []taken
	// cap is the provider cap it was counted against (caps.go) and
	// capGen that cap's generation then, for a refund; nil without one.
	cap    *provCap
	capGen uint64
	waited time.Duration
	// cost is what it was admitted at in tokens (0: not priced); tcap
	// and tcapGen the provider cap in tokens it was counted against;
	// settled: Settle ran (cost.go).
	cost    int64
	tcap    *provCap
	tcapGen uint64
	settled bool
}

// Waited is how long the request waited before admission.
func (p *Permit) Waited() time.Duration { return p.waited }

// Arrival and Seq identify the request's place among equals; a retry
// passes them back in its Request.
func (p *Permit) Arrival() time.Time { return p.w.item.Arrival }

// Seq is the request's arrival sequence number.
func (p *Permit) Seq() uint64 { return p.w.item.Seq() }

// Release gives the slot back and lets the next request through.
func (p *Permit) Release() { p.d.finish(p.w, false) }

// Wait blocks until the ticket is granted or rejected, or ctx ends; then
// the ticket has left the queue, and a grant that raced with ctx is given
// back.
func (w *Ticket) Wait(ctx context.Context) (*Permit, error) {
	d := w.d
	d.mu.Lock()
	ch := w.ch
	d.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
	// The grant and ctx.Done() may be ready together, and select picks
	// either: a caller that has left never gets the permit (docs/architecture.md), it is
	// given back. A rejection that won the race is still reported.
	if err := ctx.Err(); err != nil {
		w.Cancel()
		p, perr := w.Poll()
		if errors.Is(perr, context.Canceled) {
			return nil, err
		}
		return p, perr
	}
	return w.Poll()
}

// Poll reports the outcome without blocking: a permit, a rejection,
// ErrPending while the ticket still waits, or context.Canceled once
// canceled.
func (w *Ticket) Poll() (*Permit, error) {
	d := w.d
	d.mu.Lock()
	defer d.mu.Unlock()
	switch w.state {
	case waiting:
		return nil, ErrPending
	case granted:
		return &w.permit, nil
	case rejected:
		return nil, w.err
	case canceled:
		return nil, context.Canceled
	default: // released
		return nil, ErrReleased
	}
}

// Cancel takes a waiting ticket out of the queue, or gives a grant back
// (slot released, rate token refunded) if it was granted but not used. It
// is a no-op once rejected or released.
func (w *Ticket) Cancel() {
	d := w.d
	d.mu.Lock()
	switch w.state {
	case waiting:
		d.mu.q.Remove(&w.item)
		woke := d.leftLaneLocked(w)
		d.laneChangedLocked(w.lane)
		w.state = canceled
		if woke {
			d.runLocked(d.clock.Now()) // its lane's new head may fit
		}
		d.mu.Unlock()
	case granted:
		d.mu.Unlock()
		d.finish(w, true)
		d.mu.Lock()
		w.state = canceled
		d.mu.Unlock()
	default:
		d.mu.Unlock()
	}
}

// finish ends a granted permit: the slot is released and, when the permit
// was never used (refund), the rate token too.
func (d *Dispatcher) finish(w *Ticket, refund bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w.state != granted {
		return
	}
	w.state = released
	now := d.clock.Now()
	p := &w.permit
	if refund {
		// Each token goes back to the source it came from (its bucket
		// or its lease), whatever the dispatcher's mode is now.
		p.tok.giveBack(now)
		for _, t := range p.quotaToks {
			t.giveBack(now)
		}
		tokensBack := adjustTokenCap(p, p.cost, now)
		if (giveBackCap(p.cap, p.capGen, now) || tokensBack) && w.lane != nil && !w.lane.idle && w.lane.state == laneSleeping {
			d.readyLocked(w.lane)
		}
		if p.rule != nil {
			p.ruleTok.giveBack(now)
			// Lanes asleep waiting for this rule's next token may go now
			// (rare: a grant whose caller had just left).
			d.wakeTokenWaitersLocked(p.rule)
		}
	}
	d.mu.slots[w.kind].Release()
	if p.rule != nil && w.kind == HTTP {
		p.rule.slots.Release()
		d.wakeSlotWaitersLocked(p.rule)
	}
	d.runLocked(now)
}
