package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/limiter"
	"github.com/proxyd/proxyd/internal/queue"
)

// Errors a request can be answered with instead of a permit. They come
// wrapped in a *RejectError; test them with errors.Is.
var (
	ErrQueueFull = errors.New("queue full")
	// ErrClientQueueFull: the request's client already has its
	// Request.ClientQueueSize requests waiting (SPEC §12); nobody else's
	// request was evicted for it.
	ErrClientQueueFull = errors.New("client queue full")
	ErrShed            = errors.New("shed")
	ErrQueueTimeout    = errors.New("queue timeout")
	ErrDraining        = errors.New("draining")

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
	// Hosts are per-destination limits; the first that matches a request's
	// Dest applies.
	Hosts []HostLimit
	// Aging, when > 0, improves a waiting request's urgency by one level per
	// Aging waited; 0 is strict priority.
	Aging time.Duration
	// Fairness makes clients (Request.Client) take turns among waiting
	// requests of equal urgency (fairness: client, SPEC §12).
	Fairness bool
	// Reserve is the headroom of the global bucket kept for urgent
	// arrivals (priority.reserve): a request leaves this many tokens in
	// the bucket when a more urgent one arrived in the last ReserveWindow.
	// 0 turns it off; it never exceeds limits.burst-1.
	Reserve int
}

// ReserveWindow is how recently a more urgent request must have arrived for
// a less urgent one to leave Config.Reserve tokens to it.
const ReserveWindow = time.Second

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
	// Dest is the destination "host:port": it selects the hosts rule and
	// the back-pressure pause that apply. "" means neither.
	Dest string
	// Arrival and Seq, when set, are those of an earlier attempt of the same
	// request (a retry), so that it keeps its place among equals (Permit's
	// Arrival and Seq). Zero means a new request.
	Arrival time.Time
	Seq     uint64
	// NoToken requests need their kind's slot only: no global or hosts-rule
	// token, and no back-pressure pause holds them. An intercepted CONNECT
	// is one (SPEC §9): each request read from its tunnel takes its own
	// token.
	NoToken bool
	// Client is who sent the request ("" for nobody in particular): with
	// fairness, clients take turns among equals; ClientQueueSize > 0 caps
	// how many of its requests may wait (beyond it: ErrClientQueueFull).
	Client          string
	ClientQueueSize int
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
	Reserve    int               // live priority.reserve (Config.Reserve)
	Draining   bool              // Drain or Close was called
	Tokens     float64           // rate tokens available now (+Inf when unlimited)
	Paused     []Paused          // destinations paused by back-pressure, soonest end first
	Lanes      int               // destinations (by kind) with waiting requests
	Hosts      []HostStats       // per hosts rule, in rule order
	// Admitted counts the permits granted since New (HTTP requests, each
	// retry attempt and tunnels): what the rate limit is spent on. It only
	// grows; the admin dashboard turns it into a rate.
	Admitted uint64
}

// HostStats is a hosts rule's live state.
type HostStats struct {
	Match    string
	Limit    HostLimit // the rule's live limits
	InFlight int       // HTTP requests in flight under the rule
	Waiting  int       // requests waiting under the rule
	Admitted uint64    // permits granted under the rule since it was first configured
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
	lane   *lane
	state  state
	ch     chan error // created only when the caller has to wait
	err    error
	permit Permit
}

