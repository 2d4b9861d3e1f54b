// Package queue is proxyd's waiting room: a bounded priority queue of
// waiting requests, split into lanes, that knows nothing of HTTP.
//
// # Order
//
// Every Item has an urgency (0 most urgent … 7 least, RFC 9218) and an
// arrival sequence number. Within a lane, items leave in order of
// (rank, seq), where with strict priority (aging 0) rank is the urgency, so
// the most urgent item leaves first and equal urgency is FIFO.
//
// With aging A > 0 a waiting item's effective urgency improves by one level
// per A waited. Rank is then arrival + urgency×A (in nanoseconds): an item
// of urgency 5 that has waited 2A ranks exactly with a fresh item of
// urgency 3, and the earlier arrival goes first. This rank does not change
// while an item waits, so the heaps stay valid without periodic re-sorting;
// only a change of A itself re-ranks (O(n)).
//
// # Fairness among clients
//
// An Item may name its Client. The queue counts each client's waiting
// items (ClientLen: the dispatcher's per-client queue_size) and forgets a
// client as soon as none of its items waits, so that state is bounded by
// the items waiting.
//
// With SetFairness(true) (fairness: client; docs/configuration.md,
// "Clients: `auth`, `clients`, `fairness`") the tiebreak among items of
// equal rank is a virtual tag instead of the arrival sequence:
// start-time fair queuing per urgency level. An item of client c at level
// u gets tag = max(c's previous tag at u, V(u)) + 1, V(u) being the tag of
// the last item popped at level u; ties between clients' equal tags go by
// sequence. The invariant: among the items waiting at one level, each
// backlogged client's tags are consecutive from V(u)+1 on, so the k-th
// item of every backlogged client leaves before the (k+1)-th of any: two
// clients that both keep a backlog alternate, whatever their arrival
// rates, and a client that was idle restarts at V(u) with no saved-up
// credit, taking nothing from the others. Tags are computed in O(1) at
// Push; the heaps stay O(log n) (at 100,000 waiting, 100 clients, one
// push and one pop: BenchmarkPushPopFair 0.41–0.44 µs, BenchmarkPushPop
// without fairness 0.35–0.36 µs, same run on 2 cores). Urgency always
// comes first: fairness only orders equals. With aging (rank from arrival
// time) exact rank ties are rare and fairness then only breaks ties.
//
// # Structure
//
// A Queue holds any number of Lanes (the dispatcher uses one lane per kind
// of permit a request needs, so that a request held back by one kind of
// permit never blocks requests that need another). Each item is at once in:
//
//   - its lane's min-heap by (rank, seq): Peek/Pop in O(1)/O(log n);
//   - the queue-wide eviction index: the victim (the least urgent, newest
//     among equals) in O(1). With strict priority it is one list per
//     urgency level in sequence order (O(1) insert and remove); with aging,
//     a max-heap by (rank, seq) (O(log n));
//   - the queue-wide list in the order items entered the queue: the
//     oldest waiting item in O(1) (max wait expires oldest first; a retry
//     keeps its first arrival for ordering but its wait starts anew);
//   - when it has a deadline of its own (a caller's budget), the deadline
//     min-heap.
//
// Remove(item) takes an item out of all of them in O(log n), which is how a
// client that disconnects leaves at once.
//
// A full queue admits a newcomer only in place of the victim, and only when
// the newcomer's rank is strictly lower (more urgent): an equal never
// evicts, even a retry whose old sequence number sorts before the victim.
//
// A Queue is not safe for concurrent use: its owner (the dispatcher) guards
// it with its own lock. Items must not be shared between queues.
package queue
