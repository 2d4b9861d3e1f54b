// Package dispatch admits waiting requests: it owns the queue and the
// permits (rate tokens, concurrency slots, tunnel slots) and grants each
// permit to the most urgent request that can use it.
//
// # Model
//
// A caller asks for a Permit with Acquire(ctx, Request). The request enters
// the queue (internal/queue) in the lane of the kind of slot it needs: one
// lane for HTTP requests (a concurrency slot) and one for CONNECT tunnels (a
// tunnel slot). Both need a rate token. Acquire returns when the request is
// admitted (a Permit, whose Release gives the slot back once the response
// body is done or the tunnel closed), rejected (a *RejectError wrapping
// ErrQueueFull, ErrShed, ErrQueueTimeout or ErrDraining) or when ctx ends.
//
// # No goroutine of its own
//
// The dispatcher is a state machine under one lock. Every event that can
// let a request through — an arrival, a released slot, a limit change, a
// token refill time, a deadline — calls runLocked, which
//
//  1. expires requests past max wait (the oldest arrival first) or past
//     their caller's deadline, answering "queue timeout";
//  2. repeatedly picks, among the lanes whose slot is free, the lane whose
//     head leaves first by (rank, seq), takes a rate token and a slot, and
//     grants them to that head — until no lane has a free slot or no token
//     is left;
//  3. arms one timer (from the injected clock) for the earliest of: the
//     next token, the oldest request's max wait, the earliest caller
//     deadline.
//
// So nothing polls or sleeps, and with a fake clock every test is
// deterministic: time moves only when the test advances it.
//
// # Invariants
//
//   - The most urgent waiting request whose slot kind is available is
//     admitted first; equal urgency is FIFO (queue order).
//   - A request held back by its slot kind (tunnels full) never holds back
//     a request that needs the other kind: each kind has its own lane.
//   - Every Acquire ends exactly once: granted, rejected, or canceled. A
//     grant that races with the caller's cancellation is given back (slot
//     released, rate token refunded).
//   - Limit changes apply to requests already waiting without removing or
//     reordering them (a shorter max wait does expire the ones already
//     older than it).
//
// # Growing it
//
// Per-destination limits add a lane per destination with its own gates; the
// pick step then takes the best head among lanes whose gates are all open,
// kept in a heap of ready lanes so that a blocked destination costs nothing
// until its gate opens. A shared (Redis) rate store replaces limiter.Bucket
// behind the same take/refund/wait contract.
//
// Lock: Dispatcher.mu guards everything in mu; methods ending in Locked need
// it held. Callers never hold it across a channel wait.
package dispatch
