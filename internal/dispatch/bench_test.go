package dispatch

import (
	"context"
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
