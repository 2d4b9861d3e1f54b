package main

// Scenario 3: priority isolation under 2× overload, open loop.

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/bench/peers"
)

type priorityOpts struct {
	limit        int     // admitted per second
	urgent, bulk float64 // offered per second
	duration     time.Duration
	skip         time.Duration
	// haproxy's stand-in for a rate limit: maxconn requests at an upstream
	// that serves each in serviceTime.
	serviceTime time.Duration
}

// holdBulk is how long the calibration run holds each bulk request at the
// upstream, so that as many are outstanding at the end of the run as wait
// in a limiter's queue then (it admits limit-urgent bulk requests a
// second, so its queue grows by bulk-(limit-urgent) a second).
func (o priorityOpts) holdBulk() time.Duration {
	admitted := float64(o.limit) - o.urgent
	if admitted <= 0 || o.bulk <= admitted {
		return time.Second
	}
	// Held this long, as many bulk requests are outstanding at the end of
	// the run as wait in the limiter's queue then: bulk × hold =
	// (bulk - admitted) × duration.
	return time.Duration(float64(o.duration) * (o.bulk - admitted) / o.bulk).Round(100 * time.Millisecond)
}

func runPriority(ctx context.Context, e *env, o priorityOpts) error {
	tbl := &table{
		title:  fmt.Sprintf("Scenario 3: priority isolation, limit %d/s, offered %.0f/s urgent (u=1) + %.0f/s bulk (u=5), open loop, %v", o.limit, o.urgent, o.bulk, o.duration),
		header: []string{"target", "urgent served", "urgent p50 ms", "urgent p99 ms", "urgent max ms", "urgent queue p50/p99 ms", "urgent admitted/s", "bulk admitted/s", "total admitted/s", "bulk p50 ms", "noisy"},
		right:  []bool{false, true, true, true, true, true, true, true, true, true, false},
	}
	type setup struct {
		name  string
		start func() (stop func(), t target, upAddr string, err error)
	}
	var pdRun *proxydServer // the proxyd of the current run, for profiles
	setups := []setup{{"direct", func() (func(), target, string, error) {
		// The harness's own floor: the same load straight to the
		// upstream, no proxy, no limit.
		up, err := e.startUpstream(0)
		if err != nil {
			return nil, target{}, "", err
		}
		return up.stop, target{name: "direct (no proxy, no limit)", mode: "direct", url: "http://" + up.addr + "/v1/items"}, up.addr, nil
	}}, {"direct-held", func() (func(), target, string, error) {
		// The same, with every bulk request held at the upstream for
		// about as long as proxyd's queue holds it, so that as many are
		// outstanding as in proxyd's run: what the generator itself adds
		// to urgent latency in that state.
		up, err := e.startUpstreamArgs("--hold-bulk", o.holdBulk().String())
		if err != nil {
			return nil, target{}, "", err
		}
		return up.stop, target{name: fmt.Sprintf("direct, bulk held %v (no proxy)", o.holdBulk()), mode: "direct", url: "http://" + up.addr + "/v1/items"}, up.addr, nil
	}}, {"proxyd", func() (func(), target, string, error) {
		up, err := e.startUpstream(0)
		if err != nil {
			return nil, target{}, "", err
		}
		pd, err := e.startProxyd(proxydConf{Rate: float64(o.limit), Concurrency: 64, Upstream: up.addr})
		if err != nil {
			up.stop()
			return nil, target{}, "", err
		}
		pdRun = pd
		pu, _ := url.Parse("http://" + pd.addr)
		stop := func() { pd.stop(); up.stop(); pdRun = nil }
		return stop, target{name: "proxyd", mode: "forward", url: "http://" + up.addr + "/v1/items", proxy: pu, groups: []int{pd.pid()}}, up.addr, nil
	}}}
	maxConn := int(float64(o.limit) * o.serviceTime.Seconds())
	if _, ok := e.peers["haproxy"]; ok {
		setups = append(setups, setup{"haproxy", func() (func(), target, string, error) {
			up, err := e.startUpstream(o.serviceTime)
			if err != nil {
				return nil, target{}, "", err
			}
			s, err := e.startPeer("haproxy", "haproxy-priority.cfg.tmpl", peers.Data{Upstream: up.addr, MaxConn: maxConn, ServiceTime: o.serviceTime})
			if err != nil {
				up.stop()
				return nil, target{}, "", err
			}
			stop := func() { s.stop(); up.stop() }
			return stop, target{name: "haproxy", mode: "reverse", url: "http://" + s.addr + "/v1/items", groups: []int{s.pid()}}, up.addr, nil
		}})
	}
	heldP99 := math.NaN()
	for _, st := range setups {
		var (
			t                           target
			res                         *loadgen.Result
			share                       loadgen.CPUShare
			cpuSec                      float64
			urgentRate, bulkRate, total float64
		)
		err := retryNoisy(ctx, e, "priority "+st.name, func() (loadgen.CPUShare, error) {
			stop, tg, upAddr, err := st.start()
			if err != nil {
				return loadgen.CPUShare{}, err
			}
			defer stop()
			t = tg
			e.logf("priority: %s, offering %.0f/s urgent + %.0f/s bulk for %v", t.name, o.urgent, o.bulk, o.duration)
			// Each class has its own connection pool, as separate client
			// processes would.
			utr, btr := loadgen.NewTransport(t.proxy, 1000), loadgen.NewTransport(t.proxy, e.maxOutstanding())
			defer utr.CloseIdleConnections()
			defer btr.CloseIdleConnections()
			before := sampleCPU(t.groups)
			w := watchWindow(ctx, e, upAddr, time.Now(), o.skip, o.duration)
			var prof chan error
			if pdRun != nil && pdRun.pprof != "" {
				prof = make(chan error, 2)
				secs := int(max(1, (o.duration - o.skip).Seconds()))
				go func(pd *proxydServer) {
					prof <- e.fetchProfile(pd, "cpu-priority.pprof", "/debug/pprof/profile", secs)
				}(pdRun)
				go func(pd *proxydServer) {
					prof <- e.fetchProfile(pd, "trace-priority.out", "/debug/pprof/trace", min(secs, 5))
				}(pdRun)
			}
			var err2 error
			res, err2 = loadgen.RunOpen(ctx, loadgen.Options{
				URL:            t.url,
				Duration:       o.duration,
				Timeout:        time.Minute,
				Grace:          time.Second,
				MaxOutstanding: e.maxOutstanding(),
				ServerTiming:   "queue",
				Classes: []loadgen.Class{
					{Name: "urgent", Rate: o.urgent, Header: http.Header{"Priority": {"u=1"}}, Client: &http.Client{Transport: utr}},
					{Name: "bulk", Rate: o.bulk, Header: http.Header{"Priority": {"u=5"}}, Client: &http.Client{Transport: btr}},
				},
			})
			share, cpuSec = cpuBetween(before, sampleCPU(t.groups))
			urgentRate, bulkRate, total = w.rate("1"), w.rate("5"), w.rate("")
			if prof != nil {
				for range 2 {
					if err := <-prof; err != nil {
						e.logf("priority: profile: %v", err)
					}
				}
			}
			return share, err2
		})
		if err != nil {
			if st.name != "haproxy" || ctx.Err() != nil {
				return err
			}
			e.logf("priority: skipping %s: %v", st.name, err)
			e.rep.note("priority: %s did not start, skipped: %v", st.name, err)
			continue
		}
		u, b := res.Class("urgent"), res.Class("bulk")
		served := 0.0
		if n := u.Sent + u.Overflow; n > 0 {
			served = float64(u.OK) / float64(n)
		}
		for _, c := range []*loadgen.ClassResult{u, b} {
			m := measurement{Scenario: "priority", Kind: "run", Target: t.name, Mode: t.mode, Class: c.Name,
				Limit: float64(o.limit), OfferedRPS: round3(float64(c.Sent+c.Overflow) / o.duration.Seconds()),
				LagP99: ms(res.Lag.Quantile(0.99)),
				Values: map[string]float64{"proxy_cpu_seconds": round3(cpuSec), "urgent_admitted_rps": round3(urgentRate), "bulk_admitted_rps": round3(bulkRate), "total_admitted_rps": round3(total)}}
			if c == u {
				m.AdmittedRPS = round3(urgentRate)
				m.Values["served_fraction"] = round3(served)
			} else {
				m.AdmittedRPS = round3(bulkRate)
			}
			m.setClass(c)
			m.setShare(share)
			if c.ServerTiming.Count() > 0 {
				m.Values["queue_p50_ms"] = ms(c.ServerTiming.Quantile(0.5))
				m.Values["queue_p99_ms"] = ms(c.ServerTiming.Quantile(0.99))
			}
			e.rep.emit(m)
		}
		noisyShare := share.Steal > noisySteal || share.Other > noisyOther
		noisy := ""
		if noisyShare {
			noisy = "noisy"
		}
		p99 := ms(u.Latency.Quantile(0.99))
		queue := "–"
		if u.ServerTiming.Count() > 0 {
			queue = fmtNum(ms(u.ServerTiming.Quantile(0.5))) + " / " + fmtNum(ms(u.ServerTiming.Quantile(0.99)))
		}
		tbl.add(t.name, fmt.Sprintf("%.2f%% (%d/%d)", served*100, u.OK, u.Sent+u.Overflow),
			fmtNum(ms(u.Latency.Quantile(0.5))), fmtNum(p99), fmtNum(ms(u.Latency.Max())), queue,
			fmtNum(urgentRate), fmtNum(bulkRate), fmtNum(total), fmtNum(ms(b.Latency.Quantile(0.5))), noisy)
		if st.name == "direct-held" {
			heldP99 = p99
		}
		if t.name == "proxyd" {
			text := fmt.Sprintf("%.2f%% served, p99 %s ms end to end (p50 %s ms)", served*100, fmtNum(p99), fmtNum(ms(u.Latency.Quantile(0.5))))
			if !math.IsNaN(heldP99) {
				text += fmt.Sprintf("; the generator's own floor with as many requests outstanding: p99 %s ms", fmtNum(heldP99))
			}
			if u.ServerTiming.Count() > 0 {
				text += fmt.Sprintf("; proxyd's queue wait p99 %s ms", fmtNum(ms(u.ServerTiming.Quantile(0.99))))
			}
			if lag := ms(res.Lag.Quantile(0.99)); lag > 20 {
				text += fmt.Sprintf("; generator lag p99 %s ms (host saturated)", fmtNum(lag))
			}
			e.rep.verdict(verdict{target: "Urgent class fully served with p99 ≤ 5 ms at 2× overload",
				met: u.OK == u.Sent+u.Overflow && u.OK > 0 && p99 <= 5, measured: text})
		}
	}
	tbl.notes = append(tbl.notes, fmt.Sprintf("The two direct rows calibrate the load generator on this machine: the same load straight to the upstream, first answered at once, then with every bulk request held at the upstream so that as many requests are outstanding as in a limiter's run; urgent latency beyond that second row is what the proxy adds. Served is the share of urgent requests answered 2xx. Admitted/s is counted at the upstream, by the request's Priority header, between %v and %v after the start. proxyd: limits.rate %d, burst 10, concurrency 64, queue_size 10000, max_wait 30s (defaults but the rate), upstream answering at once. haproxy cannot hold requests to a rate; its queue forms on a server's maxconn, so its upstream serves each request in %v and maxconn is %d (= %d/s × %v), with set-priority-class 1 for u=1 and 5 otherwise and timeout queue 30s: its latencies include that %v of service time. haproxy sizes its connection limit from the file descriptor limit (two descriptors a connection); past it, new connections, urgent ones too, wait in the kernel's accept queue, unprioritised. Latency is from the scheduled send time to the end of the answer; the queue column is proxyd's own account of the wait in its queue (its Server-Timing: queue;dur), which leaves out the connection, the network and the load generator; bulk requests still waiting 1 s after the last arrival are canceled.",
		o.skip, o.duration, o.limit, o.serviceTime, maxConn, o.limit, o.serviceTime, o.serviceTime))
	e.rep.table(tbl)
	return nil
}
