package metrics

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestObserveAndState(t *testing.T) {
	d := dispatch.New(dispatch.Config{Limits: dispatch.Limits{Rate: 5, Burst: 1, Concurrency: 1, QueueSize: 10, MaxWait: time.Minute, MaxTunnels: 3}}, dispatch.Deps{})
	defer d.Close()
	reg := prometheus.NewRegistry()
	m, err := New(reg, Deps{Stats: d.Stats})
	if err != nil {
		t.Fatal(err)
	}
	recs := []outcome.Record{
		{Priority: 1, Outcome: outcome.Forwarded, Admitted: true, QueueWait: 20 * time.Millisecond, Upstream: 30 * time.Millisecond},
		{Priority: 1, Outcome: outcome.Forwarded, Admitted: true, Cut: true, ClientWriteTimeout: true, Retries: 2, RetryDenied: true, Pauses: 2},
		{Priority: 6, Outcome: outcome.Shed},
		{Priority: 3, Outcome: outcome.Denied},
		{Priority: -1, Outcome: outcome.Denied}, // never resolved: not counted
		{Priority: 2, Outcome: "bogus"},         // unknown outcome: not counted
	}
	for i := range recs {
		m.Observe(&recs[i])
	}
	m.Reloaded(true)
	m.Reloaded(false)
	m.Reloaded(false)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"1", "forwarded"}, 2},
		{[]string{"6", "shed"}, 1},
		{[]string{"3", "denied"}, 1},
		{[]string{"2", "forwarded"}, 0},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.labels...)); got != c.want {
			t.Fatalf("requests%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("failure")); got != 2 {
		t.Fatalf("reload failures %v", got)
	}
	for name, c := range map[string]prometheus.Counter{"cuts": m.cuts, "denied": m.denied, "write timeouts": m.writeTimeouts} {
		if got := testutil.ToFloat64(c); got != 1 {
			t.Fatalf("%s = %v, want 1", name, got)
		}
	}
	if testutil.ToFloat64(m.retries) != 2 || testutil.ToFloat64(m.pauses) != 2 {
		t.Fatalf("retries %v pauses %v, want 2 each", testutil.ToFloat64(m.retries), testutil.ToFloat64(m.pauses))
	}

	// Queue state is read at scrape time.
	p, err := d.Enqueue(dispatch.Request{Urgency: 0})
	if err != nil {
		t.Fatal(err)
	}
	var waiting []*dispatch.Ticket
	for _, u := range []int{4, 4, 7} {
		tk, err := d.Enqueue(dispatch.Request{Urgency: u})
		if err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, tk)
	}
	expected := `
# HELP proxyd_queue_depth Requests waiting, by urgency.
# TYPE proxyd_queue_depth gauge
proxyd_queue_depth{priority="0"} 0
proxyd_queue_depth{priority="1"} 0
proxyd_queue_depth{priority="2"} 0
proxyd_queue_depth{priority="3"} 0
proxyd_queue_depth{priority="4"} 2
proxyd_queue_depth{priority="5"} 0
proxyd_queue_depth{priority="6"} 0
proxyd_queue_depth{priority="7"} 1
# HELP proxyd_inflight_requests HTTP requests in flight upstream (holding a concurrency slot).
# TYPE proxyd_inflight_requests gauge
proxyd_inflight_requests 1
# HELP proxyd_limit_rate Live limits.rate: requests per second admitted overall (0 = unlimited).
# TYPE proxyd_limit_rate gauge
proxyd_limit_rate 5
# HELP proxyd_limit_concurrency Live limits.concurrency (0 = unlimited).
# TYPE proxyd_limit_concurrency gauge
proxyd_limit_concurrency 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"proxyd_queue_depth", "proxyd_inflight_requests", "proxyd_limit_rate", "proxyd_limit_concurrency"); err != nil {
		t.Fatal(err)
	}
	for _, tk := range waiting {
		tk.Cancel()
	}
	p.Cancel()
	if n := testutil.CollectAndCount(m.wait); n != 8 {
		t.Fatalf("%d wait histograms, want one per priority", n)
	}
}

func TestLint(t *testing.T) {
	d := dispatch.New(dispatch.Config{Limits: dispatch.Limits{QueueSize: 1, MaxWait: time.Second, MaxTunnels: 1}}, dispatch.Deps{})
	defer d.Close()
	reg := prometheus.NewRegistry()
	m, err := New(reg, Deps{Stats: d.Stats})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(&outcome.Record{Priority: 0, Outcome: outcome.Forwarded, Admitted: true, Upstream: time.Millisecond})
	for _, c := range []prometheus.Collector{m.requests, m.wait, m.upstream, m.reloads} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil || len(problems) > 0 {
			t.Fatalf("lint: %v %v", err, problems)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	// Registering twice on one registry is an error, not a panic.
	if _, err := New(reg, Deps{Stats: d.Stats}); err == nil {
		t.Fatal("second registration succeeded")
	}
}

// fixedStats is a dispatcher snapshot in which every value read by a gauge
// is distinct, so that a gauge reading the wrong field shows.
func fixedStats() dispatch.Stats {
	s := dispatch.Stats{
		Depth:      36,
		ByPriority: [8]int{1, 2, 3, 4, 5, 6, 7, 8},
		InFlight:   11,
		Tunnels:    13,
		OldestWait: 1500 * time.Millisecond,
		Limits:     dispatch.Limits{Rate: 17.5, Burst: 19, Concurrency: 23, QueueSize: 29, MaxWait: 31 * time.Second, MaxTunnels: 37},
		Paused: []dispatch.Paused{
			{Dest: "a.example:443", Until: time.Unix(100, 0)},
			{Dest: "b.example:443", Until: time.Unix(200, 0)},
		},
	}
	return s
}

// TestStateGaugeValues: every gauge reports its own field of the snapshot.
func TestStateGaugeValues(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, Deps{Stats: fixedStats}); err != nil {
		t.Fatal(err)
	}
	expected := `
