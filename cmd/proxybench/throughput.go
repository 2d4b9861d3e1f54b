package main

// Scenario 1: throughput and added latency, no limits, keep-alive.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/bench/peers"
)

// target is one way of reaching the upstream.
type target struct {
	name, mode string
	url        string
	proxy      *url.URL // forward proxy, nil otherwise
	groups     []int    // process groups doing the proxying, for CPU per request
}

// throughputOpts shape scenario 1.
type throughputOpts struct {
	conc     []int
	rounds   int
	duration time.Duration
	warmup   time.Duration
}

// tpRun is one measured run.
type tpRun struct {
	rps, p50, p99, cpuPerReq float64
	errors                   int64
	noisy                    bool
}

func runThroughput(ctx context.Context, e *env, o throughputOpts) error {
	up, err := e.startUpstream(0)
	if err != nil {
		return err
	}
	defer up.stop()
	const path = "/v1/items"
	upURL := "http://" + up.addr + path
	targets := []target{{name: "direct", mode: "direct", url: upURL}}

	pd, err := e.startProxyd(proxydConf{Rate: 0, Concurrency: 0, Upstream: up.addr})
	if err != nil {
		return err
	}
	defer pd.stop()
	pdURL, _ := url.Parse("http://" + pd.addr)
	targets = append(targets,
		target{name: "proxyd", mode: "forward", url: upURL, proxy: pdURL, groups: []int{pd.pid()}},
		target{name: "proxyd", mode: "gateway", url: "http://" + pd.addr + path, groups: []int{pd.pid()}},
	)
	floor, err := e.startFloor()
	if err != nil {
		return err
	}
	defer floor.stop()
	floorURL, _ := url.Parse("http://" + floor.addr)
	targets = append(targets, target{name: "go-floor", mode: "forward", url: upURL, proxy: floorURL, groups: []int{floor.pid()}})

	peerSetups := []struct{ name, tmpl, mode string }{
		{"tinyproxy", "tinyproxy.conf.tmpl", "forward"},
		{"squid", "squid.conf.tmpl", "forward"},
		{"haproxy", "haproxy.cfg.tmpl", "reverse"},
		{"nginx", "nginx.conf.tmpl", "reverse"},
	}
	for _, ps := range peerSetups {
		if _, ok := e.peers[ps.name]; !ok {
			continue // skipped with a message at start-up
		}
		s, err := e.startPeer(ps.name, ps.tmpl, peers.Data{Upstream: up.addr})
		if err != nil {
			e.logf("throughput: skipping %s: %v", ps.name, err)
			e.rep.note("throughput: %s did not start, skipped: %v", ps.name, err)
			continue
		}
		defer s.stop()
		t := target{name: ps.name, mode: ps.mode, groups: []int{s.pid()}}
		if ps.mode == "forward" {
			t.url = upURL
			t.proxy, _ = url.Parse("http://" + s.addr)
		} else {
			t.url = "http://" + s.addr + path
		}
		targets = append(targets, t)
	}

	tbl := &table{
		title:  "Scenario 1: throughput and added latency (no limits, keep-alive, closed loop)",
		header: []string{"target", "mode", "c", "req/s (median)", "× direct", "p50 ms", "p99 ms", "added p50 ms", "proxy CPU µs/req", "errors", "noisy rounds"},
		right:  []bool{false, false, true, true, true, true, true, true, true, true, true},
	}
	for _, c := range o.conc {
		runs := make([][]tpRun, len(targets))
		clients := make([]*http.Client, len(targets))
		for i, t := range targets {
			tr := loadgen.NewTransport(t.proxy, c)
			defer tr.CloseIdleConnections()
			clients[i] = &http.Client{Transport: tr}
		}
		e.logf("throughput c=%d: warming up %d targets", c, len(targets))
		for i := range targets {
			if _, err := runClosedOnce(ctx, clients[i], targets[i], c, o.warmup); err != nil {
				return err
			}
		}
		for r := range o.rounds {
			// Round-robin: each round starts one target later, so none
			// always runs first or right after a given other.
			for k := range targets {
				i := (k + r) % len(targets)
				t := targets[i]
				before := sampleCPU(t.groups)
				res, err := runClosedOnce(ctx, clients[i], t, c, o.duration)
				if err != nil {
					return err
				}
				share, cpuSec := cpuBetween(before, sampleCPU(t.groups))
				cls := &res.Classes[0]
				run := tpRun{
					rps:    res.OKRate(),
					p50:    ms(cls.Latency.Quantile(0.5)),
					p99:    ms(cls.Latency.Quantile(0.99)),
					errors: cls.Errors + cls.Completed - cls.OK,
				}
				if len(t.groups) > 0 && cls.OK > 0 {
					run.cpuPerReq = cpuSec * 1e6 / float64(cls.OK)
				}
				m := measurement{Scenario: "throughput", Kind: "run", Target: t.name, Mode: t.mode,
					Concurrency: c, Round: r + 1, RPS: round3(run.rps), CPUPerReqUS: round3(run.cpuPerReq)}
				m.setClass(cls)
				m.setShare(share)
				run.noisy = m.Noisy
				e.rep.emit(m)
				runs[i] = append(runs[i], run)
			}
			e.logf("throughput c=%d: round %d/%d done", c, r+1, o.rounds)
		}
		summarizeThroughput(e, tbl, targets, runs, c)
		if pd.pprof != "" && c == o.conc[0] {
			if err := profileForward(ctx, e, pd, clients[1], targets[1], c); err != nil {
				e.logf("throughput: profile: %v", err)
			}
		}
	}
	tbl.notes = append(tbl.notes,
		fmt.Sprintf("Each target ran %d rounds of %v (after a %v warm-up), in an order rotated every round; the figures are medians over rounds, and \"× direct\" is the median of the per-round ratios to direct. \"proxy CPU\" is the CPU time of the proxy's processes (all of nginx's workers) per answered request. A round is noisy when the hypervisor stole more than %.0f%% of the host's CPU or processes proxybench did not start used more than %.0f%%.",
			o.rounds, o.duration, o.warmup, noisySteal*100, noisyOther*100))
	e.rep.table(tbl)
	return nil
}

