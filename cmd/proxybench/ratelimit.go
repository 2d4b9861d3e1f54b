package main

// Scenario 2: rate accuracy at 2× overload, open loop.

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/bench/peers"
)

type rateOpts struct {
	limits   []int
	duration time.Duration
	// skip is the start of the run left out of the admitted rate: the
	// token bucket's initial burst and the queue filling up.
	skip time.Duration
}

// nginxBurst is nginx limit_req's burst: how many excess requests it holds,
// as proxyd's default limits.queue_size.
const nginxBurst = 10000

// window counts the upstream's requests between two moments of a run.
type window struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	from, to upstreamStats
	t0, t1   time.Time
	err      error
}

// watchWindow reads the upstream's counters at start+skip and start+end.
func watchWindow(ctx context.Context, e *env, upAddr string, start time.Time, skip, end time.Duration) *window {
	w := &window{}
	w.wg.Go(func() {
		read := func(at time.Time) (upstreamStats, time.Time, error) {
			if err := sleepCtx(ctx, time.Until(at)); err != nil {
				return upstreamStats{}, time.Time{}, err
			}
			st, err := fetchStats(e.ctl, upAddr)
			return st, time.Now(), err
		}
		var err0, err1 error
		w.from, w.t0, err0 = read(start.Add(skip))
		w.to, w.t1, err1 = read(start.Add(end))
		w.mu.Lock()
		w.err = firstErr(err0, err1)
		w.mu.Unlock()
	})
	return w
}

