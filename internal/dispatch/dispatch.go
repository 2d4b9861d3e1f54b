package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/limiter"
	"github.com/proxyd/proxyd/internal/queue"
)

// Errors a request can be answered with instead of a permit. They come
// wrapped in a *RejectError; test them with errors.Is.
var (
	ErrQueueFull    = errors.New("queue full")
	ErrShed         = errors.New("shed")
	ErrQueueTimeout = errors.New("queue timeout")
	ErrDraining     = errors.New("draining")

	// ErrPending is Poll's answer while a ticket waits.
	ErrPending = errors.New("dispatch: still waiting")
	// ErrReleased is Poll's answer after the permit was released.
	ErrReleased = errors.New("dispatch: permit released")
)

// RejectError is a refusal with an estimate of when a retry may succeed.
type RejectError struct {
	Err        error         // one of the sentinels above
	RetryAfter time.Duration // estimate from the queue ahead and the rate; at least 1s
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.RetryAfter)
}

func (e *RejectError) Unwrap() error { return e.Err }

// Limits are the live admission limits (the config's limits.* keys).
type Limits struct {
	Rate        float64       // per second; 0 = unlimited
	Burst       int           // token bucket size
	Concurrency int           // HTTP requests in flight; 0 = unlimited
	QueueSize   int           // waiting requests
	MaxWait     time.Duration // longest wait
	MaxTunnels  int           // open CONNECT tunnels
}

// Config configures a Dispatcher.
type Config struct {
	Limits Limits
	// Aging, when > 0, improves a waiting request's urgency by one level per
	// Aging waited; 0 is strict priority.
	Aging time.Duration
}

// Deps are the Dispatcher's collaborators.
type Deps struct {
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock
}

// Kind is the kind of slot a request needs.
type Kind uint8

const (
	// HTTP requests need a concurrency slot.
	HTTP Kind = iota
	// Tunnel (CONNECT) requests need a tunnel slot.
	Tunnel
	numKinds
)

func (k Kind) String() string {
	if k == Tunnel {
		return "tunnel"
	}
	return "http"
}

// Request describes what a caller asks admission for.
type Request struct {
	Urgency int  // 0 (most urgent) … 7
	Kind    Kind // which slot it needs
	// Deadline, when not zero, is the caller's own budget: past it the
	// request is answered ErrQueueTimeout instead of being admitted.
	Deadline time.Time
}

// Stats is a snapshot of the dispatcher's state.
type Stats struct {
	Depth      int               // waiting requests
	ByPriority [queue.Levels]int // waiting requests by urgency
	InFlight   int               // HTTP requests holding a concurrency slot
	Tunnels    int               // open tunnels
	OldestWait time.Duration     // how long the oldest waiting request has waited
	Waiting    [numKinds]int     // waiting requests by kind
	Limits     Limits            // live limits
	Aging      time.Duration     // live aging interval
	Draining   bool              // Drain or Close was called
	Tokens     float64           // rate tokens available now (+Inf when unlimited)
	_          struct{}          // keep composite literals keyed
}

type state uint8

const (
	waiting state = iota
	granted
	rejected
	canceled
	released
)

// Urgency is the urgency the ticket was queued with.
func (w *Ticket) Urgency() int { return w.item.Urgency }

// Ticket is a request that entered the queue. Exactly one of its outcomes
// happens: granted (a Permit), rejected (a *RejectError) or canceled. It is
// allocated once and carries the queue item, the permit and the result
// channel.
type Ticket struct {
	d      *Dispatcher
	item   queue.Item
	kind   Kind
	state  state
	ch     chan error // created only when the caller has to wait
	err    error
	permit Permit
}

// Permit is an admission. Release it exactly when the request is done
// (response body closed, tunnel closed); Release is idempotent.
type Permit struct {
	w      *Ticket
	d      *Dispatcher
	tok    limiter.Token
	waited time.Duration
}

// Waited is how long the request waited before admission.
func (p *Permit) Waited() time.Duration { return p.waited }

// Release gives the slot back and lets the next request through.
func (p *Permit) Release() { p.d.finish(p.w, false) }

// Dispatcher admits requests. Create it with New; it is safe for
// concurrent use.
type Dispatcher struct {
	clock clock.Clock

	mu struct {
		sync.Mutex
		q        *queue.Queue
		lanes    [numKinds]*queue.Lane
		slots    [numKinds]limiter.Slots
		rate     *limiter.Bucket
		limits   Limits
		timer    clock.Timer
		timerAt  time.Time
		draining bool
	}
}

