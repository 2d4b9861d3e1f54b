package admin

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/metrics"
	"github.com/proxyd/proxyd/internal/outcome"
)

// statsBackend is the spec backend with a hosts rule and a pause in its
// Stats, so that every list in /api/v1/stats has an element.
type statsBackend struct{ *fakeBackend }

var statsNow = time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)

func (b statsBackend) Stats() dispatch.Stats {
	s := b.fakeBackend.Stats()
	p, _ := config.ParseHostPattern("api.example.com")
	s.Admitted = 17
	s.Hosts = []dispatch.HostStats{{Match: "api.example.com", Limit: dispatch.HostLimit{Match: p, Rate: 10, Burst: 10, Concurrency: 5}, InFlight: 2, Waiting: 1, Admitted: 9,
		Quotas: []dispatch.QuotaStats{
			{Quota: dispatch.Quota{Limit: 500, Per: time.Minute, Unit: config.QuotaRequests}, Used: 120},
			{Quota: dispatch.Quota{Limit: 20000, Per: time.Minute, Unit: config.QuotaTokens}, Used: 23500}, // in debt
		}}}
	s.Paused = []dispatch.Paused{{Dest: "api.example.com:443", Until: statsNow.Add(4 * time.Second)}}
	s.Caps = []dispatch.ProviderCap{
		{Dest: "api.openai.com:443", Rule: "api.openai.com", Unit: dispatch.CapRequests, Stated: 3, Remaining: 1, Limit: 60, Until: statsNow.Add(2 * time.Second)},
		{Dest: "other.example:443", Unit: dispatch.CapTokens, Stated: 900, Remaining: 900, Until: statsNow.Add(3500 * time.Millisecond)},
	}
	return s
}

func newStatsServer(t *testing.T, store bool) *Server {
	t.Helper()
	b := statsBackend{newSpecBackend()}
	m, err := metrics.New(prometheus.NewRegistry(), metrics.Deps{Stats: b.Stats})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(&outcome.Record{Priority: 3, Outcome: outcome.Forwarded, Admitted: true, QueueWait: 20 * time.Millisecond})
	m.Observe(&outcome.Record{Priority: 3, Outcome: outcome.Shed})
	for _, actual := range []int64{250, 1500} {
		m.Observe(&outcome.Record{Priority: 3, Outcome: outcome.Forwarded, Admitted: true, CostRule: "api.example.com", CostEstimate: 1000, CostActual: actual, CostReported: true})
	}
	deps := Deps{Backend: b, Counts: m.Counts, Clock: clock.NewFake(statsNow)}
	if store {
		deps.Store = func() (StoreStatus, bool) {
			return StoreStatus{Store: "redis", Up: true, Replicas: 3, Since: statsNow.Add(-time.Hour)}, true
		}
	}
	return New(Config{Token: specToken, AllowedHosts: []string{requestHost}}, deps)
}