// Permit is an admission. Release it exactly when the request is done
// (response body closed, tunnel closed); Release is idempotent.
type Permit struct {
	w       *Ticket
	d       *Dispatcher
	tok     limiter.Token
	leased  bool  // its global token came from a lease (shared store)
	rule    *rule // whose slot (HTTP) and token it holds, or nil
	ruleTok limiter.Token
	// ruleLeased: its rule token came from the rule's lease.
	ruleLeased bool
	waited     time.Duration
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

// Dispatcher admits requests. Create it with New; it is safe for
// concurrent use.
type Dispatcher struct {
	clock clock.Clock

	mu struct {
		sync.Mutex
		q     *queue.Queue
		lanes map[laneKey]*lane
		ready [numKinds]laneHeap // lanes whose own gates may be open
		// readyFree holds the ready free lanes (Request.NoToken): they go
		// before any other lane of their kind, since they wait for a slot
		// only.
		readyFree [numKinds]laneHeap
		sleeping  laneHeap // lanes held until wakeAt
		rules     []*rule
		pauses    map[string]time.Time
		pauseQ    []pauseEntry // min-heap by until
		slots     [numKinds]limiter.Slots
		rate      *limiter.Bucket
		limits    Limits
		timer     clock.Timer
		timerAt   time.Time
		draining  bool
		lease     leaseState              // the global tokens, when a shared store leases them
		idle      int                     // empty lanes kept in lanes
		reserve   int                     // Config.Reserve
		seen      [queue.Levels]time.Time // latest arrival by urgency, for reserve
		admitted  uint64                  // permits granted (Stats.Admitted)
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
	d.mu.q.SetFairness(cfg.Fairness)
	d.mu.lanes = make(map[laneKey]*lane)
	d.mu.sleeping.byWake = true
	d.mu.pauses = make(map[string]time.Time)
	d.setHostsLocked(cfg.Hosts, now)
	d.mu.rate = limiter.NewBucket(cfg.Limits.Rate, cfg.Limits.Burst)
	d.mu.slots[HTTP] = limiter.NewSlots(cfg.Limits.Concurrency)
	d.mu.slots[Tunnel] = limiter.NewSlots(cfg.Limits.MaxTunnels)
	d.mu.limits = cfg.Limits
	d.mu.reserve = max(cfg.Reserve, 0)
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
	arrival := r.Arrival
	if arrival.IsZero() {
		arrival = now
	}
	w.item = queue.Item{Urgency: r.Urgency, Arrival: arrival, Enqueued: now, Deadline: r.Deadline, Value: w, Client: r.Client}
	if u := r.Urgency; u >= 0 && u < queue.Levels {
		d.mu.seen[u] = now
	}
	w.item.SetSeq(r.Seq)
	if d.mu.draining {
		return nil, &RejectError{Err: ErrDraining, RetryAfter: time.Second}
	}
	if !r.Deadline.IsZero() && !now.Before(r.Deadline) {
		return nil, &RejectError{Err: ErrQueueTimeout, RetryAfter: d.retryAfterLocked(r.Urgency, r.Dest, now)}
	}
	if r.ClientQueueSize > 0 && d.mu.q.ClientLen(r.Client) >= r.ClientQueueSize {
		// Refused without evicting anyone: the cap is the client's own.
		return nil, &RejectError{Err: ErrClientQueueFull, RetryAfter: d.retryAfterLocked(r.Urgency, r.Dest, now)}
	}
	l := d.laneLocked(laneKey{w.kind, r.Dest, r.NoToken})
	evicted, err := d.mu.q.Push(l.q, &w.item, d.mu.limits.QueueSize)
	if err != nil {
		d.laneChangedLocked(l)
		return nil, &RejectError{Err: ErrQueueFull, RetryAfter: d.retryAfterLocked(r.Urgency, r.Dest, now)}
	}
	w.lane = l
	// l holds the newcomer: if it was an idle lane being reused, it is idle
	// no more before the victim's lane turns idle, which may sweep every
	// idle lane. (The victim's lane must be fixed before any heap
	// compares heads: it may have just lost its head.)
	if l.idle {
		l.idle = false
		d.mu.idle--
	}
	if evicted != nil {
		d.rejectLocked(evicted.Value.(*Ticket), ErrShed, now)
	}
	d.laneChangedLocked(l)
	d.runLocked(now)
	if w.state == waiting {
		w.ch = make(chan error, 1)
		d.signalLeaseLocked(w)
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
		}
	}
	// The grant and ctx.Done() may be ready together, and select picks
	// either: a caller that has left never gets the permit (SPEC §4), it is
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
		d.laneChangedLocked(w.lane)
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
	p := &w.permit
	if refund {
		d.mu.rate.Refund(p.tok, now)
		if p.leased {
			d.mu.lease.tokens++ // given back to this replica's lease
		}
		if p.rule != nil {
			p.rule.bucket.Refund(p.ruleTok, now)
			if p.ruleLeased {
				p.rule.lease.tokens++
			}
			// Lanes asleep waiting for this rule's next token may go now
			// (rare: a grant whose caller had just left).
			for _, l := range d.mu.lanes {
				if l.rule == p.rule && !l.idle && l.state == laneSleeping {
					d.readyLocked(l)
				}
			}
		}
	}
	d.mu.slots[w.kind].Release()
	if p.rule != nil && w.kind == HTTP {
		p.rule.slots.Release()
		d.wakeSlotWaitersLocked(p.rule)
	}
	d.runLocked(now)
}

// runLocked expires, admits, and arms the timer; see the package doc.
func (d *Dispatcher) runLocked(now time.Time) {
	d.expireLocked(now)
	d.wakeSleepersLocked(now)
	var wake time.Time
	for {
		l := d.pickLocked()
		if l == nil {
			break
		}
		// The lane's own gates: a pause, then its rule's slot and token.
		if now.Before(l.pausedUntil) {
			d.sleepLocked(l, l.pausedUntil)
			continue
		}
		r := l.rule
		if r != nil {
			if l.key.kind == HTTP && !r.slots.Available() {
				d.slotWaitLocked(l)
				continue
			}
			if d.sharedRuleLocked(r) {
				if r.lease.tokens < 1 || !r.lease.expires.After(now) {
					// Until the store's next grant for the rule wakes it.
					d.sleepLocked(l, now.Add(time.Hour))
					continue
				}
			} else if r.bucket.Tokens(now) < 1 {
				_, _, wait := r.bucket.Take(now)
				if wait >= time.Duration(math.MaxInt64) {
					wait = time.Hour // burst 0 cannot be configured; be safe
				}
				d.sleepLocked(l, now.Add(wait))
				continue
			}
		}
		// The global token last: without one, nobody goes (but a free
		// lane, which needs none).
		var tok limiter.Token
		leased := false
		if !l.key.free {
			if d.mu.lease.on {
				// A shared store feeds the global tokens (lease.go):
				// without one nobody goes until its next Grant.
				if !d.takeLeasedLocked(now) {
					break
				}
				leased = true
			} else {
				var ok bool
				var wait time.Duration
				keep := d.keepLocked(l.q.Peek().Urgency, now)
				if tok, ok, wait = d.mu.rate.TakeLeaving(now, keep); !ok {
					if wait < time.Duration(math.MaxInt64) {
						wake = now.Add(wait)
					}
					break
				}
			}
		}
		w := d.mu.q.Pop(l.q).Value.(*Ticket)
		d.mu.slots[w.kind].Acquire()
		w.permit = Permit{w: w, d: d, tok: tok, leased: leased, waited: now.Sub(w.item.Enqueued)}
		if r != nil {
			w.permit.rule = r
			if d.sharedRuleLocked(r) {
				r.lease.tokens--
				w.permit.ruleLeased = true
			} else {
				w.permit.ruleTok, _, _ = r.bucket.Take(now)
			}
			if w.kind == HTTP {
				r.slots.Acquire()
			}
			r.admitted++
		}
		d.mu.admitted++
		w.state = granted
		if w.ch != nil {
			w.ch <- nil
		}
		d.laneChangedLocked(l)
	}
	d.armLocked(now, wake)
}

// pickLocked returns the ready lane whose head leaves first among the
// kinds with a free slot, or nil.
func (d *Dispatcher) pickLocked() *lane {
	for k := range d.mu.readyFree {
		if l := d.mu.readyFree[k].top(); l != nil && d.mu.slots[k].Available() {
			return l
		}
	}
	var best *lane
	for k := range d.mu.ready {
		l := d.mu.ready[k].top()
		if l == nil || !d.mu.slots[k].Available() {
			continue
		}
		if best == nil || queue.Before(l.q.Peek(), best.q.Peek()) {
			best = l
		}
	}
	return best
}

// laneLocked returns the lane for key, creating it (empty) if needed.
func (d *Dispatcher) laneLocked(key laneKey) *lane {
	if l, ok := d.mu.lanes[key]; ok {
		return l
	}
	l := &lane{key: key, q: d.mu.q.NewLane(), idx: -1}
	if !key.free {
		l.rule, l.pausedUntil = matchRule(d.mu.rules, key.dest), d.mu.pauses[key.dest]
	}
	d.mu.lanes[key] = l
	return l
}

// laneChangedLocked restores l's place after its head changed: an empty
// lane is forgotten; a new one becomes ready; a ready one moves.
func (d *Dispatcher) laneChangedLocked(l *lane) {
	if l.q.Len() == 0 {
		if !l.idle {
			d.detachLocked(l)
			l.idle = true
			d.mu.idle++
			d.sweepIdleLocked()
		}
		return
	}
	if l.idle {
		l.idle = false
		d.mu.idle--
	}
	if l.idx < 0 && l.state != laneSlotWait {
		l.state = laneReady
		d.readyHeap(l).push(l)
		return
	}
	if l.state == laneReady {
		d.readyHeap(l).fix(l.idx)
	}
}

// maxIdleLanes is how many empty lanes are kept (with their matched rule)
// before they are forgotten; idle lanes make a destination's next request
// cheap, and the sweep keeps the state bounded.
const maxIdleLanes = 1024

// sweepIdleLocked forgets every empty lane once there are too many;
// amortized O(1) per lane. A lane with waiting requests is never dropped,
// whatever its idle mark says: Pause and SetHosts reach lanes through
// d.mu.lanes.
func (d *Dispatcher) sweepIdleLocked() {
	if d.mu.idle <= maxIdleLanes {
		return
	}
	kept := 0
	for key, l := range d.mu.lanes {
		if !l.idle {
			continue
		}
		if !d.mu.q.DropLane(l.q) {
			kept++
			continue
		}
		delete(d.mu.lanes, key)
	}
	d.mu.idle = kept
}

// detachLocked takes l out of whichever structure holds it.
func (d *Dispatcher) detachLocked(l *lane) {
	switch {
	case l.state == laneSlotWait:
		delete(l.rule.slotWaiters, l)
	case l.idx >= 0 && l.state == laneReady:
		d.readyHeap(l).remove(l.idx)
	case l.idx >= 0 && l.state == laneSleeping:
		d.mu.sleeping.remove(l.idx)
	}
	l.idx = -1
	l.state = laneReady
}

func (d *Dispatcher) sleepLocked(l *lane, until time.Time) {
	d.detachLocked(l)
	l.state, l.wakeAt = laneSleeping, until
	d.mu.sleeping.push(l)
}

func (d *Dispatcher) slotWaitLocked(l *lane) {
	d.detachLocked(l)
	l.state = laneSlotWait
	l.rule.slotWaiters[l] = struct{}{}
}

func (d *Dispatcher) readyLocked(l *lane) {
	d.detachLocked(l)
	l.state = laneReady
	d.readyHeap(l).push(l)
}

// readyHeap is the heap that holds l when it is ready.
func (d *Dispatcher) readyHeap(l *lane) *laneHeap {
	if l.key.free {
		return &d.mu.readyFree[l.key.kind]
	}
	return &d.mu.ready[l.key.kind]
}

func (d *Dispatcher) wakeSlotWaitersLocked(r *rule) {
	for l := range r.slotWaiters {
		d.readyLocked(l)
	}
}

// wakeSleepersLocked makes ready the lanes whose wake time has come, and
// forgets pauses that have ended.
func (d *Dispatcher) wakeSleepersLocked(now time.Time) {
	for l := d.mu.sleeping.top(); l != nil && !now.Before(l.wakeAt); l = d.mu.sleeping.top() {
		d.readyLocked(l)
	}
	for len(d.mu.pauseQ) > 0 && !now.Before(d.mu.pauseQ[0].until) {
		e := d.popPauseLocked()
		if until, ok := d.mu.pauses[e.dest]; ok && !now.Before(until) {
			delete(d.mu.pauses, e.dest)
		}
	}
}

func (d *Dispatcher) expireLocked(now time.Time) {
	q := d.mu.q
	for it := q.Oldest(); it != nil && !now.Before(it.Enqueued.Add(d.mu.limits.MaxWait)); it = q.Oldest() {
		d.rejectLocked(it.Value.(*Ticket), ErrQueueTimeout, now)
	}
	for it := q.NextDeadline(); it != nil && !now.Before(it.Deadline); it = q.NextDeadline() {
		d.rejectLocked(it.Value.(*Ticket), ErrQueueTimeout, now)
	}
}

// rejectLocked answers a waiting request with err and removes it.
func (d *Dispatcher) rejectLocked(w *Ticket, err error, now time.Time) {
	d.mu.q.Remove(&w.item)
	d.laneChangedLocked(w.lane)
	w.state = rejected
	w.err = &RejectError{Err: err, RetryAfter: d.retryAfterLocked(w.item.Urgency, w.lane.key.dest, now)}
	if w.ch != nil {
		w.ch <- w.err
	}
}

// retryAfterLocked estimates when a request of this urgency could get
// through: the waiting requests at least as urgent, one more, at the rate.
//
// A destination paused by back-pressure cannot be reached before its pause
// ends, so the estimate is at least that.
func (d *Dispatcher) retryAfterLocked(urgency int, dest string, now time.Time) time.Duration {
	ra := time.Second
	if r := d.mu.rate; !r.Unlimited() {
		need := float64(d.mu.q.CountUpTo(urgency)+1) - r.Tokens(now)
		ra = max(ra, time.Duration(math.Ceil(need/r.Rate()))*time.Second)
	}
	if until, ok := d.mu.pauses[dest]; ok && until.After(now) {
		ra = max(ra, until.Sub(now))
	}
	return ra
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
		earliest(it.Enqueued.Add(d.mu.limits.MaxWait))
	}
	if it := d.mu.q.NextDeadline(); it != nil {
		earliest(it.Deadline)
	}
	if l := d.mu.sleeping.top(); l != nil {
		earliest(l.wakeAt)
	}
	if len(d.mu.pauseQ) > 0 {
		earliest(d.mu.pauseQ[0].until)
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

// SetFairness turns fairness among clients on or off (a reload); waiting
// requests are re-ordered.
func (d *Dispatcher) SetFairness(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.q.SetFairness(on)
	// Lanes are ordered by their heads, which may have changed.
	for k := range d.mu.ready {
		d.mu.ready[k].init()
		d.mu.readyFree[k].init()
	}
	d.runLocked(d.clock.Now())
}

// keepLocked is how many global tokens a request of urgency u must leave in
// the bucket: Config.Reserve when a more urgent request arrived within
// ReserveWindow, else none. Under overload the bucket is empty and every
// token goes the moment it appears; the reserve makes an urgent arrival
// find one there instead of waiting for the next refill (and for the timer
// that marks it, which on Linux fires up to a millisecond late). The rate
// is unchanged: the bucket refills while below burst, and the reserve stays
// below it.
func (d *Dispatcher) keepLocked(u int, now time.Time) int {
	if d.mu.reserve == 0 {
		return 0
	}
	for v := 0; v < u && v < queue.Levels; v++ {
		if t := d.mu.seen[v]; !t.IsZero() && now.Sub(t) < ReserveWindow {
			return d.mu.reserve
		}
	}
	return 0
}

// SetReserve changes Config.Reserve (a reload).
func (d *Dispatcher) SetReserve(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.reserve = max(n, 0)
	d.runLocked(d.clock.Now())
}

// SetAging changes the aging interval; waiting requests are re-ranked.
func (d *Dispatcher) SetAging(a time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.q.SetAging(a)
	// Lanes are ordered by their heads' ranks, which just changed.
	for k := range d.mu.ready {
		d.mu.ready[k].init()
		d.mu.readyFree[k].init()
	}
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
		Reserve:  d.mu.reserve,
		Draining: d.mu.draining,
		Tokens:   d.mu.rate.Tokens(now),
		Admitted: d.mu.admitted,
	}
	for u := range s.ByPriority {
		s.ByPriority[u] = d.mu.q.Count(u)
	}
	s.Lanes = len(d.mu.lanes) - d.mu.idle
	ruleWaiting := make(map[*rule]int, len(d.mu.rules))
	for _, l := range d.mu.lanes {
		s.Waiting[l.key.kind] += l.q.Len()
		if l.rule != nil {
			ruleWaiting[l.rule] += l.q.Len()
		}
	}
	for _, r := range d.mu.rules {
		s.Hosts = append(s.Hosts, HostStats{Match: r.limit.Match.String(), Limit: r.limit, InFlight: r.slots.InUse(), Waiting: ruleWaiting[r], Admitted: r.admitted})
	}
	if it := d.mu.q.Oldest(); it != nil {
		s.OldestWait = now.Sub(it.Enqueued)
	}
	for dest, until := range d.mu.pauses {
		if now.Before(until) {
			s.Paused = append(s.Paused, Paused{Dest: dest, Until: until})
		}
	}
	sort.Slice(s.Paused, func(i, j int) bool {
		if !s.Paused[i].Until.Equal(s.Paused[j].Until) {
			return s.Paused[i].Until.Before(s.Paused[j].Until)
		}
		return s.Paused[i].Dest < s.Paused[j].Dest
	})
	return s
}

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

// SetHosts replaces the per-destination rules. A rule whose match is
// unchanged keeps its state (tokens, requests in flight); waiting requests
// keep their place and are re-matched at once.
func (d *Dispatcher) SetHosts(hosts []HostLimit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	for _, l := range d.mu.lanes {
		d.detachLocked(l) // from the old rule's structures
	}
	d.setHostsLocked(hosts, now)
	for _, l := range d.mu.lanes {
		if !l.key.free {
			l.rule = matchRule(d.mu.rules, l.key.dest)
		}
		if !l.idle {
			d.readyLocked(l) // gates are checked again at the next pick
		}
	}
	d.runLocked(now)
}

func (d *Dispatcher) setHostsLocked(hosts []HostLimit, now time.Time) {
	old := make(map[config.HostPattern]*rule, len(d.mu.rules))
	for _, r := range d.mu.rules {
		old[r.limit.Match] = r
	}
	rules := make([]*rule, 0, len(hosts))
	for _, h := range hosts {
		r, ok := old[h.Match]
		if ok {
			delete(old, h.Match)
			r.bucket.Set(now, h.Rate, h.Burst)
			r.slots.SetCap(h.Concurrency)
			r.limit = h
		} else {
			r = &rule{limit: h, bucket: limiter.NewBucket(h.Rate, h.Burst), slots: limiter.NewSlots(h.Concurrency), slotWaiters: map[*lane]struct{}{}}
		}
		rules = append(rules, r)
	}
	// Permits still holding a dropped rule's slots release them harmlessly.
	d.mu.rules = rules
}

func (d *Dispatcher) pushPauseLocked(e pauseEntry) {
	h := append(d.mu.pauseQ, e)
	for j := len(h) - 1; j > 0; {
		i := (j - 1) / 2
		if !h[j].until.Before(h[i].until) {
			break
		}
		h[i], h[j] = h[j], h[i]
		j = i
	}
	d.mu.pauseQ = h
}

func (d *Dispatcher) popPauseLocked() pauseEntry {
	h := d.mu.pauseQ
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
	d.mu.pauseQ = h
	return top
}
