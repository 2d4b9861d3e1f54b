// Package metrics turns proxyd's state and request records into Prometheus
// series (docs/metrics.md, "Series"). Counters and histograms are fed one Record per request
// (Observe); gauges are read from the dispatcher at scrape time by a
// collector, so queue depth by priority is exact at any scrape.
//
// Labels are bounded: priority is "0"…"7", outcome one of outcome.All,
// result "success"/"failure". No raw host or path is ever a label.
//
// Nothing registers itself: New registers on the Registerer it is given.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/queue"
)

// Deps are what the metrics read.
type Deps struct {
	// Stats returns the dispatcher's snapshot at scrape time (required).
	Stats func() dispatch.Stats
	// Certificates returns the leaf certificates issued and served from the
	// cache by TLS interception so far (nil: none, the series stay at 0).
	Certificates func() (issued, hits uint64)
	// Unsolicited returns how many idle upstream connections were closed
	// because the upstream sent bytes on them that no request asked for
	// (upstream.Forwarder.UnsolicitedResponses; nil: the series stays 0).
	Unsolicited func() uint64
}

// Metrics holds proxyd's own series. Safe for concurrent use.
type Metrics struct {
	requests *prometheus.CounterVec
	wait     *prometheus.HistogramVec
	upstream prometheus.Histogram
	reloads  *prometheus.CounterVec
	retries  prometheus.Counter
	denied   prometheus.Counter
	pauses   prometheus.Counter
	cuts     prometheus.Counter
	egress   *prometheus.CounterVec
	// writeTimeouts counts responses cut because the client read nothing
	// for client_write_timeout.
	writeTimeouts prometheus.Counter
	// handshakes counts failed client handshakes in intercepted tunnels.
	handshakes prometheus.Counter
	// authFailures counts 407s by reason; clients counts requests by
	// client label (configured names or "other") and outcome.
	authFailures *prometheus.CounterVec
	clients      *prometheus.CounterVec
	// costRatio is actual/estimate of priced requests whose answer
	// reported its usage, by hosts rule (docs/metrics.md).
	costRatio *prometheus.HistogramVec
	// children are resolved once: Observe does no label hashing.
	reqChild  [queue.Levels][]prometheus.Counter
	waitChild [queue.Levels]prometheus.Observer
	outcomes  map[string]int
}

// Histogram bucket upper bounds, in seconds, as docs/metrics.md lists
// them. They are written out (not computed, as ExponentialBucketsRange
// would) so that the le labels are the round numbers the documentation and
// dashboards show, not 0.002082300563710834.
var (
	queueWaitBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	upstreamBuckets  = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60}
	// costRatioBuckets: actual usage / estimate. Estimates usually run
	// high (max_tokens is a ceiling), so most of the range is below 1.
	costRatioBuckets = []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1, 1.1, 1.5, 2, 5}
)

var priorities = func() []string {
	p := make([]string, queue.Levels)
	for i := range p {
		p[i] = strconv.Itoa(i)
	}
	return p
}()