// TestStatsSchema: GET /api/v1/stats sends exactly the fields of the
// Stats schema and its parts, with the store present or null.
func TestStatsSchema(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	for _, store := range []bool{true, false} {
		s := newStatsServer(t, store)
		obj := decodeObject(t, "GET /api/v1/stats", serve(s, "GET", "/api/v1/stats", specToken, nil), http.StatusOK)
		st := schemaNamed(t, doc, "Stats")
		sameKeys(t, "Stats", st, obj)
		sameKeys(t, "Stats.limits", schemaNamed(t, doc, "Limits"), obj["limits"].(map[string]any))
		sameKeys(t, "Stats.queue", schemaNamed(t, doc, "Queue"), obj["queue"].(map[string]any))
		sameKeys(t, "Stats.requests_total", st.Properties["requests_total"], obj["requests_total"].(map[string]any))
		qw := obj["queue_wait"].(map[string]any)
		sameKeys(t, "Stats.queue_wait", st.Properties["queue_wait"], qw)
		byPrio := qw["by_priority"].(map[string]any)
		if len(byPrio) != 8 {
			t.Errorf("queue_wait.by_priority has %d keys, want 8", len(byPrio))
		}
		sameKeys(t, "Histogram", schemaNamed(t, doc, "Histogram"), byPrio["3"].(map[string]any))
		hosts := obj["hosts"].([]any)
		if len(hosts) != 1 {
			t.Fatalf("hosts = %v, want one", hosts)
		}
		host := hosts[0].(map[string]any)
		sameKeys(t, "HostStats", schemaNamed(t, doc, "HostStats"), host)
		sameKeys(t, "CostRatio", schemaNamed(t, doc, "CostRatio"), host["cost_ratio"].(map[string]any))
		for _, q := range host["quotas"].([]any) {
			sameKeys(t, "QuotaUse", schemaNamed(t, doc, "QuotaUse"), q.(map[string]any))
		}
		caps := obj["provider_caps"].([]any)
		if len(caps) != 2 {
			t.Fatalf("provider_caps = %v, want two", caps)
		}
		for i := range caps {
			sameKeys(t, "ProviderCap", schemaNamed(t, doc, "ProviderCap"), caps[i].(map[string]any))
		}
		// Under a rule, with the stated limit; under none, without one:
		// null, not absent.
		if c := caps[0].(map[string]any); c["destination"] != "api.openai.com:443" || c["rule"] != "api.openai.com" || c["unit"] != "requests" ||
			c["remaining"] != 1.0 || c["stated"] != 3.0 || c["limit"] != 60.0 || c["reset"] != "2026-11-22T01:30:02Z" || c["reset_seconds"] != 2.0 {
			t.Errorf("provider_caps[0] = %v", c)
		}
		if c := caps[1].(map[string]any); c["destination"] != "other.example:443" || c["rule"] != nil || c["unit"] != "tokens" ||
			c["limit"] != nil || c["reset_seconds"] != 3.5 {
			t.Errorf("provider_caps[1] = %v", c)
		}
		if store {
			sameKeys(t, "StoreStatus", schemaNamed(t, doc, "StoreStatus"), obj["store"].(map[string]any))
		} else if v, ok := obj["store"]; !ok || v != nil {
			t.Errorf("store = %v (present %v), want null", v, ok)
		}
	}
	// The documented example has the schema's fields.
	_, ops := loadOpenAPI(t)
	for _, o := range ops {
		if o.path != "/api/v1/stats" {
			continue
		}
		ex, ok := o.op.Responses["200"].Content["application/json"].Example.(map[string]any)
		if !ok {
			t.Fatal("GET /api/v1/stats: no object example")
		}
		sameKeys(t, "GET /api/v1/stats example", schemaNamed(t, doc, "Stats"), ex)
	}
}

