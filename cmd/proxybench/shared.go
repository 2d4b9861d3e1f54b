package main

// Scenario 6: one quota shared by three proxyd replicas through Redis
// (docs/shared-quota.md): accuracy at 2× overload, priority across
// replicas, what the store costs (Redis calls per admitted request,
// call latency, and the queue wait it adds under light load against a
// memory-store proxyd), and a Sentinel failover (sentinel.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
)

// sharedOpts shape the shared scenario.
type sharedOpts struct {
	rate      float64 // limits.rate of the fleet
	burst     int     // limits.burst of the fleet
	queueSize int
	maxWait   time.Duration
	replicas  int
	// Lengths of the open-loop runs: accuracy (every replica offered 2×
	// its share), priority (bulk on one replica, urgent on another, then
	// both on one) and light load (redis, then memory).
	accuracy, priority, light time.Duration
	// skip is the start of a run left out of admitted rates.
	skip time.Duration
	// urgent, bulk and lightRate are offered per second.
	urgent, bulk, lightRate float64
	// The Sentinel failover run (sentinel.go): its length (the master is
	// killed a third of the way in), the sentinels'
	// down-after-milliseconds, and how often each replica's
	// GET /api/v1/store is polled.
	failover, downAfter, pollEvery time.Duration
	// explicit: the scenario was named on the command line; a missing
	// redis-server is then an error, not a skip.
	explicit bool
}

func defaultSharedOpts() sharedOpts {
	return sharedOpts{rate: 200, burst: 10, queueSize: 300, maxWait: 500 * time.Millisecond, replicas: 3,
		accuracy: 10 * time.Second, priority: 5 * time.Second, light: 5 * time.Second, skip: time.Second,
		urgent: 60, bulk: 400, lightRate: 50,
		failover: 10 * time.Second, downAfter: 500 * time.Millisecond, pollEvery: 5 * time.Millisecond}
}

// quick shortens the runs for --quick.
func (o *sharedOpts) quick() {
	o.accuracy, o.priority, o.light, o.failover = 4*time.Second, 3*time.Second, 3*time.Second, 6*time.Second
}

// errNoRedis is returned when redis-server cannot be found.
var errNoRedis = errors.New("redis-server is not installed (Debian: apt-get install redis-server); the shared scenario runs one on loopback")