// New creates the series and registers them (and the state collector) on
// reg.
func New(reg prometheus.Registerer, deps Deps) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyd_requests_total",
			Help: "Requests answered, by urgency and outcome (forwarded, rejected, shed, queue_timeout, canceled, denied, error, draining).",
		}, []string{"priority", "outcome"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proxyd_queue_wait_seconds",
			Help:    "Time admitted requests waited in the queue (summed over a request's retries), by urgency.",
			Buckets: queueWaitBuckets,
		}, []string{"priority"}),
		upstream: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proxyd_upstream_duration_seconds",
			Help:    "Time from sending a request upstream until its response headers arrived (tunnels: the dial).",
			Buckets: upstreamBuckets,
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyd_config_reloads_total",
			Help: "Configuration reloads (SIGHUP or file change), by result.",
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyd_upstream_retries_total",
			Help: "Requests sent upstream again (upstream.retry).",
		}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyd_retry_budget_exhausted_total",
			Help: "Retries refused because the retry budget was spent.",
		}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyd_backpressure_pauses_total",
			Help: "Upstream responses that paused their destination (Retry-After, rate-limit headers).",
		}),
		cuts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyd_responses_cut_total",
			Help: "Responses whose body the upstream broke off mid-way (the client's stream was cut).",
		}),
		writeTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyd_client_write_timeouts_total",
			Help: "Responses cut because the client read nothing of them for client_write_timeout.",
		}),
		egress: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyd_egress_denied_total",
			Help: "Requests refused by the egress policy, by reason (loopback, private, link_local, special, self, deny, port).",
		}, []string{"reason"}),
		handshakes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyd_tls_handshake_failures_total",
			Help: "Intercepted tunnels whose client failed the TLS handshake (it does not trust proxyd's CA, or pins certificates).",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyd_auth_failures_total",
			Help: "Requests refused 407 by proxy authentication, by reason (missing: no credentials; invalid: wrong scheme, user or password).",
		}, []string{"reason"}),
		clients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyd_client_requests_total",
			Help: "Requests answered, by client (a name from clients, or other; never an address) and outcome.",
		}, []string{"client", "outcome"}),
		costRatio: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proxyd_cost_estimate_error_ratio",
			Help:    "Tokens a priced request's answer reported using over the tokens it was priced at before admission, by hosts rule (requests whose answer reported no usage are not observed).",
			Buckets: costRatioBuckets,
		}, []string{"rule"}),
		outcomes: make(map[string]int, len(outcome.All)),
	}
	for _, r := range []string{outcome.AuthMissing, outcome.AuthInvalid} {
		m.authFailures.WithLabelValues(r)
	}
	for _, o := range outcome.All {
		m.clients.WithLabelValues(outcome.ClientOther, o)
	}
	certs := deps.Certificates
	if certs == nil {
		certs = func() (uint64, uint64) { return 0, 0 }
	}
	issued := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "proxyd_tls_certificates_issued_total",
		Help: "Leaf certificates issued for intercepted hosts (cache misses).",
	}, func() float64 { i, _ := certs(); return float64(i) })
	hits := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "proxyd_tls_certificate_cache_hits_total",
		Help: "Intercepted tunnels served a cached leaf certificate.",
	}, func() float64 { _, h := certs(); return float64(h) })
	stray := deps.Unsolicited
	if stray == nil {
		stray = func() uint64 { return 0 }
	}
	unsolicited := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "proxyd_upstream_unsolicited_responses_total",
		Help: "Idle upstream connections closed because the upstream sent bytes on them that no request asked for (none reached a client).",
	}, func() float64 { return float64(stray()) })
	for _, r := range egress.Reasons {
		m.egress.WithLabelValues(r)
	}
	for i, o := range outcome.All {
		m.outcomes[o] = i
	}
	for u, p := range priorities {
		m.waitChild[u] = m.wait.WithLabelValues(p)
		for _, o := range outcome.All {
			m.reqChild[u] = append(m.reqChild[u], m.requests.WithLabelValues(p, o))
		}
	}
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.requests, m.wait, m.upstream, m.reloads, m.retries, m.denied, m.pauses, m.cuts, m.writeTimeouts, m.egress, m.handshakes, m.authFailures, m.clients, m.costRatio, issued, hits, unsolicited, newStateCollector(deps.Stats)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe counts one finished request.
func (m *Metrics) Observe(rec *outcome.Record) {
	u := rec.Priority
	if u < 0 || u >= queue.Levels {
		return // never resolved: the caller fills in the default first
	}
	if i, ok := m.outcomes[rec.Outcome]; ok {
		m.reqChild[u][i].Inc()
	}
	if rec.Admitted {
		m.waitChild[u].Observe(rec.QueueWait.Seconds())
	}
	if rec.Upstream > 0 {
		m.upstream.Observe(rec.Upstream.Seconds())
	}
	if rec.Retries > 0 {
		m.retries.Add(float64(rec.Retries))
	}
	if rec.RetryDenied {
		m.denied.Inc()
	}
	if rec.Cut {
		m.cuts.Inc()
	}
	if rec.ClientWriteTimeout {
		m.writeTimeouts.Inc()
	}
	if rec.Pauses > 0 {
		m.pauses.Add(float64(rec.Pauses))
	}
	if rec.HandshakeFailed {
		m.handshakes.Inc()
	}
	if rec.AuthFailed != "" {
		m.authFailures.WithLabelValues(rec.AuthFailed).Inc()
	}
	if rec.ClientLabel != "" {
		// Labels are configured client names or "other": bounded.
		m.clients.WithLabelValues(rec.ClientLabel, rec.Outcome).Inc()
	}
	if rec.EgressDenied != "" {
		// Reasons are a fixed set (egress.Reasons): bounded cardinality.
		m.egress.WithLabelValues(rec.EgressDenied).Inc()
	}
	if rec.CostReported && rec.CostEstimate > 0 {
		// Rules are the configured hosts matches: bounded.
		m.costRatio.WithLabelValues(rec.CostRule).Observe(float64(rec.CostActual) / float64(rec.CostEstimate))
	}
}