// TestStatsValues: the snapshot's parts are the other endpoints' answers
// and the counters' values.
func TestStatsValues(t *testing.T) {
	s := newStatsServer(t, false)
	var st struct {
		Limits        json.RawMessage   `json:"limits"`
		Queue         json.RawMessage   `json:"queue"`
		MaxTunnels    int               `json:"max_tunnels"`
		AdmittedTotal uint64            `json:"admitted_total"`
		RequestsTotal map[string]uint64 `json:"requests_total"`
		QueueWait     struct {
			Bounds     []float64 `json:"bounds"`
			ByPriority map[string]struct {
				Count   uint64   `json:"count"`
				Buckets []uint64 `json:"buckets"`
			} `json:"by_priority"`
		} `json:"queue_wait"`
		Hosts []hostStatsDoc `json:"hosts"`
	}
	if err := json.Unmarshal(serve(s, "GET", "/api/v1/stats", specToken, nil).Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	compact := func(b []byte) string { return strings.TrimSpace(string(b)) }
	if got, want := compact(st.Limits), compact(serve(s, "GET", "/api/v1/limits", specToken, nil).Body.Bytes()); got != want {
		t.Errorf("stats.limits = %s, GET /api/v1/limits = %s", got, want)
	}
	if got, want := compact(st.Queue), compact(serve(s, "GET", "/api/v1/queue", specToken, nil).Body.Bytes()); got != want {
		t.Errorf("stats.queue = %s, GET /api/v1/queue = %s", got, want)
	}
	if st.AdmittedTotal != 17 || st.MaxTunnels != config.Default().Limits.MaxTunnels {
		t.Errorf("admitted_total %d, max_tunnels %d; want 17 and %d", st.AdmittedTotal, st.MaxTunnels, config.Default().Limits.MaxTunnels)
	}
	if st.RequestsTotal["forwarded"] != 3 || st.RequestsTotal["shed"] != 1 || len(st.RequestsTotal) != len(outcome.All) {
		t.Errorf("requests_total = %v, want forwarded 3, shed 1, every outcome", st.RequestsTotal)
	}
	h := st.QueueWait.ByPriority["3"]
	if h.Count != 3 || len(h.Buckets) != len(st.QueueWait.Bounds) || len(st.QueueWait.Bounds) == 0 {
		t.Errorf("queue_wait[3] = %+v with %d bounds, want three observations", h, len(st.QueueWait.Bounds))
	}
	// Each quota's use, what is above its limit (the tokens quota's debt)
	// and the rule's cost ratio: two answers at 0.25 and 1.5 of their
	// price.
	want := hostStatsDoc{Match: "api.example.com", Rate: 10, Burst: 10, Concurrency: 5, InFlight: 2, Waiting: 1, AdmittedTotal: 9,
		Quotas: []quotaUseDoc{
			{Limit: 500, Per: "1m", Unit: "requests", Used: 120, Debt: 0},
			{Limit: 20000, Per: "1m", Unit: "tokens", Used: 23500, Debt: 3500},
		},
		CostRatio: &costRatioDoc{Count: 2, Sum: 1.75}}
	if len(st.Hosts) != 1 || !reflect.DeepEqual(st.Hosts[0], want) {
		t.Errorf("hosts = %+v, want [%+v]", st.Hosts, want)
	}
	// Without Counts, the counters read as zero but every key is there.
	b := newSpecBackend()
	bare := New(Config{AllowedHosts: []string{requestHost}}, Deps{Backend: b})
	var zero struct {
		RequestsTotal map[string]uint64 `json:"requests_total"`
		QueueWait     struct {
			ByPriority map[string]json.RawMessage `json:"by_priority"`
		} `json:"queue_wait"`
	}
	if err := json.Unmarshal(serve(bare, "GET", "/api/v1/stats", "", nil).Body.Bytes(), &zero); err != nil {
		t.Fatal(err)
	}
	if len(zero.RequestsTotal) != len(outcome.All) || len(zero.QueueWait.ByPriority) != 8 {
		t.Errorf("without Counts: requests_total %v, %d priorities", zero.RequestsTotal, len(zero.QueueWait.ByPriority))
	}
}

// TestDashboardServed: the page and its assets are open even with a token,
// carry the CSP, and reference nothing outside this origin.
func TestDashboardServed(t *testing.T) {
	s := newStatsServer(t, false)
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)
	for _, c := range []struct{ path, ctype string }{
		{"/dashboard", "text/html"},
		{"/dashboard/dashboard.js", "text/javascript"},
		{"/dashboard/dashboard.css", "text/css"},
	} {
		w := serve(s, "GET", c.path, "", nil)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s without a token: %d", c.path, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
			t.Errorf("%s: Content-Type %q, want %s", c.path, ct, c.ctype)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", c.path, csp)
		}
		if m := external.FindString(w.Body.String()); m != "" {
			t.Errorf("%s references something outside the page: %q", c.path, m)
		}
	}
	for _, p := range []string{"/dashboard/nope.js", "/dashboard/index.go", "/dashboard/..%2fadmin.go"} {
		if w := serve(s, "GET", p, "", nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
	if w := serve(s, "GET", "/api/v1/stats", "", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/stats without the token: %d, want 401", w.Code)
	}
}