func runClosedOnce(ctx context.Context, c *http.Client, t target, workers int, d time.Duration) (*loadgen.Result, error) {
	return loadgen.RunClosed(ctx, loadgen.Options{
		URL:      t.url,
		Client:   c,
		Duration: d,
		Timeout:  10 * time.Second,
		Classes:  []loadgen.Class{{Name: "all", Workers: workers}},
	})
}

func label(t target) string { return t.name + " " + t.mode }

// summarizeThroughput adds one row per target at concurrency c, and the
// verdicts at c=32.
func summarizeThroughput(e *env, tbl *table, targets []target, runs [][]tpRun, c int) {
	ratioTo := func(i, j int) float64 {
		var rs []float64
		for r := range runs[i] {
			if r < len(runs[j]) && runs[j][r].rps > 0 {
				rs = append(rs, runs[i][r].rps/runs[j][r].rps)
			}
		}
		return median(rs)
	}
	col := func(i int, f func(tpRun) float64) float64 {
		var xs []float64
		for _, r := range runs[i] {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	directP50 := col(0, func(r tpRun) float64 { return r.p50 })
	idx := map[string]int{}
	for i, t := range targets {
		idx[label(t)] = i
		var errs int64
		noisy := 0
		for _, r := range runs[i] {
			errs += r.errors
			if r.noisy {
				noisy++
			}
		}
		p50 := col(i, func(r tpRun) float64 { return r.p50 })
		cpu := "–"
		if len(t.groups) > 0 {
			cpu = fmt.Sprintf("%.1f", col(i, func(r tpRun) float64 { return r.cpuPerReq }))
		}
		added := "–"
		if i > 0 {
			added = fmt.Sprintf("%+.2f", p50-directP50)
		}
		tbl.add(t.name, t.mode, fmt.Sprint(c), fmtNum(col(i, func(r tpRun) float64 { return r.rps })),
			fmtRatio(ratioTo(i, 0)), fmtNum(p50), fmtNum(col(i, func(r tpRun) float64 { return r.p99 })),
			added, cpu, fmt.Sprint(errs), fmt.Sprintf("%d/%d", noisy, len(runs[i])))
		e.rep.emit(measurement{Scenario: "throughput", Kind: "summary", Target: t.name, Mode: t.mode, Concurrency: c,
			RPS: round3(col(i, func(r tpRun) float64 { return r.rps })), RatioDirect: round3(ratioTo(i, 0)),
			P50: round3(p50), P99: round3(col(i, func(r tpRun) float64 { return r.p99 })),
			CPUPerReqUS: round3(col(i, func(r tpRun) float64 { return r.cpuPerReq })), Errors: errs})
	}
	if c != 32 {
		return
	}
	pf := idx["proxyd forward"]
	for _, peer := range []struct {
		key, what string
		goal      float64
	}{
		{"squid forward", "Forward throughput ≥ 1.5× squid at c=32", 1.5},
		{"go-floor forward", "Forward throughput ≥ 1.5× the Go floor at c=32", 1.5},
	} {
		j, ok := idx[peer.key]
		if !ok {
			e.rep.verdict(verdict{target: peer.what, skipped: "peer not run"})
			continue
		}
		r := ratioTo(pf, j)
		e.rep.verdict(verdict{target: peer.what, met: r >= peer.goal,
			measured: fmt.Sprintf("%s (proxyd %s req/s, %s %s req/s)", fmtRatio(r),
				fmtNum(col(pf, func(r tpRun) float64 { return r.rps })), targets[j].name,
				fmtNum(col(j, func(r tpRun) float64 { return r.rps })))})
	}
	pg := idx["proxyd gateway"]
	if j, ok := idx["nginx reverse"]; ok {
		r := ratioTo(pg, j)
		e.rep.verdict(verdict{target: "Gateway mode at least level with nginx (c=32)", met: r >= 1,
			measured: fmt.Sprintf("%s (proxyd gateway %s req/s, nginx %s req/s)", fmtRatio(r),
				fmtNum(col(pg, func(r tpRun) float64 { return r.rps })),
				fmtNum(col(j, func(r tpRun) float64 { return r.rps })))})
	} else {
		e.rep.verdict(verdict{target: "Gateway mode at least level with nginx (c=32)", skipped: "nginx not run"})
	}
}

// profileForward takes a CPU profile of proxyd forwarding at concurrency c,
// then its allocation profile (cumulative since start), outside the
// measured rounds.
func profileForward(ctx context.Context, e *env, pd *proxydServer, client *http.Client, t target, c int) error {
	const secs = 5
	errc := make(chan error, 1)
	go func() {
		errc <- e.fetchProfile(pd, fmt.Sprintf("cpu-forward-c%d.pprof", c), "/debug/pprof/profile", secs)
	}()
	if _, err := runClosedOnce(ctx, client, t, c, (secs+1)*time.Second); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	return e.fetchProfile(pd, fmt.Sprintf("allocs-forward-c%d.pprof", c), "/debug/pprof/allocs", 0)
}
