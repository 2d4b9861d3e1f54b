package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/proxyd/proxyd/internal/queue"
)

// Counts is a copy of the cumulative request counters and queue-wait
// histograms, for the admin API's /api/v1/stats (the dashboard). It is
// read from the same series /metrics exposes, only when asked: Observe
// does no extra work for it.
type Counts struct {
	// Outcomes[u][i] counts requests of urgency u answered with outcome
	// outcome.All[i] (proxyd_requests_total).
	Outcomes [queue.Levels][]uint64
	// Wait[u] is proxyd_queue_wait_seconds{priority=u}.
	Wait [queue.Levels]Histogram
	// CostRatio is proxyd_cost_estimate_error_ratio by rule (a hosts
	// rule's match): the answers whose usage was read and the sum of their
	// actual/estimate ratios; a rule without one is absent.
	CostRatio map[string]RatioSum
}

// RatioSum is a ratio histogram's count and sum.
type RatioSum struct {
	Count uint64
	Sum   float64
}

// Histogram is a histogram's cumulative state.
type Histogram struct {
	Count uint64
	Sum   float64 // seconds
	// Buckets[i] counts the observations <= QueueWaitBounds()[i]
	// (cumulative, as in Prometheus); Count is the +Inf bucket.
	Buckets []uint64
}

// QueueWaitBounds returns a copy of the upper bounds, in seconds, of
// proxyd_queue_wait_seconds' buckets.
func QueueWaitBounds() []float64 { return slices.Clone(queueWaitBuckets) }

// Counts reads the counters and histograms. Safe for concurrent use; each
// series is read atomically, the set of them is not (a request finishing
// meanwhile may be in one and not yet in another).
func (m *Metrics) Counts() Counts {
	var c Counts
	var pb dto.Metric
	for u := range queue.Levels {
		c.Outcomes[u] = make([]uint64, len(m.reqChild[u]))
		for i, ch := range m.reqChild[u] {
			pb.Reset()
			if err := ch.Write(&pb); err == nil {
				c.Outcomes[u][i] = uint64(pb.GetCounter().GetValue())
			}
		}
		pb.Reset()
		h, ok := m.waitChild[u].(prometheus.Metric)
		if !ok {
			continue
		}
		if err := h.Write(&pb); err != nil {
			continue
		}
		hp := pb.GetHistogram()
		c.Wait[u] = Histogram{Count: hp.GetSampleCount(), Sum: hp.GetSampleSum(), Buckets: make([]uint64, len(hp.GetBucket()))}
		for i, b := range hp.GetBucket() {
			c.Wait[u].Buckets[i] = b.GetCumulativeCount()
		}
	}
	c.CostRatio = m.costRatios()
	return c
}

// costRatios reads proxyd_cost_estimate_error_ratio's series as they are
// (reading a child by its label would create it).
func (m *Metrics) costRatios() map[string]RatioSum {
	ch := make(chan prometheus.Metric, 16)
	go func() {
		m.costRatio.Collect(ch)
		close(ch)
	}()
	out := make(map[string]RatioSum)
	var pb dto.Metric
	for mt := range ch {
		pb.Reset()
		if err := mt.Write(&pb); err != nil {
			continue
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "rule" {
				h := pb.GetHistogram()
				out[l.GetValue()] = RatioSum{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
			}
		}
	}
	return out
}
