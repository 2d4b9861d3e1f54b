package queue

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPushPop measures one push and one pop with n items already
// waiting, in a random urgency mix. The items are preallocated (the caller
// owns them), so allocs/op counts only what the queue itself allocates.
func BenchmarkPushPop(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		for _, aging := range []time.Duration{0, time.Second} {
			b.Run(fmt.Sprintf("waiting=%d/aging=%v", n, aging), func(b *testing.B) {
				q := New(aging, t0)
				l := q.NewLane()
				pool := make([]*Item, n+1)
				for i := range pool {
					pool[i] = &Item{Urgency: (i * 7919) % Levels, Arrival: t0.Add(time.Duration(i))}
				}
				for _, it := range pool[:n] {
					if _, err := q.Push(l, it, n+1); err != nil {
						b.Fatal(err)
					}
				}
				spare := pool[n]
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					spare.Arrival = t0.Add(time.Duration(n + i))
					spare.Enqueued = spare.Arrival
					spare.seq = 0
					if _, err := q.Push(l, spare, n+1); err != nil {
						b.Fatal(err)
					}
					spare = q.Pop(l)
				}
			})
		}
	}
}

// BenchmarkPushPopFair is BenchmarkPushPop with fairness among 100
// clients on: the same push and pop, plus the clients' tags.
func BenchmarkPushPopFair(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("waiting=%d/clients=100", n), func(b *testing.B) {
			q := New(0, t0)
			q.SetFairness(true)
			l := q.NewLane()
			clients := make([]string, 100)
			for i := range clients {
				clients[i] = fmt.Sprintf("client-%d", i)
			}
			pool := make([]*Item, n+1)
			for i := range pool {
				pool[i] = &Item{Urgency: (i * 7919) % Levels, Arrival: t0.Add(time.Duration(i)), Client: clients[(i*31)%len(clients)]}
			}
			for _, it := range pool[:n] {
				if _, err := q.Push(l, it, n+1); err != nil {
					b.Fatal(err)
				}
			}
			spare := pool[n]
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				spare.Arrival = t0.Add(time.Duration(n + i))
				spare.Enqueued = spare.Arrival
				spare.seq = 0
				spare.Client = clients[i%len(clients)]
				if _, err := q.Push(l, spare, n+1); err != nil {
					b.Fatal(err)
				}
				spare = q.Pop(l)
			}
		})
	}
}

// BenchmarkRemove measures removing an arbitrary waiting item (a client
// that left) and pushing it back, at 100k waiting.
func BenchmarkRemove(b *testing.B) {
	const n = 100000
	q := New(0, t0)
	l := q.NewLane()
	pool := make([]*Item, n)
	for i := range pool {
		pool[i] = &Item{Urgency: (i * 7919) % Levels, Arrival: t0.Add(time.Duration(i))}
		if _, err := q.Push(l, pool[i], n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		it := pool[(i*104729)%n]
		q.Remove(it)
		// It comes back as a new arrival (the newest).
		it.Arrival = t0.Add(time.Duration(n + i))
		it.Enqueued = it.Arrival
		it.seq = 0
		if _, err := q.Push(l, it, n); err != nil {
			b.Fatal(err)
		}
	}
}
