package dispatch

import (
	"fmt"

	"context"
	"github.com/proxyd/proxyd/internal/config"
	"testing"
	"time"
)

// BenchmarkAdmit measures Acquire+Release with unlimited rate and
// concurrency from parallel callers: the dispatcher's own overhead per
// admission. admissions/s = 1e9 / ns/op.
func BenchmarkAdmit(b *testing.B) {
	d := New(Config{Limits: Limits{Rate: 0, Burst: 1, Concurrency: 0, QueueSize: 10000, MaxWait: time.Minute, MaxTunnels: 1}}, Deps{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		u := 0
		for pb.Next() {
			p, err := d.Acquire(ctx, Request{Urgency: u & 7})
			if err != nil {
				b.Error(err)
				return
			}
			p.Release()
			u++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "admissions/s")
}

// BenchmarkAdmitDestinations compares admission (Enqueue, grant, Release)
// to one destination with admission across 1,000 destinations of which
// half are blocked — 250 paused by back-pressure and 250 at their hosts
// rule's concurrency cap — each with requests waiting. Blocked
// destinations must cost nothing per admission (no head-of-line scan): the
// two ns/op should be within 2× of each other.
func BenchmarkAdmitDestinations(b *testing.B) {
	run := func(b *testing.B, dests int) {
		var hosts []HostLimit
		for i := 0; i < dests/4; i++ {
			p, err := config.ParseHostPattern(fmt.Sprintf("capped%d.example", i))
			if err != nil {
				b.Fatal(err)
			}
			hosts = append(hosts, HostLimit{Match: p, Concurrency: 1})
		}
		d := New(Config{Limits: Limits{QueueSize: 1 << 20, MaxWait: time.Hour, MaxTunnels: 1}, Hosts: hosts}, Deps{})
		defer d.Close()
		var open []string
		if dests == 1 {
			open = []string{"only.example:443"}
		} else {
			for i := 0; i < dests/4; i++ {
				capped := fmt.Sprintf("capped%d.example:443", i)
				paused := fmt.Sprintf("paused%d.example:443", i)
				d.Pause(paused, time.Now().Add(time.Hour))
				for j := 0; j < 3; j++ { // the first takes the cap, two wait
					if _, err := d.Enqueue(Request{Urgency: j, Dest: capped}); err != nil {
						b.Fatal(err)
					}
					if _, err := d.Enqueue(Request{Urgency: j, Dest: paused}); err != nil {
						b.Fatal(err)
					}
				}
			}
			for i := 0; i < dests/2; i++ {
				open = append(open, fmt.Sprintf("open%d.example:443", i))
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tk, err := d.Enqueue(Request{Urgency: i & 7, Dest: open[i%len(open)]})
			if err != nil {
				b.Fatal(err)
			}
			p, err := tk.Poll()
			if err != nil {
				b.Fatalf("open destination not admitted: %v", err)
			}
			p.Release()
		}
	}
	b.Run("destinations=1", func(b *testing.B) { run(b, 1) })
	b.Run("destinations=1000/half-blocked", func(b *testing.B) { run(b, 1000) })
}

// BenchmarkWildcardRuleRelease measures one grant under a wildcard hosts
// rule of concurrency 1 shared by n destinations, each with requests
// waiting: Enqueue one more, then Release the permit, which admits the
// next. Today a release wakes every lane waiting on the rule, so ns/op
// grows with n (see the package doc).
func BenchmarkWildcardRuleRelease(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint("destinations=", n), func(b *testing.B) {
			p, err := config.ParseHostPattern("*.example")
			if err != nil {
				b.Fatal(err)
			}
			d := New(Config{Limits: Limits{QueueSize: 1 << 22, MaxWait: time.Hour, MaxTunnels: 1}, Hosts: []HostLimit{{Match: p, Concurrency: 1}}}, Deps{})
			defer d.Close()
			var fifo []*Ticket
			for i := 0; i < 2*n; i++ {
				tk, err := d.Enqueue(Request{Urgency: 3, Dest: fmt.Sprintf("d%d.example:443", i%n)})
				if err != nil {
					b.Fatal(err)
				}
				fifo = append(fifo, tk)
			}
			dests := make([]string, n)
			for i := range dests {
				dests[i] = fmt.Sprintf("d%d.example:443", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tk, err := d.Enqueue(Request{Urgency: 3, Dest: dests[i%n]})
				if err != nil {
					b.Fatal(err)
				}
				fifo = append(fifo, tk)
				pm, err := fifo[0].Poll()
				if err != nil {
					b.Fatalf("FIFO head under the rule not admitted: %v", err)
				}
				fifo = fifo[1:]
				pm.Release()
			}
		})
	}
}

// BenchmarkEnqueueGrant100k measures one arrival and one grant with 100,000
// requests waiting (FIFO, one destination): Enqueue one more, then free
// the capacity that admits the queue's head. local: the head waits for
// the concurrency slot, which a Release frees. leased: leases on (a
// shared store, internal/store) and the head waits for a global token,
// which a Grant of one token brings.
func BenchmarkEnqueueGrant100k(b *testing.B) {
	const waiting = 100_000
	run := func(b *testing.B, leased bool) {
		l := Limits{QueueSize: 1 << 22, MaxWait: time.Hour, MaxTunnels: 1}
		if !leased {
			l.Concurrency = 1
		}
		d := New(Config{Limits: l}, Deps{})
		defer d.Close()
		if leased {
			d.SetLeased(true)
		}
		fifo := make([]*Ticket, 0, waiting+1)
		for i := 0; i <= waiting; i++ {
			tk, err := d.Enqueue(Request{Urgency: 3, Dest: "a.example:443"})
			if err != nil {
				b.Fatal(err)
			}
			fifo = append(fifo, tk)
		}
		var held *Permit // local: the permit holding the one slot
		if !leased {
			p, err := fifo[0].Poll()
			if err != nil {
				b.Fatal(err)
			}
			held, fifo = p, fifo[1:]
		}
		expires := time.Now().Add(time.Hour)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tk, err := d.Enqueue(Request{Urgency: 3, Dest: "a.example:443"})
			if err != nil {
				b.Fatal(err)
			}
			fifo = append(fifo, tk)
			if leased {
				d.Grant(1, expires)
			} else {
				held.Release()
			}
			p, err := fifo[0].Poll()
			if err != nil {
				b.Fatalf("queue head not admitted: %v", err)
			}
			fifo = fifo[1:]
			if leased {
				p.Release()
			} else {
				held = p
			}
		}
	}
	b.Run("local", func(b *testing.B) { run(b, false) })
	b.Run("leased", func(b *testing.B) { run(b, true) })
}
