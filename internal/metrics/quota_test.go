package metrics

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

// Each quota's use and limit are gauges read from the dispatcher at
// scrape time, labelled by rule (the hosts match, or global), unit and
// window as configured.
func TestQuotaGauges(t *testing.T) {
	cfg := config.Default()
	cfg.Limits.Quotas = []config.Quota{{Limit: 10000, Per: 24 * time.Hour}}
	cfg.Hosts = []config.HostRule{{Match: "api.github.com", Quotas: []config.Quota{{Limit: 5000, Per: time.Hour}, {Limit: 100, Per: time.Minute}}}}
	dcfg, err := dispatch.ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := dispatch.New(dcfg, dispatch.Deps{})
	defer d.Close()
	for _, dest := range []string{"api.github.com:443", "api.github.com:443", "other.example:443"} {
		tk, err := d.Enqueue(dispatch.Request{Dest: dest})
		if err != nil {
			t.Fatal(err)
		}
		p, err := tk.Poll()
		if err != nil {
			t.Fatal(err)
		}
		p.Release()
	}
	reg := prometheus.NewRegistry()
	if _, err := New(reg, Deps{Stats: d.Stats}); err != nil {
		t.Fatal(err)
	}
	expected := `
# HELP proxyd_quota_limit A quota's live limit per window (rule: the hosts match, or global).
# TYPE proxyd_quota_limit gauge
proxyd_quota_limit{per="1h",rule="api.github.com",unit="requests"} 5000
proxyd_quota_limit{per="1m",rule="api.github.com",unit="requests"} 100
proxyd_quota_limit{per="24h",rule="global",unit="requests"} 10000
# HELP proxyd_quota_used Units a quota counts in its window ending now (rule: the hosts match, or global).
# TYPE proxyd_quota_used gauge
proxyd_quota_used{per="1h",rule="api.github.com",unit="requests"} 2
proxyd_quota_used{per="1m",rule="api.github.com",unit="requests"} 2
proxyd_quota_used{per="24h",rule="global",unit="requests"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "proxyd_quota_used", "proxyd_quota_limit"); err != nil {
		t.Fatal(err)
	}
}

// A tokens quota's use is a proxyd_quota_used series with unit tokens,
// settled usage included; priced requests whose answer reported usage
// observe actual/estimate in proxyd_cost_estimate_error_ratio by rule.
func TestTokensQuotaAndCostRatio(t *testing.T) {
	cfg := config.Default()
	cfg.Hosts = []config.HostRule{{Match: "api.openai.com", Quotas: []config.Quota{{Limit: 500, Per: time.Minute}, {Limit: 200000, Per: time.Minute, Unit: config.QuotaTokens}}}}
	dcfg, err := dispatch.ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := dispatch.New(dcfg, dispatch.Deps{})
	defer d.Close()
	tk, err := d.Enqueue(dispatch.Request{Dest: "api.openai.com:443", Cost: 3000})
	if err != nil {
		t.Fatal(err)
	}
	p, err := tk.Poll()
	if err != nil {
		t.Fatal(err)
	}
	p.Settle(1200)
	p.Release()
	reg := prometheus.NewRegistry()
	m, err := New(reg, Deps{Stats: d.Stats})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []outcome.Record{
		{Priority: 3, Outcome: outcome.Forwarded, CostRule: "api.openai.com", CostEstimate: 3000, CostActual: 1200, CostReported: true},
		{Priority: 3, Outcome: outcome.Forwarded, CostRule: "api.openai.com", CostEstimate: 1000, CostActual: 1500, CostReported: true},
		{Priority: 3, Outcome: outcome.Forwarded, CostRule: "api.openai.com", CostEstimate: 1000}, // no usage: not observed
		{Priority: 3, Outcome: outcome.Forwarded}, // not priced
	} {
		m.Observe(&rec)
	}
	expected := `
# HELP proxyd_quota_used Units a quota counts in its window ending now (rule: the hosts match, or global).
# TYPE proxyd_quota_used gauge
proxyd_quota_used{per="1m",rule="api.openai.com",unit="requests"} 1
proxyd_quota_used{per="1m",rule="api.openai.com",unit="tokens"} 1200
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "proxyd_quota_used"); err != nil {
		t.Fatal(err)
	}
	h := m.costRatio.WithLabelValues("api.openai.com").(prometheus.Histogram)
	var out dto.Metric
	if err := h.Write(&out); err != nil {
		t.Fatal(err)
	}
	if hg := out.GetHistogram(); hg.GetSampleCount() != 2 || hg.GetSampleSum() != 0.4+1.5 {
		t.Fatalf("ratio histogram: %d samples summing %v, want 2 summing 1.9", hg.GetSampleCount(), hg.GetSampleSum())
	}
	var les []float64
	for _, b := range out.GetHistogram().GetBucket() {
		les = append(les, b.GetUpperBound())
	}
	// As docs/metrics.md lists them.
	if want := []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1, 1.1, 1.5, 2, 5}; !slices.Equal(les, want) {
		t.Errorf("ratio buckets %v, want %v", les, want)
	}
	if problems, err := testutil.CollectAndLint(m.costRatio); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}