// startRedis starts a redis-server child on a free port, without
// persistence.
func (e *env) startRedis(ctx context.Context) (*server, string, error) {
	bin, ok := findPeer("redis-server")
	if !ok {
		return nil, "", errNoRedis
	}
	version := redisVersion(peerVersionArgs(ctx, bin, "--version"))
	dir, err := e.subdir("redis")
	if err != nil {
		return nil, "", err
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc("redis-server", []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning", "--dir", dir})
	if err != nil {
		return nil, "", err
	}
	if err := p.waitTCP(addr, 10*time.Second); err != nil {
		return nil, "", err
	}
	return &server{p, addr}, version, nil
}

// peerVersionArgs runs bin with args and returns the first line it prints.
func peerVersionArgs(ctx context.Context, bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// redisVersion shortens "Redis server v=7.0.15 sha=… malloc=…" to
// "redis-server 7.0.15".
func redisVersion(line string) string {
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "redis-server " + v
		}
	}
	if line == "" {
		return "redis-server"
	}
	return line
}

// startArrivals starts the arrivals upstream.
func (e *env) startArrivals() (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc("arrivals", []string{e.self, "arrivals", "--listen", addr})
	if err != nil {
		return nil, err
	}
	if err := p.waitTCP(addr, 10*time.Second); err != nil {
		return nil, err
	}
	return &server{p, addr}, nil
}

// storeStatus is GET /api/v1/store.
type storeStatus struct {
	Store    string `json:"store"`
	Up       bool   `json:"up"`
	Replicas int    `json:"replicas"`
}

func (e *env) storeStatus(pd *proxydServer) (storeStatus, error) {
	var st storeStatus
	resp, err := e.ctl.Get("http://" + pd.admin + "/api/v1/store")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /api/v1/store: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitReplicas waits until every replica sees the store up with all of
// them.
func (e *env) waitReplicas(ctx context.Context, pds []*proxydServer, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var last storeStatus
		var err error
		ready := true
		for _, pd := range pds {
			last, err = e.storeStatus(pd)
			if err != nil || !last.Up || last.Replicas != len(pds) {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the replicas do not all see the store up with %d replicas after %v (last: %+v, %v)", len(pds), timeout, last, err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// storeMetrics are the store's counters of one replica (or a sum).
type storeMetrics struct {
	calls, errors, sum, count float64
	buckets                   map[float64]float64 // le (seconds) → cumulative count
}

// parseStoreMetrics reads the store's series from a Prometheus text page.
func parseStoreMetrics(text string) storeMetrics {
	m := storeMetrics{buckets: map[float64]float64{}}
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(line[:i], "{")
		switch name {
		case "proxyd_store_requests_total":
			m.calls = v
		case "proxyd_store_errors_total":
			m.errors = v
		case "proxyd_store_request_duration_seconds_sum":
			m.sum = v
		case "proxyd_store_request_duration_seconds_count":
			m.count = v
		case "proxyd_store_request_duration_seconds_bucket":
			_, le, ok := strings.Cut(labels, `le="`)
			if !ok {
				continue
			}
			le, _, _ = strings.Cut(le, `"`)
			b, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
			if err == nil {
				m.buckets[b] = v
			}
		}
	}
	return m
}

// add returns m + o (o scaled by sign: 1 to add, -1 to subtract).
func (m storeMetrics) add(o storeMetrics, sign float64) storeMetrics {
	r := storeMetrics{calls: m.calls + sign*o.calls, errors: m.errors + sign*o.errors,
		sum: m.sum + sign*o.sum, count: m.count + sign*o.count, buckets: map[float64]float64{}}
	for le, n := range m.buckets {
		r.buckets[le] = n
	}
	for le, n := range o.buckets {
		r.buckets[le] += sign * n
	}
	return r
}

// mean is the mean call duration in seconds.
func (m storeMetrics) mean() float64 {
	if m.count <= 0 {
		return math.NaN()
	}
	return m.sum / m.count
}

// quantileBound is the upper bound (seconds) of the histogram bucket that
// holds quantile q: the q-th call took at most this long. +Inf when it
// falls past the last finite bucket, NaN with no calls.
func (m storeMetrics) quantileBound(q float64) float64 {
	if m.count <= 0 {
		return math.NaN()
	}
	les := make([]float64, 0, len(m.buckets))
	for le := range m.buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	for _, le := range les {
		if m.buckets[le] >= q*m.count {
			return le
		}
	}
	return math.Inf(1)
}

// fleetMetrics sums the store's counters over replicas.
func (e *env) fleetMetrics(pds []*proxydServer) (storeMetrics, error) {
	sum := storeMetrics{buckets: map[float64]float64{}}
	for _, pd := range pds {
		resp, err := e.ctl.Get("http://" + pd.admin + "/metrics")
		if err != nil {
			return sum, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return sum, err
		}
		sum = sum.add(parseStoreMetrics(string(b)), 1)
	}
	return sum, nil
}

// sharedClass is one class of a shared-scenario run: its requests go
// through proxy pd with Priority: u=urgency.
type sharedClass struct {
	name    string
	pd      *proxydServer
	rate    float64
	urgency int
}

// sharedRun is one open-loop run and what the upstream saw during it.
type sharedRun struct {
	res   *loadgen.Result
	recs  []arrivalRec
	start time.Time // the schedule's start
	share loadgen.CPUShare
	store storeMetrics  // the fleet's store counters during the run
	span  time.Duration // between the two reads of the counters
}

// servedOf is the share of a class's arrivals answered 2xx.
func servedOf(c *loadgen.ClassResult) float64 {
	if n := c.Sent + c.Overflow; n > 0 {
		return float64(c.OK) / float64(n)
	}
	return math.NaN()
}

// runSharedLoad offers classes for d and collects the upstream's arrivals
// and the store counters of fleet (may be empty).
func (e *env) runSharedLoad(ctx context.Context, upAddr string, fleet []*proxydServer, classes []sharedClass, d time.Duration) (*sharedRun, error) {
	if _, err := fetchArrivals(e.ctl, upAddr, true); err != nil {
		return nil, fmt.Errorf("arrivals upstream: %w", err)
	}
	var lc []loadgen.Class
	var groups []int
	seen := map[*proxydServer]bool{}
	for _, c := range classes {
		pu, _ := url.Parse("http://" + c.pd.addr)
		tr := loadgen.NewTransport(pu, 1000)
		defer tr.CloseIdleConnections()
		lc = append(lc, loadgen.Class{Name: c.name, Rate: c.rate, Header: http.Header{"Priority": {fmt.Sprintf("u=%d", c.urgency)}}, Client: &http.Client{Transport: tr}})
		if !seen[c.pd] {
			seen[c.pd] = true
			groups = append(groups, c.pd.pid())
		}
	}
	m0, err := e.fleetMetrics(fleet)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	before := sampleCPU(groups)
	start := time.Now().Add(10 * time.Millisecond) // RunOpen's own start
	res, err := loadgen.RunOpen(ctx, loadgen.Options{
		URL:            "http://" + upAddr + "/v1/items",
		Duration:       d,
		Timeout:        10 * time.Second,
		Grace:          time.Second, // max_wait is 500 ms: everything is answered by then
		MaxOutstanding: e.maxOutstanding(),
		ServerTiming:   "queue",
		Classes:        lc,
	})
	if err != nil {
		return nil, err
	}
	share, _ := cpuBetween(before, sampleCPU(groups))
	m1, err := e.fleetMetrics(fleet)
	if err != nil {
		return nil, err
	}
	span := time.Since(t0)
	recs, err := fetchArrivals(e.ctl, upAddr, true)
	if err != nil {
		return nil, fmt.Errorf("arrivals upstream: %w", err)
	}
	return &sharedRun{res: res, recs: recs, start: start, share: share, store: m1.add(m0, -1), span: span}, nil
}

// admittedRate is the upstream's arrivals per second of urgency u (-1: all)
// between skip and d after the start.
func (r *sharedRun) admittedRate(u int, skip, d time.Duration) float64 {
	from, to := r.start.Add(skip), r.start.Add(d)
	n := 0
	for _, a := range r.recs {
		if (u < 0 || a.urgency == u) && !a.at.Before(from) && a.at.Before(to) {
			n++
		}
	}
	return float64(n) / (d - skip).Seconds()
}

func noisyFlag(s loadgen.CPUShare) string {
	if s.Steal > noisySteal || s.Other > noisyOther {
		return "noisy"
	}
	return ""
}

// queueCell is "p50 / p99" of proxyd's Server-Timing queue wait, in ms.
func queueCell(c *loadgen.ClassResult) string {
	if c.ServerTiming.Count() == 0 {
		return "–"
	}
	return fmtNum(ms(c.ServerTiming.Quantile(0.5))) + " / " + fmtNum(ms(c.ServerTiming.Quantile(0.99)))
}

// fmtMS formats seconds as milliseconds ("–" for NaN, "> last bucket"
// for +Inf).
func fmtMS(sec float64) string {
	switch {
	case math.IsNaN(sec):
		return "–"
	case math.IsInf(sec, 1):
		return "> 250"
	}
	return fmtNum(sec * 1000)
}

func runShared(ctx context.Context, e *env, o sharedOpts) error {
	rd, redisVersion, err := e.startRedis(ctx)
	if errors.Is(err, errNoRedis) && !o.explicit {
		e.logf("shared: %v: skipped", err)
		e.rep.note("shared: %v: skipped", err)
		return nil
	}
	if err != nil {
		return err
	}
	defer rd.stop()
	up, err := e.startArrivals()
	if err != nil {
		return err
	}
	defer up.stop()
	conf := proxydConf{Rate: o.rate, Burst: o.burst, QueueSize: o.queueSize, MaxWait: o.maxWait,
		Store: "redis", RedisURL: "redis://" + rd.addr + "/0", RedisPrefix: "bench"}
	fleet := make([]*proxydServer, o.replicas)
	for i := range fleet {
		if fleet[i], err = e.startProxyd(conf); err != nil {
			return fmt.Errorf("replica %d: %w", i+1, err)
		}
	}
	stopFleet := func() {
		for _, pd := range fleet {
			pd.stop()
		}
	}
	defer stopFleet()
	if err := e.waitReplicas(ctx, fleet, 10*time.Second); err != nil {
		return err
	}
	pause := func() error { return sleepCtx(ctx, time.Second) } // leases expire, demand records go stale
	share := o.rate / float64(o.replicas)
	n := float64(o.replicas)
	bound := o.rate*1 + float64(o.burst)
	// The store's own tolerance at the upstream: every replica may spend a
	// lease of up to rate × 4 × 5 ms after it left the bucket.
	slack := n * max(1, math.Floor(o.rate*4*0.005))

	// 1. Accuracy: every replica offered 2× its share.
	e.logf("shared: accuracy, %d replicas each offered %.0f/s (2× its share of %g/s) for %v", o.replicas, 2*share, o.rate, o.accuracy)
	var cls []sharedClass
	for i, pd := range fleet {
		cls = append(cls, sharedClass{name: fmt.Sprintf("replica %d", i+1), pd: pd, rate: 2 * share, urgency: 3})
	}
	acc, err := e.runSharedLoad(ctx, up.addr, fleet, cls, o.accuracy)
	if err != nil {
		return fmt.Errorf("accuracy: %w", err)
	}
	ws := countWindows(acc.recs, acc.start.Add(o.skip), acc.start.Add(o.accuracy), time.Second)
	admitted := float64(ws.total) / (o.accuracy - o.skip).Seconds()
	errRel := admitted/o.rate - 1
	var ok, rejected, offered int64
	var perReplica []string
	var queueAll loadgen.Histogram
	for i := range acc.res.Classes {
		c := &acc.res.Classes[i]
		ok += c.OK
		offered += c.Sent + c.Overflow
		rejected += c.Status[503] + c.Status[429]
		perReplica = append(perReplica, fmt.Sprint(c.OK))
		queueAll.Merge(&c.ServerTiming)
	}
	accTbl := &table{
		title:  fmt.Sprintf("Scenario 6a: shared quota, accuracy: %d replicas sharing rate %g/s burst %d through Redis, each offered %.0f/s (2× its share), open loop, %v", o.replicas, o.rate, o.burst, 2*share, o.accuracy),
		header: []string{"offered/s", "admitted/s", "error", "per-second min–max", "max in any 1 s", "rate×1s+burst", "2xx by replica", "rejected", "queue p50 / p99 ms", "generator lag p99 ms", "noisy"},
		right:  []bool{true, true, true, true, true, true, true, true, true, true, false},
	}
	accTbl.add(fmtNum(float64(offered)/o.accuracy.Seconds()), fmtNum(admitted), fmtPct(errRel),
		fmt.Sprintf("%d–%d", ws.secMin, ws.secMax), fmt.Sprint(ws.maxWindow), fmt.Sprintf("%.0f (+%.0f lease slack: %.0f)", bound, slack, bound+slack),
		strings.Join(perReplica, " / "), fmt.Sprint(rejected), queueCell(&loadgen.ClassResult{ServerTiming: queueAll}),
		fmtNum(ms(acc.res.Lag.Quantile(0.99))), noisyFlag(acc.share))
	accTbl.notes = append(accTbl.notes, fmt.Sprintf("Counted at the upstream, which records every arrival's time: admitted/s and the per-second counts between %v and %v after the start; the 1 s window slides over every arrival of the run, its first second and its end included. The bound is docs/shared-quota.md's rate × t + burst for t = 1 s; the store's package doc allows %.0f more at the upstream (a lease of up to %.0f tokens per replica, spent up to 100 ms after it left the bucket). Replicas: limits.store redis, rate %g, burst %d, queue_size %d, max_wait %v, concurrency unlimited; one %s (no persistence) and one upstream answering at once, all on loopback. Rejected are 503/429 answers (queue full or max_wait).",
		o.skip, o.accuracy, slack, slack/n, o.rate, o.burst, o.queueSize, o.maxWait, redisVersion))
	m := measurement{Scenario: "shared", Kind: "run", Target: "proxyd ×3 (redis)", Class: "accuracy", Limit: o.rate,
		OfferedRPS: round3(float64(offered) / o.accuracy.Seconds()), AdmittedRPS: round3(admitted), LagP99: ms(acc.res.Lag.Quantile(0.99)),
		Sent: offered, OK: ok, Values: map[string]float64{"error_percent": round3(errRel * 100), "max_1s_window": float64(ws.maxWindow),
			"bound": bound, "per_second_min": float64(ws.secMin), "per_second_max": float64(ws.secMax), "rejected": float64(rejected)}}
	m.setShare(acc.share)
	e.rep.emit(m)
	e.rep.verdict(verdict{target: fmt.Sprintf("Shared quota: %d replicas at 2× overload admit within 2%% of %g/s (target 1%%)", o.replicas, o.rate),
		met: math.Abs(errRel) <= 0.02, measured: fmt.Sprintf("%s/s (%s)", fmtNum(admitted), fmtPct(errRel))})
	e.rep.verdict(verdict{target: fmt.Sprintf("Shared quota: any 1 s window ≤ rate × 1 s + burst (%.0f)", bound),
		met: float64(ws.maxWindow) <= bound, measured: fmt.Sprintf("max %d in 1 s (store doc's tolerance %.0f)", ws.maxWindow, bound+slack)})

	// 2. Priority across replicas, then on one replica.
	prioTbl := &table{
		title:  fmt.Sprintf("Scenario 6b: shared quota, priority: rate %g/s over %d replicas, %.0f/s bulk (u=5) + %.0f/s urgent (u=1), open loop, %v", o.rate, o.replicas, o.bulk, o.urgent, o.priority),
		header: []string{"setup", "urgent served", "urgent queue p50 / p99 ms", "urgent p50 / p99 ms", "bulk served", "urgent admitted/s", "bulk admitted/s", "total admitted/s", "noisy"},
		right:  []bool{false, true, true, true, true, true, true, true, false},
	}
	var prioVerdict *verdict
	for _, setup := range []struct {
		name   string
		urgent *proxydServer
	}{{"across replicas: bulk on A, urgent on B", fleet[1]}, {"one replica: both on A (local queue)", fleet[0]}} {
		if err := pause(); err != nil {
			return err
		}
		e.logf("shared: priority, %s", setup.name)
		r, err := e.runSharedLoad(ctx, up.addr, fleet, []sharedClass{
			{name: "bulk", pd: fleet[0], rate: o.bulk, urgency: 5},
			{name: "urgent", pd: setup.urgent, rate: o.urgent, urgency: 1},
		}, o.priority)
		if err != nil {
			return fmt.Errorf("priority: %w", err)
		}
		u, b := r.res.Class("urgent"), r.res.Class("bulk")
		ur, br, tr := r.admittedRate(1, o.skip, o.priority), r.admittedRate(5, o.skip, o.priority), r.admittedRate(-1, o.skip, o.priority)
		prioTbl.add(setup.name, fmt.Sprintf("%.2f%% (%d/%d)", servedOf(u)*100, u.OK, u.Sent+u.Overflow), queueCell(u),
			fmtNum(ms(u.Latency.Quantile(0.5)))+" / "+fmtNum(ms(u.Latency.Quantile(0.99))),
			fmt.Sprintf("%.1f%% (%d/%d)", servedOf(b)*100, b.OK, b.Sent+b.Overflow), fmtNum(ur), fmtNum(br), fmtNum(tr), noisyFlag(r.share))
		for _, c := range []*loadgen.ClassResult{u, b} {
			m := measurement{Scenario: "shared", Kind: "run", Target: setup.name, Class: c.Name, Limit: o.rate,
				OfferedRPS: round3(float64(c.Sent+c.Overflow) / o.priority.Seconds()), LagP99: ms(r.res.Lag.Quantile(0.99)),
				Values: map[string]float64{"served_fraction": round3(servedOf(c)), "urgent_admitted_rps": round3(ur), "bulk_admitted_rps": round3(br), "total_admitted_rps": round3(tr)}}
			if c.ServerTiming.Count() > 0 {
				m.Values["queue_p50_ms"] = ms(c.ServerTiming.Quantile(0.5))
				m.Values["queue_p99_ms"] = ms(c.ServerTiming.Quantile(0.99))
			}
			m.setClass(c)
			m.setShare(r.share)
			e.rep.emit(m)
		}
		if prioVerdict == nil {
			qp99 := ms(u.ServerTiming.Quantile(0.99))
			prioVerdict = &verdict{target: "Shared quota: urgent on one replica fully served while another holds a bulk backlog, queue wait ≤ 50 ms",
				met:      u.OK > 0 && u.OK == u.Sent+u.Overflow && u.ServerTiming.Count() > 0 && qp99 <= 50,
				measured: fmt.Sprintf("%.2f%% served, queue wait p99 %s ms", servedOf(u)*100, fmtNum(qp99))}
		}
	}
	e.rep.verdict(*prioVerdict)
	prioTbl.notes = append(prioTbl.notes, fmt.Sprintf("Same fleet as 6a. Replica A gets the bulk load, replica B (first row) or A itself (second row, the calibration: what a local queue gives) the urgent one; the third replica is idle. Served is the share of arrivals answered 2xx; bulk beyond the rate times out after max_wait %v. Queue wait is proxyd's own Server-Timing queue;dur, end to end is from the scheduled send to the end of the answer. Admitted/s is counted at the upstream, by Priority urgency, between %v and %v after the start.",
		o.maxWait, o.skip, o.priority))

	// 3. Store cost under light load: redis (one replica of the fleet),
	// then a memory-store proxyd at the same limits.
	costTbl := &table{
		title:  fmt.Sprintf("Scenario 6c: shared quota, store cost (Redis calls of the %d replicas)", o.replicas),
		header: []string{"run", "admitted", "Redis calls", "calls / admitted", "calls/s per replica", "call mean ms", "call p99 ≤ ms", "store errors"},
		right:  []bool{false, true, true, true, true, true, true, true},
	}
	addCost := func(name string, r *sharedRun) {
		adm := float64(len(r.recs))
		s := r.store
		costTbl.add(name, fmt.Sprint(len(r.recs)), fmt.Sprintf("%.0f", s.calls), fmtNum(s.calls/adm),
			fmtNum(s.calls/n/r.span.Seconds()), fmtMS(s.mean()), fmtMS(s.quantileBound(0.99)), fmt.Sprintf("%.0f", s.errors))
		e.rep.emit(measurement{Scenario: "shared", Kind: "summary", Target: "proxyd ×3 (redis)", Class: "store cost " + name,
			Values: map[string]float64{"admitted": adm, "redis_calls": s.calls, "calls_per_admitted": round3(s.calls / adm),
				"call_mean_ms": round3(s.mean() * 1000), "call_p99_bound_ms": round3(s.quantileBound(0.99) * 1000), "store_errors": s.errors}})
	}
	addCost(fmt.Sprintf("6a: overload, %d × %.0f/s", o.replicas, 2*share), acc)

	waitTbl := &table{
		title:  fmt.Sprintf("Scenario 6d: shared quota, queue wait under light load: %.0f/s (u=3) to one proxyd at rate %g/s burst %d, open loop, %v", o.lightRate, o.rate, o.burst, o.light),
		header: []string{"store", "served", "queue p50 / p99 / max ms", "end to end p50 / p99 ms", "noisy"},
		right:  []bool{false, true, true, true, false},
	}
	lightRow := func(name string, r *sharedRun) {
		c := &r.res.Classes[0]
		q := "–"
		if c.ServerTiming.Count() > 0 {
			q = fmt.Sprintf("%s / %s / %s", fmtNum(ms(c.ServerTiming.Quantile(0.5))), fmtNum(ms(c.ServerTiming.Quantile(0.99))), fmtNum(ms(c.ServerTiming.Max())))
		}
		waitTbl.add(name, fmt.Sprintf("%.2f%% (%d/%d)", servedOf(c)*100, c.OK, c.Sent+c.Overflow), q,
			fmtNum(ms(c.Latency.Quantile(0.5)))+" / "+fmtNum(ms(c.Latency.Quantile(0.99))), noisyFlag(r.share))
		m := measurement{Scenario: "shared", Kind: "run", Target: name, Class: "light", Limit: o.rate,
			OfferedRPS: round3(float64(c.Sent+c.Overflow) / o.light.Seconds()), LagP99: ms(r.res.Lag.Quantile(0.99)), Values: map[string]float64{}}
		if c.ServerTiming.Count() > 0 {
			m.Values["queue_p50_ms"] = ms(c.ServerTiming.Quantile(0.5))
			m.Values["queue_p99_ms"] = ms(c.ServerTiming.Quantile(0.99))
		}
		m.setClass(c)
		m.setShare(r.share)
		e.rep.emit(m)
	}
	if err := pause(); err != nil {
		return err
	}
	e.logf("shared: light load, %.0f/s to one replica of the redis fleet for %v", o.lightRate, o.light)
	lr, err := e.runSharedLoad(ctx, up.addr, fleet, []sharedClass{{name: "light", pd: fleet[2], rate: o.lightRate, urgency: 3}}, o.light)
	if err != nil {
		return fmt.Errorf("light load (redis): %w", err)
	}
	addCost(fmt.Sprintf("6d: light, %.0f/s on one replica", o.lightRate), lr)
	lightRow(fmt.Sprintf("redis (one of %d replicas)", o.replicas), lr)
	stopFleet()
	rd.stop()

	mem := conf
	mem.Store, mem.RedisURL, mem.RedisPrefix = "", "", ""
	pd, err := e.startProxyd(mem)
	if err != nil {
		return fmt.Errorf("memory-store proxyd: %w", err)
	}
	defer pd.stop()
	if err := pause(); err != nil {
		return err
	}
	e.logf("shared: light load, %.0f/s to a memory-store proxyd for %v", o.lightRate, o.light)
	mr, err := e.runSharedLoad(ctx, up.addr, nil, []sharedClass{{name: "light", pd: pd, rate: o.lightRate, urgency: 3}}, o.light)
	if err != nil {
		return fmt.Errorf("light load (memory): %w", err)
	}
	lightRow("memory (one proxyd alone)", mr)
	pd.stop()

	// 4. A Sentinel failover (sentinel.go).
	if err := pause(); err != nil {
		return err
	}
	failTbl, err := runSentinelFailover(ctx, e, o, up)
	if err != nil {
		return err
	}
	costTbl.notes = append(costTbl.notes, "Calls are the sum over the replicas of proxyd_store_requests_total's increase during the run and its 1 s grace (idle replicas included: each calls every 100 ms when nothing waits, every 5 ms while requests wait); admitted counts the upstream's arrivals over the same span. Call latency is from proxyd_store_request_duration_seconds: mean = Δsum / Δcount, p99 the upper bound of the histogram bucket holding the 99th percentile.")
	waitTbl.notes = append(waitTbl.notes, fmt.Sprintf("No overload: %.0f/s against a rate of %g/s, so a memory-store proxyd almost always has a token at hand. With the shared store a replica spends only tokens it leased; queue wait is proxyd's Server-Timing queue;dur. The redis row runs while the other two replicas idle; the memory row after the fleet and Redis are stopped.", o.lightRate, o.rate))
	for _, t := range []*table{accTbl, prioTbl, costTbl, waitTbl, failTbl} {
		if t != nil {
			e.rep.table(t)
		}
	}
	return nil
}
