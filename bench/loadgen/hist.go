package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// subBits is log2 of the sub-buckets per power of two: 2^7 = 128, so a
// bucket is at most 1/128 of its values wide.
const subBits = 7

const (
	subCount = 1 << subBits
	// maxExp is the largest power-of-two band: values up to 2^(maxExp+8)
	// ns (about 78 hours) have their own bucket; larger ones share the
	// last.
	maxExp     = 40
	numBuckets = subCount + (maxExp+1)*subCount
)

// Histogram records durations in log-linear buckets (relative error below
// 1/128). The zero value is an empty histogram ready to use. A Histogram is
// not safe for concurrent use: give each goroutine its own and Merge them.
type Histogram struct {
	counts   []uint64 // allocated on the first Record
	n        uint64
	sum      float64 // nanoseconds
	min, max int64   // nanoseconds; valid when n > 0
}

// bucketOf returns the bucket index of v (v >= 0).
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1 // v >> e is in [128, 256)
	if e > maxExp {
		return numBuckets - 1
	}
	m := int(v>>e) - subCount
	return subCount + e*subCount + m
}

// bucketHigh returns the highest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	e := (i - subCount) / subCount
	m := int64((i-subCount)%subCount + subCount)
	if i == numBuckets-1 {
		return math.MaxInt64
	}
	return (m+1)<<e - 1
}

// Record adds one duration. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.n == 0 || o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest recorded value (0 when empty).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max is the largest recorded value, exactly (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the exact mean of the recorded values (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at quantile q (0 ≤ q ≤ 1): the highest value
// of the bucket that holds the ⌈q·n⌉-th smallest value, clamped to the
// exact minimum and maximum. Quantile(0) is the minimum, Quantile(1) the
// maximum; an empty histogram answers 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketHigh(i)
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
