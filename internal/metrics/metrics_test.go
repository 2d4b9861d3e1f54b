package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/proxy"
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
	recs := []proxy.Record{
		{Priority: 1, Outcome: proxy.OutcomeForwarded, Admitted: true, QueueWait: 20 * time.Millisecond, Upstream: 30 * time.Millisecond},
		{Priority: 1, Outcome: proxy.OutcomeForwarded, Admitted: true, Cut: true, Retries: 2, RetryDenied: true, Pauses: 2},
		{Priority: 6, Outcome: proxy.OutcomeShed},
		{Priority: 3, Outcome: proxy.OutcomeDenied},
		{Priority: -1, Outcome: proxy.OutcomeDenied}, // never resolved: not counted
		{Priority: 2, Outcome: "bogus"},              // unknown outcome: not counted
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
	for name, c := range map[string]prometheus.Counter{"cuts": m.cuts, "denied": m.denied} {
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
	m.Observe(&proxy.Record{Priority: 0, Outcome: proxy.OutcomeForwarded, Admitted: true, Upstream: time.Millisecond})
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