# HELP proxyd_queue_depth Requests waiting, by urgency.
# TYPE proxyd_queue_depth gauge
proxyd_queue_depth{priority="0"} 1
proxyd_queue_depth{priority="1"} 2
proxyd_queue_depth{priority="2"} 3
proxyd_queue_depth{priority="3"} 4
proxyd_queue_depth{priority="4"} 5
proxyd_queue_depth{priority="5"} 6
proxyd_queue_depth{priority="6"} 7
proxyd_queue_depth{priority="7"} 8
# HELP proxyd_inflight_requests HTTP requests in flight upstream (holding a concurrency slot).
# TYPE proxyd_inflight_requests gauge
proxyd_inflight_requests 11
# HELP proxyd_tunnels_open Open CONNECT tunnels.
# TYPE proxyd_tunnels_open gauge
proxyd_tunnels_open 13
# HELP proxyd_queue_oldest_wait_seconds How long the oldest waiting request has waited.
# TYPE proxyd_queue_oldest_wait_seconds gauge
proxyd_queue_oldest_wait_seconds 1.5
# HELP proxyd_limit_rate Live limits.rate: requests per second admitted overall (0 = unlimited).
# TYPE proxyd_limit_rate gauge
proxyd_limit_rate 17.5
# HELP proxyd_limit_burst Live limits.burst.
# TYPE proxyd_limit_burst gauge
proxyd_limit_burst 19
# HELP proxyd_limit_concurrency Live limits.concurrency (0 = unlimited).
# TYPE proxyd_limit_concurrency gauge
proxyd_limit_concurrency 23
# HELP proxyd_limit_queue_size Live limits.queue_size.
# TYPE proxyd_limit_queue_size gauge
proxyd_limit_queue_size 29
# HELP proxyd_limit_max_wait_seconds Live limits.max_wait.
# TYPE proxyd_limit_max_wait_seconds gauge
proxyd_limit_max_wait_seconds 31
# HELP proxyd_limit_max_tunnels Live limits.max_tunnels.
# TYPE proxyd_limit_max_tunnels gauge
proxyd_limit_max_tunnels 37
# HELP proxyd_paused_destinations Destinations currently paused by upstream back-pressure.
# TYPE proxyd_paused_destinations gauge
proxyd_paused_destinations 2
`
	names := []string{
		"proxyd_queue_depth", "proxyd_inflight_requests", "proxyd_tunnels_open", "proxyd_queue_oldest_wait_seconds",
		"proxyd_limit_rate", "proxyd_limit_burst", "proxyd_limit_concurrency", "proxyd_limit_queue_size",
		"proxyd_limit_max_wait_seconds", "proxyd_limit_max_tunnels", "proxyd_paused_destinations",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), names...); err != nil {
		t.Fatal(err)
	}
	// Every gauge the collector describes is checked above.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetType() == dto.MetricType_GAUGE && !slices.Contains(names, mf.GetName()) {
			t.Errorf("gauge %s has no value check", mf.GetName())
		}
	}
}

// histogram returns the sample count and sum of the histogram series of
// family name whose labels are labels (name=value pairs), and its bucket
// upper bounds.
func histogram(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (uint64, float64, []float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metric
				}
			}
			h := m.GetHistogram()
			var bounds []float64
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			return h.GetSampleCount(), h.GetSampleSum(), bounds
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0, 0, nil
}

// TestHistogramObservations: known waits and upstream times land in
// _count and _sum; a request is observed once (its retries' waits summed
// by the caller), requests never admitted are not observed.
func TestHistogramObservations(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Deps{Stats: fixedStats})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []outcome.Record{
		{Priority: 1, Outcome: outcome.Forwarded, Admitted: true, QueueWait: 20 * time.Millisecond, Upstream: 30 * time.Millisecond},
		{Priority: 1, Outcome: outcome.Forwarded, Admitted: true, QueueWait: 250 * time.Millisecond, Upstream: 2 * time.Second, Retries: 2},
		{Priority: 5, Outcome: outcome.Error, Admitted: true, QueueWait: 4 * time.Second, Upstream: 500 * time.Millisecond},
		{Priority: 5, Outcome: outcome.QueueTimeout, QueueWait: 9 * time.Second}, // never admitted
		{Priority: 2, Outcome: outcome.Canceled, Admitted: true},                 // admitted at once, never sent
	} {
		m.Observe(&rec)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	for _, c := range []struct {
		priority string
		count    uint64
		sum      float64
	}{
		{"0", 0, 0},
		{"1", 2, 0.27},
		{"2", 1, 0},
		{"5", 1, 4},
	} {
		n, sum, _ := histogram(t, reg, "proxyd_queue_wait_seconds", "priority", c.priority)
		if n != c.count || !near(sum, c.sum) {
			t.Errorf("proxyd_queue_wait_seconds{priority=%q}: count %d sum %v, want %d and %v", c.priority, n, sum, c.count, c.sum)
		}
	}
	if n, sum, _ := histogram(t, reg, "proxyd_upstream_duration_seconds"); n != 3 || !near(sum, 2.53) {
		t.Errorf("proxyd_upstream_duration_seconds: count %d sum %v, want 3 and 2.53", n, sum)
	}
}

// TestBucketBounds: the le labels are the round numbers docs/metrics.md
// lists (internal/admin checks the document against the registry).
func TestBucketBounds(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, Deps{Stats: fixedStats}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]float64{
		"proxyd_queue_wait_seconds":        {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		"proxyd_upstream_duration_seconds": {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60},
	} {
		var labels []string
		if name == "proxyd_queue_wait_seconds" {
			labels = []string{"priority", "0"}
		}
		_, _, got := histogram(t, reg, name, labels...)
		if !slices.Equal(got, want) {
			t.Errorf("%s buckets %v, want %v", name, got, want)
		}
		for _, b := range got {
			if s := strconv.FormatFloat(b, 'g', -1, 64); len(s) > 6 {
				t.Errorf("%s: bucket le=%q is not a round number", name, s)
			}
		}
	}
}

// TestUnsolicitedResponses: the counter reports what Deps.Unsolicited
// says at scrape time.
func TestUnsolicitedResponses(t *testing.T) {
	reg := prometheus.NewRegistry()
	var n atomic.Uint64
	if _, err := New(reg, Deps{Stats: fixedStats, Unsolicited: n.Load}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{0, 3} {
		n.Store(want)
		expected := fmt.Sprintf(`
# HELP proxyd_upstream_unsolicited_responses_total Idle upstream connections closed because the upstream sent bytes on them that no request asked for (none reached a client).
# TYPE proxyd_upstream_unsolicited_responses_total counter
proxyd_upstream_unsolicited_responses_total %d
`, want)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "proxyd_upstream_unsolicited_responses_total"); err != nil {
			t.Error(err)
		}
	}
}
