package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/limiter"
	"github.com/proxyd/proxyd/internal/queue"
)

// Errors a request can be answered with instead of a permit. They come
// wrapped in a *RejectError; test them with errors.Is.
var (
	ErrQueueFull = errors.New("queue full")
	// ErrClientQueueFull: the request's client already has its
	// Request.ClientQueueSize requests waiting (docs/clients.md); nobody else's
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
	// is one (docs/tls-interception.md): each request read from its tunnel takes its own
	// token.
	NoToken bool
	// Client is who sent the request ("" for nobody in particular): with
	// fairness, clients take turns among equals; ClientQueueSize > 0 caps
	// how many of its requests may wait (beyond it: ErrClientQueueFull).
	Client          string
	ClientQueueSize int
	// Cost is what the request is priced at in tokens (hosts[].cost,
	// cost.go): what its rule's tokens quotas and its destination's
	// provider cap in tokens take; requests quotas take 1. 0 means not
	// priced: the rule's cost.default under a rule with a tokens quota,
	// else no tokens are counted.
	Cost int64
}

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
		rate      *limiter.Bucket // the local global bucket
		// global is where the global tokens come from: rate, or the
		// store's leases (lease.pool) while SetLeased is on.
		global   tokenSource
		limits   Limits
		timer    clock.Timer
		timerAt  time.Time
		draining bool
		lease    leaseState              // the global tokens, when a shared store leases them
		idle     int                     // empty lanes kept in lanes
		reserve  int                     // Config.Reserve
		share    float64                 // SetLocalShare: the local bucket's share of limits.rate
		seen     [queue.Levels]time.Time // latest arrival by urgency, for reserve
		admitted uint64                  // permits granted (Stats.Admitted)
		// quotas are limits.Quotas' live state (quota.go).
		quotas []*windowLog
		// shared is the global cap's side when it is fleet-wide
		// (Limits.SharedConcurrency, sharedslots.go); slotExpiry the
		// soonest end of a shared cap's lease, zero when none.
		shared     slotLease
		slotExpiry time.Time
		// caps are the provider caps (caps.go), capQ their ends (a
		// min-heap by until, stale entries included).
		caps map[capKey]*provCap
		capQ []pauseEntry
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
	d.mu.caps = make(map[capKey]*provCap)
	d.setHostsLocked(cfg.Hosts, now)
	d.mu.share = 1
	d.mu.rate = limiter.NewBucket(cfg.Limits.Rate, cfg.Limits.Burst)
	d.mu.global = localTokens{d.mu.rate}
	d.mu.slots[HTTP] = limiter.NewSlots(cfg.Limits.Concurrency)
	d.mu.slots[Tunnel] = limiter.NewSlots(cfg.Limits.MaxTunnels)
	d.mu.limits = cfg.Limits
	d.mu.quotas = setQuotas(nil, cfg.Limits.Quotas)
	d.mu.reserve = max(cfg.Reserve, 0)
	d.syncSlotsLocked(now)
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
	w := &Ticket{d: d, kind: r.Kind, cost: max(r.Cost, 0)}
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
	if err := checkCost(w, l); err != nil {
		d.laneChangedLocked(l) // never queued: a new lane stays idle
		return nil, err
	}
	evicted, err := d.mu.q.Push(l.q, &w.item, d.mu.limits.QueueSize)
	if err != nil {
		d.laneChangedLocked(l)
		return nil, &RejectError{Err: ErrQueueFull, RetryAfter: d.retryAfterLocked(r.Urgency, r.Dest, now)}
	}
	w.lane = l
	l.join(w)
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
	d.newHeadLocked(l, w)
	d.runLocked(now)
	if w.state == waiting {
		w.ch = make(chan error, 1)
		d.signalLeaseLocked(w)
	}
	return w, nil
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