// New returns a Dispatcher with the given limits.
func New(cfg Config, deps Deps) *Dispatcher {
	c := deps.Clock
	if c == nil {
		c = clock.Real{}
	}
	d := &Dispatcher{clock: c}
	now := c.Now()
	d.mu.q = queue.New(cfg.Aging, now)
	for k := range d.mu.lanes {
		d.mu.lanes[k] = d.mu.q.NewLane()
	}
	d.mu.rate = limiter.NewBucket(cfg.Limits.Rate, cfg.Limits.Burst)
	d.mu.slots[HTTP] = limiter.NewSlots(cfg.Limits.Concurrency)
	d.mu.slots[Tunnel] = limiter.NewSlots(cfg.Limits.MaxTunnels)
	d.mu.limits = cfg.Limits
	return d
}

// Acquire waits for a permit for r: Enqueue, then Wait. It returns a
// *RejectError when the request is refused (queue full, shed, queue
// timeout, draining) and ctx.Err() when ctx ends first; in both cases
// nothing is held.
func (d *Dispatcher) Acquire(ctx context.Context, r Request) (*Permit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := d.Enqueue(r)
	if err != nil {
		return nil, err
	}
	return t.Wait(ctx)
}

// Enqueue puts r in the queue and admits whatever can be admitted at once,
// without blocking. An immediate refusal (queue full, draining, a deadline
// already past) is returned as the error; otherwise the Ticket tells the
// outcome (Wait, Poll) and must be waited for or canceled.
func (d *Dispatcher) Enqueue(r Request) (*Ticket, error) {
	w := &Ticket{d: d, kind: r.Kind}
	if w.kind >= numKinds {
		w.kind = HTTP
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	w.item = queue.Item{Urgency: r.Urgency, Arrival: now, Deadline: r.Deadline, Value: w}
	if d.mu.draining {
		return nil, &RejectError{Err: ErrDraining, RetryAfter: time.Second}
	}
	if !r.Deadline.IsZero() && !now.Before(r.Deadline) {
		return nil, &RejectError{Err: ErrQueueTimeout, RetryAfter: d.retryAfterLocked(r.Urgency, now)}
	}
	evicted, err := d.mu.q.Push(d.mu.lanes[w.kind], &w.item, d.mu.limits.QueueSize)
	if err != nil {
		return nil, &RejectError{Err: ErrQueueFull, RetryAfter: d.retryAfterLocked(r.Urgency, now)}
	}
	if evicted != nil {
		d.rejectLocked(evicted.Value.(*Ticket), ErrShed, now)
	}
	d.runLocked(now)
	if w.state == waiting {
		w.ch = make(chan error, 1)
	}
	return w, nil
}

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
			w.Cancel()
		}
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
		w.state = canceled
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
	if refund {
		d.mu.rate.Refund(w.permit.tok, now)
	}
	d.mu.slots[w.kind].Release()
	d.runLocked(now)
}

// runLocked expires, admits, and arms the timer; see the package doc.
func (d *Dispatcher) runLocked(now time.Time) {
	d.expireLocked(now)
	var wake time.Time
	for {
		lane := d.pickLocked()
		if lane == nil {
			break
		}
		tok, ok, wait := d.mu.rate.Take(now)
		if !ok {
			if wait < time.Duration(math.MaxInt64) {
				wake = now.Add(wait)
			}
			break
		}
		w := d.mu.q.Pop(lane).Value.(*Ticket)
		d.mu.slots[w.kind].Acquire()
		w.state = granted
		w.permit = Permit{w: w, d: d, tok: tok, waited: now.Sub(w.item.Arrival)}
		if w.ch != nil {
			w.ch <- nil
		}
	}
	d.armLocked(now, wake)
}

// pickLocked returns the lane whose head leaves first among the lanes with
// a free slot, or nil.
func (d *Dispatcher) pickLocked() *queue.Lane {
	var best *queue.Lane
	var head *queue.Item
	for k, l := range d.mu.lanes {
		it := l.Peek()
		if it == nil || !d.mu.slots[k].Available() {
			continue
		}
		if head == nil || queue.Before(it, head) {
			best, head = l, it
		}
	}
	return best
}

