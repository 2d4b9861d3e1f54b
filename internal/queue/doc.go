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
