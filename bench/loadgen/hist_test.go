package loadgen

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	for _, q := range []float64{0, 0.5, 0.99, 1} {
		if got := h.Quantile(q); got != 0 {
			t.Errorf("Quantile(%v) of an empty histogram = %v, want 0", q, got)
		}
	}
	if h.Count() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Errorf("empty histogram: count %d max %v mean %v", h.Count(), h.Max(), h.Mean())
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	var h Histogram
	for v := 1; v <= 100; v++ {
		h.Record(time.Duration(v))
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1}, {0.01, 1}, {0.5, 50}, {0.9, 90}, {0.99, 99}, {0.995, 100}, {1, 100},
	}
	for _, tc := range tests {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if h.Mean() != 50 { // 50.5 truncated
		t.Errorf("Mean = %v, want 50", h.Mean())
	}
}

// TestHistogramQuantilesMatchSorted checks every quantile against the exact
// order statistic of the same values: within the bucket width (1/128).
func TestHistogramQuantilesMatchSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() time.Duration{
		"uniform 0-10ms": func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) },
		"exponential mean 1ms": func() time.Duration {
			return time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
		},
		"bimodal 200us and 30ms": func() time.Duration {
			if rng.IntN(100) < 95 {
				return 200*time.Microsecond + time.Duration(rng.Int64N(int64(20*time.Microsecond)))
			}
			return 30*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
		},
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			vals := make([]time.Duration, 50000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.1, 0.5, 0.9, 0.99, 0.999} {
				exact := vals[int(float64(len(vals))*q+0.5)-1]
				got := h.Quantile(q)
				if got < exact || float64(got-exact) > float64(exact)/128+1 {
					t.Errorf("Quantile(%v) = %v, exact %v: off by more than 1/128", q, got, exact)
				}
			}
			if h.Max() != vals[len(vals)-1] || h.Quantile(1) != vals[len(vals)-1] {
				t.Errorf("Max = %v, Quantile(1) = %v, want %v", h.Max(), h.Quantile(1), vals[len(vals)-1])
			}
			if h.Quantile(0) != vals[0] {
				t.Errorf("Quantile(0) = %v, want %v", h.Quantile(0), vals[0])
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(nil)
	m.Merge(&Histogram{})
	if m.Count() != all.Count() || m.Max() != all.Max() || m.Min() != all.Min() || m.Mean() != all.Mean() {
		t.Fatalf("merged: count %d min %v max %v mean %v; want %d %v %v %v",
			m.Count(), m.Min(), m.Max(), m.Mean(), all.Count(), all.Min(), all.Max(), all.Mean())
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("Quantile(%v): merged %v, recorded together %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
}

func TestHistogramExtremes(t *testing.T) {
	var h Histogram
	h.Record(-5)
	h.Record(1000 * time.Hour) // beyond the last band: shares the last bucket
	if h.Min() != 0 {
		t.Errorf("negative value: Min = %v, want 0", h.Min())
	}
	if h.Quantile(0.99) != 1000*time.Hour {
		t.Errorf("Quantile(0.99) = %v, want the exact max", h.Quantile(0.99))
	}
}

func TestBucketsAreContiguous(t *testing.T) {
	// Every bucket starts one past the previous bucket's highest value.
	for i := 1; i < numBuckets-1; i++ {
		lo := bucketHigh(i-1) + 1
		if bucketOf(lo) != i || bucketOf(bucketHigh(i)) != i {
			t.Fatalf("bucket %d: starts at %d (bucketOf %d), ends at %d (bucketOf %d)",
				i, lo, bucketOf(lo), bucketHigh(i), bucketOf(bucketHigh(i)))
		}
	}
}