func (d *Dispatcher) expireLocked(now time.Time) {
	q := d.mu.q
	for it := q.Oldest(); it != nil && !now.Before(it.Arrival.Add(d.mu.limits.MaxWait)); it = q.Oldest() {
		d.rejectLocked(it.Value.(*Ticket), ErrQueueTimeout, now)
	}
	for it := q.NextDeadline(); it != nil && !now.Before(it.Deadline); it = q.NextDeadline() {
		d.rejectLocked(it.Value.(*Ticket), ErrQueueTimeout, now)
	}
}

// rejectLocked answers a waiting request with err and removes it.
func (d *Dispatcher) rejectLocked(w *Ticket, err error, now time.Time) {
	d.mu.q.Remove(&w.item)
	w.state = rejected
	w.err = &RejectError{Err: err, RetryAfter: d.retryAfterLocked(w.item.Urgency, now)}
	if w.ch != nil {
		w.ch <- w.err
	}
}

// retryAfterLocked estimates when a request of this urgency could get
// through: the waiting requests at least as urgent, one more, at the rate.
func (d *Dispatcher) retryAfterLocked(urgency int, now time.Time) time.Duration {
	r := d.mu.rate
	if r.Unlimited() {
		return time.Second
	}
	need := float64(d.mu.q.CountUpTo(urgency)+1) - r.Tokens(now)
	ra := time.Duration(math.Ceil(need/r.Rate())) * time.Second
	return max(ra, time.Second)
}

// armLocked makes sure the timer fires no later than the earliest moment
// anything can change by itself: wake (a token), the oldest request's max
// wait, the earliest caller deadline. A timer that fires early is harmless.
func (d *Dispatcher) armLocked(now, wake time.Time) {
	next := wake
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if it := d.mu.q.Oldest(); it != nil {
		earliest(it.Arrival.Add(d.mu.limits.MaxWait))
	}
	if it := d.mu.q.NextDeadline(); it != nil {
		earliest(it.Deadline)
	}
	if next.IsZero() {
		return
	}
	if d.mu.timer != nil {
		if !d.mu.timerAt.After(next) {
			return // fires soon enough
		}
		d.mu.timer.Stop()
	}
	d.mu.timerAt = next
	d.mu.timer = d.clock.AfterFunc(next.Sub(now), d.onTimer)
}

func (d *Dispatcher) onTimer() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.timer = nil
	d.mu.timerAt = time.Time{}
	if d.mu.draining && d.mu.q.Len() == 0 {
		return
	}
	d.runLocked(d.clock.Now())
}

// SetLimits changes the limits at once. Waiting requests keep their place;
// more capacity admits them at once, a shorter max wait expires those
// already older than it. It returns the previous limits.
func (d *Dispatcher) SetLimits(l Limits) (old Limits) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	old = d.mu.limits
	d.mu.limits = l
	d.mu.rate.Set(now, l.Rate, l.Burst)
	d.mu.slots[HTTP].SetCap(l.Concurrency)
	d.mu.slots[Tunnel].SetCap(l.MaxTunnels)
	d.runLocked(now)
	return old
}

// SetAging changes the aging interval; waiting requests are re-ranked.
func (d *Dispatcher) SetAging(a time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.q.SetAging(a)
	d.runLocked(d.clock.Now())
}

// Limits returns the live limits.
func (d *Dispatcher) Limits() Limits {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.limits
}

// Drain refuses new requests with ErrDraining; waiting ones keep their
// place and are still admitted.
func (d *Dispatcher) Drain() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.draining = true
}

// Close refuses new requests and answers every waiting one ErrDraining.
// Permits already granted stay valid until released.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.draining = true
	now := d.clock.Now()
	for it := d.mu.q.Oldest(); it != nil; it = d.mu.q.Oldest() {
		d.rejectLocked(it.Value.(*Ticket), ErrDraining, now)
	}
	if d.mu.timer != nil {
		d.mu.timer.Stop()
		d.mu.timer = nil
	}
}

// Stats returns a snapshot.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	s := Stats{
		Depth:    d.mu.q.Len(),
		InFlight: d.mu.slots[HTTP].InUse(),
		Tunnels:  d.mu.slots[Tunnel].InUse(),
		Limits:   d.mu.limits,
		Aging:    d.mu.q.Aging(),
		Draining: d.mu.draining,
		Tokens:   d.mu.rate.Tokens(now),
	}
	for u := range s.ByPriority {
		s.ByPriority[u] = d.mu.q.Count(u)
	}
	for k, l := range d.mu.lanes {
		s.Waiting[k] = l.Len()
	}
	if it := d.mu.q.Oldest(); it != nil {
		s.OldestWait = now.Sub(it.Arrival)
	}
	return s
}
