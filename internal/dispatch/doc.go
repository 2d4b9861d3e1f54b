// Package dispatch admits waiting requests: it owns the queue and the
// permits (global rate tokens, concurrency and tunnel slots, per-destination
// rule tokens and slots, back-pressure pauses) and grants them to the most
// urgent request that can use them.
//
// # Model
//
// A caller asks for a Permit with Acquire(ctx, Request) (or Enqueue, then
// Wait). The request enters the queue (internal/queue) in the lane of its
// kind and destination: one lane per (HTTP or CONNECT, "host:port").
// Acquire returns when the request is admitted (a Permit, whose Release
// gives its slots back once the response body is done or the tunnel
// closed), rejected (a *RejectError wrapping ErrQueueFull, ErrShed,
// ErrQueueTimeout or ErrDraining) or when ctx ends.
//
// A request needs, all at once: a global rate token; a global concurrency
// slot (HTTP) or tunnel slot (CONNECT); and, when a hosts rule matches its
// destination, a token from the rule's bucket and (HTTP only) one of the
// rule's slots. Its destination must not be paused by back-pressure.
// It also needs a unit of every quota (quota.go): the global ones
// (Limits.Quotas) and its rule's (HostLimit.Quotas), checked before and
// taken together with the tokens, all or nothing.
//
// # Quotas
//
// A quota {Limit, Per} is a windowLog, one more tokenSource: a sliding
// log of the admissions of the last Per, where admissions within
// Per/windowGroups of each other share an entry that leaves the window
// Per after the latest of them. No interval of length Per ever holds more
// than Limit (an entry never leaves early); under sustained overload at
// least windowGroups/(windowGroups+1) of Limit goes per Per (a unit comes
// back at most Per/windowGroups late); memory is O(min(Limit,
// windowGroups)) per quota. A sliding log was chosen over a bucket sized
// so that capacity + refill·Per <= Limit because the bucket must keep
// capacity C >= 1 out of each window, which for small limits (5 per 1s)
// falls far below the 98% bar. A global quota short of room blocks every
// lane as the global bucket does (the timer waits for its room); a rule's
// quota sleeps the lane, as its bucket does, and a refund wakes it.
// docs/shaping.md ("Quotas") states the bounds; quota_test.go proves them.
// Each log also counts its admissions by urgency, and a request keeps
// the headroom more urgent requests' recent use calls for (headroom;
// docs/shaping.md, "Priority in quotas"; headroom_test.go).
//
// With SetLeased(true) (a shared store, quotalease.go) a quota admits from
// leased units instead: batches granted by the store (GrantQuotas), each
// valid until its expiry, spent under the lock; a batch fully spent or
// expired becomes a QuotaSettlement (its lease id, units spent, latest
// spend as an offset from when its store call was sent) reported by the
// next Demand, so that the store places every admission in the fleet's
// window no earlier than it happened (docs/shared-quota.md, "Quotas",
// proves the bound). The window log goes on recording this replica's
// admissions, so that with leases off (redis.on_error: local or open) it
// admits at limit × SetLocalShare from what this replica and, for one
// window, its share of the rest of the fleet admitted.
//
// # No head-of-line blocking
//
// Invariant: the request admitted next is the most urgent (rank, seq) head
// among lanes that are not blocked by their own gates, of a kind whose slot
// is free. A lane whose head is held by its rule or a pause leaves the
// candidates until its gate opens, so it never delays other destinations.
//
//   - ready[kind] is a heap of lanes ordered by their heads; the pick
//     compares the top of each kind whose global slot is free: O(log L).
//   - A lane held by its rule's cap waits in the rule's slotWaiters; a
//     release of that rule's slot makes them ready again.
//   - A lane held by its rule's bucket or by a pause sleeps in a heap
//     ordered by wake time; the timer brings it back.
//   - Only when every candidate is blocked by the global rate does the
//     dispatcher wait for the next global token.
//
// A destination blocked by a pause, or by a rule of its own, thus costs
// nothing per admission (BenchmarkAdmitDestinations). Lanes are indexed by
// their rule (its lanes, slotWaiters and tokenWaiters), so a grant or a
// refund for a rule touches that rule's lanes only, never every lane. A
// rule shared by many destinations (a wildcard) is not yet as cheap as one
// destination: a released rule slot makes every lane in the rule's
// slotWaiters ready, and a rule token every lane in its tokenWaiters, so
// each grant under the rule costs O(W log L) inside the lock, W being the
// destinations waiting under the rule (BenchmarkWildcardRuleRelease;
// figures in docs/performance.md). Keeping a rule's blocked lanes in a
// heap by head and waking only the most urgent per slot or token would
// make it O(log L).
//
// # Bounded state per destination
//
// Whatever the number of distinct destinations (a client sending a million
// host names), the dispatcher keeps: one lane per destination with waiting
// requests (at most limits.queue_size, since each waits in the queue), at
// most maxIdleLanes (1024) empty lanes kept for reuse, swept when there are
// more; at most maxPauses (16384) back-pressure pauses, ended ones
// forgotten and, past the cap, the one that ends soonest evicted (its
// destination may then be sent a request early, answer 429 and be paused
// again); and a pause heap of at most twice that, compacted when extended
// pauses leave stale entries. TestManyDestinationsBounded sends 1,000,000
// destinations, each paused, and checks these bounds with Dump (its heap
// figure is in docs/performance.md).
// Rules are the configured hosts entries only.
//
// # Requests priced in tokens
//
// A request carries its cost (Request.Cost; cost.go): a hosts rule's
// tokens quotas take it, its requests quotas 1, and a destination's
// provider cap in tokens caps the costs admitted (caps.go). A lane's head
// is not overtaken by a smaller request behind it, nor, across the lanes
// of one rule, by a head that goes after one waiting for the rule's
// tokens: the most urgent, then the earliest, waiting request is the next
// to fit (docs/shaping.md, "LLM APIs: pricing requests", says why). A new
// head of a lane asleep for its rule's tokens wakes it, since a smaller
// head may fit where the old one did not. A cost above a tokens quota's
// limit is refused at once (ErrCostExceedsQuota). Permit.Settle corrects
// the cost once the response told its usage: refunded in the window at
// the admission's time, or charged at the time of settling (debt). With
// leases (quotalease.go) a rule's quotas report the waiting requests'
// costs and the rule's head, which the store grants whole or not at all,
// and the corrections reach the fleet's window (docs/shared-quota.md,
// "Tokens").
//
// # No goroutine of its own
//
// The dispatcher is a state machine under one lock. Every event that can
// let a request through — an arrival, a released slot, a limit or hosts
// change, a pause ending, a token refill time, a deadline — calls
// runLocked, which expires requests past max wait (the oldest first) or
// past their caller's deadline, wakes sleeping lanes that are due, admits
// as described above, and arms one timer (from the injected clock) for the
// earliest moment anything can change by itself. Nothing polls or sleeps,
// and with a fake clock every test is deterministic.
//
// # Guarantees
//
//   - Equal urgency is FIFO; a retry re-enters with its first arrival and
//     sequence number and keeps its place (its max wait starts anew).
//   - Every Acquire ends exactly once: granted, rejected, or canceled. A
//     grant that races with the caller's cancellation is given back (slots
//     released, global and rule tokens refunded).
//   - Limit and hosts changes apply to requests already waiting without
//     removing or reordering them (a shorter max wait does expire those
//     already older than it). A hosts rule whose match is unchanged keeps
//     its tokens and in-flight count.
//   - Retry-After estimates count the waiting requests at least as urgent
//     at the global rate, and a paused destination's remaining pause.
//
// # Where the tokens come from
//
// Every bucket, the global one and each hosts rule's, is reached through
// one seam, tokenSource (source.go): take n tokens at now leaving keep,
// check without taking, and give back what a take returned. Two types
// implement it: localTokens, this process's own limiter.Bucket, and
// leasePool (lease.go), the tokens a shared store (internal/store) leased
// to this replica, each grant expiring on its own (a later grant never
// extends an earlier one). SetLeased swaps the sources, the global
// bucket's and those of the rules that have a rate; admission (runLocked)
// and refunds (finish) never ask which one they hold, and a refund goes
// back to the source its tokens came from. The store's goroutine reads
// Demand and fills the pools with Grant and GrantRules, so no network call
// ever happens under the lock. An admission costs tokensPerRequest tokens
// of the buckets (one); takes are of n tokens throughout, and a rule's
// tokens quotas take the request's cost (cost.go). While the store
// cannot be reached, SetLocalShare scales the local bucket's rate to this
// replica's share of limits.rate; the configured limits themselves are
// set only by the application (SetLimits, Reconfigure). The local buckets
// that take over start empty, with the same share of the burst
// (outage.go).
// docs/shared-quota.md states the bounds.
//
// # Fleet-wide concurrency caps
//
// With Limits.SharedConcurrency (HostLimit.SharedConcurrency for a rule)
// a cap's slots are leased from the store as well (sharedslots.go): the
// cap admits only while its slots in use stay below what the store holds
// for this replica (a slotLease: limit, expiry, the store's target),
// besides the local count. Demand reports each shared cap (giving back
// the slots nobody here needs) and GrantSlots applies the answer; a lease
// not renewed ends at its expiry (armLocked wakes for it). Releasing a
// permit never changes the lease: the slot serves this replica's next
// request, or goes back at the next Demand.
//
// # Files
//
// dispatch.go: Dispatcher, New, Acquire, Enqueue, Drain, Close.
// ticket.go: Ticket and Permit (Wait, Poll, Cancel, Release, finish).
// admission.go: the admission pass (runLocked, pick, expire, arm, the
// reserve). lanes.go: lanes and their heaps. hosts.go: hosts rules.
// pauses.go: back-pressure pauses. source.go and lease.go: the token
// sources; quota.go: per-window quotas; quotalease.go: their leased
// units; sharedslots.go: fleet-wide concurrency caps; outage.go: the
// local buckets when leases go off. config.go: Config, limits and the live setters, Reconfigure.
// stats.go and dump.go: Stats for operators, Dump for tests and debugging.
//
// Lock: Dispatcher.mu guards everything in mu; methods ending in Locked need
// it held. Callers never hold it across a channel wait.
package dispatch