// Reloaded counts a configuration reload attempt.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
	} else {
		m.reloads.WithLabelValues("failure").Inc()
	}
}

// stateCollector reads the dispatcher once per scrape.
type stateCollector struct {
	stats                                 func() dispatch.Stats
	depth, inflight, tunnels, oldest      *prometheus.Desc
	rate, burst, conc, queueSize, maxWait *prometheus.Desc
	maxTunnels, paused                    *prometheus.Desc
	quotaUsed, quotaLimit                 *prometheus.Desc
	providerRemaining                     *prometheus.Desc
}

func newStateCollector(stats func() dispatch.Stats) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		stats:      stats,
		depth:      d("proxyd_queue_depth", "Requests waiting, by urgency.", "priority"),
		inflight:   d("proxyd_inflight_requests", "HTTP requests in flight upstream (holding a concurrency slot)."),
		tunnels:    d("proxyd_tunnels_open", "Open CONNECT tunnels."),
		oldest:     d("proxyd_queue_oldest_wait_seconds", "How long the oldest waiting request has waited."),
		rate:       d("proxyd_limit_rate", "Live limits.rate: requests per second admitted overall (0 = unlimited)."),
		burst:      d("proxyd_limit_burst", "Live limits.burst."),
		conc:       d("proxyd_limit_concurrency", "Live limits.concurrency (0 = unlimited)."),
		queueSize:  d("proxyd_limit_queue_size", "Live limits.queue_size."),
		maxWait:    d("proxyd_limit_max_wait_seconds", "Live limits.max_wait."),
		maxTunnels: d("proxyd_limit_max_tunnels", "Live limits.max_tunnels."),
		paused:     d("proxyd_paused_destinations", "Destinations currently paused by upstream back-pressure."),
		quotaUsed:  d("proxyd_quota_used", "Units a quota counts in its window ending now (rule: the hosts match, or global).", "rule", "unit", "per"),
		quotaLimit: d("proxyd_quota_limit", "A quota's live limit per window (rule: the hosts match, or global).", "rule", "unit", "per"),
		providerRemaining: d("proxyd_provider_remaining",
			"The fewest units a provider's response left to its destination, less proxyd's admissions since, over the live caps of the destinations under a hosts rule (rule: the match, or other).", "rule", "unit"),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.depth, c.inflight, c.tunnels, c.oldest, c.rate, c.burst, c.conc, c.queueSize, c.maxWait, c.maxTunnels, c.paused, c.quotaUsed, c.quotaLimit, c.providerRemaining} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for u, n := range s.ByPriority {
		g(c.depth, float64(n), priorities[u])
	}
	g(c.inflight, float64(s.InFlight))
	g(c.tunnels, float64(s.Tunnels))
	g(c.oldest, s.OldestWait.Seconds())
	g(c.rate, s.Limits.Rate)
	g(c.burst, float64(s.Limits.Burst))
	g(c.conc, float64(s.Limits.Concurrency))
	g(c.queueSize, float64(s.Limits.QueueSize))
	g(c.maxWait, s.Limits.MaxWait.Seconds())
	g(c.maxTunnels, float64(s.Limits.MaxTunnels))
	g(c.paused, float64(len(s.Paused)))
	quotas := func(rule string, qs []dispatch.QuotaStats) {
		for _, q := range qs {
			per := config.FormatPer(q.Quota.Per)
			g(c.quotaUsed, float64(q.Used), rule, q.Quota.Unit, per)
			g(c.quotaLimit, float64(q.Quota.Limit), rule, q.Quota.Unit, per)
		}
	}
	quotas("global", s.Quotas)
	for _, h := range s.Hosts {
		quotas(h.Match, h.Quotas)
	}
	// The lowest remaining per rule and unit (docs/metrics.md): never a
	// raw host, so the label set stays bounded.
	type ru struct{ rule, unit string }
	low := map[ru]int64{}
	for _, cp := range s.Caps {
		k := ru{cp.Rule, cp.Unit.String()}
		if k.rule == "" {
			k.rule = "other"
		}
		if v, ok := low[k]; !ok || cp.Remaining < v {
			low[k] = cp.Remaining
		}
	}
	for k, v := range low {
		g(c.providerRemaining, float64(v), k.rule, k.unit)
	}
}
