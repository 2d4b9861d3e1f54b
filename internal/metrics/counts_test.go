package metrics

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyd/proxyd/internal/outcome"
)

// Counts reads back exactly what Observe counted, in outcome.All order,
// with cumulative buckets on QueueWaitBounds.
func TestCounts(t *testing.T) {
	m, err := New(prometheus.NewRegistry(), Deps{Stats: fixedStats})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []outcome.Record{
		{Priority: 1, Outcome: outcome.Forwarded, Admitted: true, QueueWait: 20 * time.Millisecond},
		{Priority: 1, Outcome: outcome.Forwarded, Admitted: true, QueueWait: 3 * time.Second},
		{Priority: 1, Outcome: outcome.Shed},
		{Priority: 7, Outcome: outcome.Error, Admitted: true},
	} {
		m.Observe(&rec)
	}
	c := m.Counts()
	at := func(o string) int { return slices.Index(outcome.All, o) }
	if got := c.Outcomes[1][at(outcome.Forwarded)]; got != 2 {
		t.Errorf("priority 1 forwarded = %d, want 2", got)
	}
	if got := c.Outcomes[1][at(outcome.Shed)]; got != 1 {
		t.Errorf("priority 1 shed = %d, want 1", got)
	}
	if got := c.Outcomes[7][at(outcome.Error)]; got != 1 {
		t.Errorf("priority 7 error = %d, want 1", got)
	}
	if got := c.Outcomes[0][at(outcome.Forwarded)]; got != 0 {
		t.Errorf("priority 0 forwarded = %d, want 0", got)
	}
	bounds := QueueWaitBounds()
	w := c.Wait[1]
	if w.Count != 2 || w.Sum != 3.02 || len(w.Buckets) != len(bounds) {
		t.Fatalf("wait[1] = %+v, want count 2, sum 3.02, %d buckets", w, len(bounds))
	}
	for i, le := range bounds {
		want := uint64(0)
		if le >= 0.02 {
			want++
		}
		if le >= 3 {
			want++
		}
		if w.Buckets[i] != want {
			t.Errorf("wait[1] bucket le=%v: %d, want %d", le, w.Buckets[i], want)
		}
	}
	if c.Wait[7].Count != 1 || c.Wait[7].Buckets[0] != 1 {
		t.Errorf("wait[7] = %+v, want one observation of 0 s", c.Wait[7])
	}
}

// Counts carries proxyd_cost_estimate_error_ratio's count and sum by
// rule, and reading them creates no series for a rule without one.
func TestCountsCostRatio(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Deps{Stats: fixedStats})
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Counts(); len(c.CostRatio) != 0 {
		t.Errorf("cost ratios before any answer: %v", c.CostRatio)
	}
	for _, rec := range []outcome.Record{
		{Outcome: outcome.Forwarded, CostRule: "api.openai.com", CostEstimate: 1000, CostActual: 250, CostReported: true},
		{Outcome: outcome.Forwarded, CostRule: "api.openai.com", CostEstimate: 1000, CostActual: 1500, CostReported: true},
		{Outcome: outcome.Forwarded, CostRule: "api.anthropic.com", CostEstimate: 400},
	} {
		m.Observe(&rec)
	}
	c := m.Counts()
	if got, want := c.CostRatio, map[string]RatioSum{"api.openai.com": {Count: 2, Sum: 1.75}}; len(got) != 1 || got["api.openai.com"] != want["api.openai.com"] {
		t.Errorf("cost ratios = %v, want %v", got, want)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "proxyd_cost_estimate_error_ratio" && len(mf.GetMetric()) != 1 {
			t.Errorf("%d series of %s after Counts, want the one observed", len(mf.GetMetric()), mf.GetName())
		}
	}
}