// rate is the upstream's requests per second of urgency key ("" = all)
// over the window.
func (w *window) rate(key string) float64 {
	w.wg.Wait()
	secs := w.t1.Sub(w.t0).Seconds()
	if w.err != nil || secs <= 0 {
		return math.NaN()
	}
	if key == "" {
		return float64(w.to.Total-w.from.Total) / secs
	}
	return float64(w.to.ByUrgency[key]-w.from.ByUrgency[key]) / secs
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func runRate(ctx context.Context, e *env, o rateOpts) error {
	up, err := e.startUpstream(0)
	if err != nil {
		return err
	}
	defer up.stop()
	upURL := "http://" + up.addr + "/v1/items"
	tbl := &table{
		title:  fmt.Sprintf("Scenario 2: rate accuracy, 2× offered load, open loop, %v", o.duration),
		header: []string{"limit/s", "target", "offered/s", "admitted/s", "error", "2xx", "rejected", "other errors", "p50 ms", "p99 ms", "generator lag p99 ms", "flags"},
		right:  []bool{true, false, true, true, true, true, true, true, true, true, true, false},
	}
	var pdRun *proxydServer // the proxyd of the current run, for profiles
	for _, limit := range o.limits {
		type tgt struct {
			name  string
			start func() (stop func(), t target, err error)
		}
		tgts := []tgt{{"proxyd", func() (func(), target, error) {
			pd, err := e.startProxyd(proxydConf{Rate: float64(limit), Concurrency: 0, Upstream: up.addr})
			if err != nil {
				return nil, target{}, err
			}
			pdRun = pd
			pu, _ := url.Parse("http://" + pd.addr)
			return func() { pd.stop(); pdRun = nil }, target{name: "proxyd", mode: "forward", url: upURL, proxy: pu, groups: []int{pd.pid()}}, nil
		}}}
		if _, ok := e.peers["nginx"]; ok {
			tgts = append(tgts, tgt{"nginx limit_req", func() (func(), target, error) {
				s, err := e.startPeer("nginx", "nginx.conf.tmpl", peers.Data{Upstream: up.addr, Rate: limit, Burst: nginxBurst})
				if err != nil {
					return nil, target{}, err
				}
				return s.stop, target{name: "nginx limit_req", mode: "reverse", url: "http://" + s.addr + "/v1/items", groups: []int{s.pid()}}, nil
			}})
		}
		for _, tg := range tgts {
			type outcome struct {
				t        target
				res      *loadgen.Result
				share    loadgen.CPUShare
				cpuSec   float64
				admitted float64
			}
			var out outcome
			err := retryNoisy(ctx, e, fmt.Sprintf("rate %s %d/s", tg.name, limit), func() (loadgen.CPUShare, error) {
				stop, t, err := tg.start()
				if err != nil {
					return loadgen.CPUShare{}, err
				}
				defer stop()
				e.logf("rate: %s at %d/s, offering %d/s for %v", t.name, limit, 2*limit, o.duration)
				tr := loadgen.NewTransport(t.proxy, e.maxOutstanding())
				defer tr.CloseIdleConnections()
				before := sampleCPU(t.groups)
				w := watchWindow(ctx, e, up.addr, time.Now(), o.skip, o.duration)
				var prof chan error
				if pdRun != nil && pdRun.pprof != "" {
					prof = make(chan error, 1)
					go func(pd *proxydServer) {
						prof <- e.fetchProfile(pd, fmt.Sprintf("cpu-rate-%d.pprof", limit), "/debug/pprof/profile", int(max(1, (o.duration-o.skip).Seconds())))
					}(pdRun)
				}
				res, err := loadgen.RunOpen(ctx, loadgen.Options{
					URL:            t.url,
					Client:         &http.Client{Transport: tr},
					Duration:       o.duration,
					Timeout:        time.Minute,
					MaxOutstanding: e.maxOutstanding(),
					Classes:        []loadgen.Class{{Name: "all", Rate: float64(2 * limit)}},
				})
				share, cpuSec := cpuBetween(before, sampleCPU(t.groups))
				out = outcome{t: t, res: res, share: share, cpuSec: cpuSec, admitted: w.rate("")}
				if prof != nil {
					if err := <-prof; err != nil {
						e.logf("rate: profile: %v", err)
					}
				}
				return share, err
			})
			if err != nil {
				if tg.name == "proxyd" || ctx.Err() != nil {
					return err
				}
				e.logf("rate: skipping %s: %v", tg.name, err)
				e.rep.note("rate: %s did not start, skipped: %v", tg.name, err)
				continue
			}
			t, res, admitted := out.t, out.res, out.admitted
			cls := &res.Classes[0]
			errRel := admitted/float64(limit) - 1
			m := measurement{Scenario: "rate", Kind: "run", Target: t.name, Mode: t.mode, Limit: float64(limit),
				OfferedRPS: round3(float64(cls.Sent+cls.Overflow) / o.duration.Seconds()), AdmittedRPS: round3(admitted),
				LagP99: ms(res.Lag.Quantile(0.99)), Values: map[string]float64{"error_percent": round3(errRel * 100), "proxy_cpu_seconds": round3(out.cpuSec)}}
			m.setClass(cls)
			m.setShare(out.share)
			sat := saturated(res, cls)
			if sat != "" {
				m.Values["saturated"] = 1
			}
			e.rep.emit(m)
			var rejected int64
			for code, n := range cls.Status {
				if code == 503 || code == 429 {
					rejected += n
				}
			}
			flags := ""
			if m.Noisy {
				flags = "noisy"
			}
			if sat != "" {
				flags = strings.TrimPrefix(flags+", saturated", ", ")
			}
			tbl.add(fmt.Sprint(limit), t.name, fmtNum(m.OfferedRPS), fmtNum(admitted), fmtPct(errRel),
				fmt.Sprint(cls.OK), fmt.Sprint(rejected), fmt.Sprint(cls.Errors+cls.Overflow+cls.Completed-cls.OK-rejected),
				fmtNum(m.P50), fmtNum(m.P99), fmtNum(m.LagP99), flags)
			if t.name != "proxyd" {
				continue
			}
			v := verdict{target: fmt.Sprintf("Admitted rate within ±1%% of %d/s at 2× overload", limit),
				met: !math.IsNaN(admitted) && math.Abs(errRel) <= 0.01, measured: fmt.Sprintf("%s/s (%s)", fmtNum(admitted), fmtPct(errRel))}
			if sat != "" {
				v.skipped = fmt.Sprintf("this machine cannot offer %d/s through a proxy (%s); %s/s is its capacity, not the limiter's accuracy", 2*limit, sat, fmtNum(admitted))
			}
			e.rep.verdict(v)
		}
	}
	tbl.notes = append(tbl.notes, fmt.Sprintf("Admitted/s is counted at the upstream between %v and %v after the start (the first %v, with the token bucket's initial burst and the queue filling up, is left out). proxyd: limits.rate as shown, limits.burst 10 and limits.queue_size 10000 (defaults), concurrency unlimited. nginx: limit_req at the same rate with burst=%d (its queue), no nodelay. Rejected are 503/429 answers; latency is of 2xx answers, from the scheduled send time. Requests still waiting at the end are canceled. A run is saturated when the load generator could not keep to its schedule (its lag p99 over 100 ms, or arrivals not sent because every connection it may open was busy): the machine, not the limit, set the admitted rate.",
		o.skip, o.duration, o.skip, nginxBurst))
	e.rep.table(tbl)
	return nil
}

// saturated says why an open-loop run did not offer its load, or "".
func saturated(res *loadgen.Result, cls *loadgen.ClassResult) string {
	var why []string
	if lag := res.Lag.Quantile(0.99); lag > 100*time.Millisecond {
		why = append(why, fmt.Sprintf("load generator lag p99 %s ms", fmtNum(ms(lag))))
	}
	if cls.Overflow > 0 {
		why = append(why, fmt.Sprintf("%d arrivals not sent, every connection busy", cls.Overflow))
	}
	if cls.Errors > 0 {
		why = append(why, fmt.Sprintf("%d connection errors", cls.Errors))
	}
	return strings.Join(why, ", ")
}

// retryNoisy runs f, and runs it again (up to e.noisyRetries more times)
// while the host was noisy during it: a quieter run replaces a noisier one.
// f must leave what it measured somewhere the caller reads; since a later
// run overwrites it, only the last run's result is kept, and a retry is
// made only when the run was noisy, so the kept run is the first quiet one
// or the last one.
func retryNoisy(ctx context.Context, e *env, what string, f func() (loadgen.CPUShare, error)) error {
	for i := 0; ; i++ {
		share, err := f()
		if err != nil {
			return err
		}
		noisy := share.Steal > noisySteal || share.Other > noisyOther
		if !noisy || i >= e.noisyRetries {
			return nil
		}
		e.logf("%s: noisy (steal %s, other processes %s): running it again", what, fmtShare(share.Steal), fmtShare(share.Other))
		if err := settle(ctx); err != nil {
			return err
		}
	}
}
