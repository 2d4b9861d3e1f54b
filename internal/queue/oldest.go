package queue

// OldestByLevel returns, for each urgency level, the waiting item of that
// level that entered the queue first, or nil when none of that level
// waits. It walks the queue in order of entry until it has seen every
// level that has waiting items: O(n) at worst (one urgent item behind
// many older ones). It is meant for snapshots (the admin API's stats,
// about once a second), not for the hot path.
func (q *Queue) OldestByLevel() [Levels]*Item {
	var out [Levels]*Item
	want := 0
	for _, n := range q.byLevel {
		if n > 0 {
			want++
		}
	}
	for it := q.entered.head; it != nil && want > 0; it = it.byTime.next {
		if u := clamp(it.Urgency); out[u] == nil {
			out[u] = it
			want--
		}
	}
	return out
}
