package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
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
