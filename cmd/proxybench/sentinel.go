package main

// Scenario 6e: the shared quota across a Redis Sentinel failover
// (docs/shared-quota.md, "Highly available Redis", "When Redis fails",
// "The bound across an outage"). A master, its replica and three
// sentinels on loopback (internal/testredis's set, started as the
// harness's children); three proxyd replicas find the master through
// redis.sentinel.* and are offered twice their share; the master is
// SIGKILLed a third of the way in. Measured: requests lost, how long
// each replica was without the shared store, the promotion and when the
// sentinels named the new master, when every replica used the store
// again, and the admissions at the upstream over the run and in every
// window.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/internal/testredis"
)

// errNoSentinel is returned when redis-sentinel cannot be found: the
// failover row is then skipped with a note.
var errNoSentinel = errors.New("redis-sentinel is not installed (Debian: apt-get install redis-sentinel)")

// sentinelBins finds redis-server and redis-sentinel with lookup
// (findPeer in the harness).
func sentinelBins(lookup func(string) (string, bool)) (server, sentinel string, err error) {
	server, ok := lookup("redis-server")
	if !ok {
		return "", "", errNoRedis
	}
	if sentinel, ok = lookup("redis-sentinel"); !ok {
		return "", "", errNoSentinel
	}
	return server, sentinel, nil
}

// quoteList is a YAML flow list's items: "a", "b".
func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// storeSample is one poll of a replica's GET /api/v1/store: its state at
// the poll's midpoint.
type storeSample struct {
	at time.Time
	up bool
}

// outage is a span a replica was seen without the shared store: from the
// first poll that saw it down to the first that saw it up again (zero up:
// still down at the last poll).
type outage struct{ down, up time.Time }

// outagesOf reads the outages out of a replica's polls, in time order.
func outagesOf(samples []storeSample) []outage {
	var out []outage
	for _, s := range samples {
		switch open := len(out) > 0 && out[len(out)-1].up.IsZero(); {
		case !s.up && !open:
			out = append(out, outage{down: s.at})
		case s.up && open:
			out[len(out)-1].up = s.at
		}
	}
	return out
}

// downMsg is proxyd's log line at the switch to redis.on_error
// (docs/shared-quota.md, "When Redis fails"), logged at error level.
const downMsg = "shared limiter store unreachable; redis.on_error applies"

// switchTimes are the times of proxyd's downMsg lines in its output
// (JSON lines, ts in ISO 8601 to the millisecond).
func switchTimes(out string) []time.Time {
	var ts []time.Time
	for line := range strings.SplitSeq(out, "\n") {
		var l struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if !strings.Contains(line, downMsg) || json.Unmarshal([]byte(line), &l) != nil || l.Msg != downMsg {
			continue
		}
		if t, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.TS); err == nil {
			ts = append(ts, t)
		}
	}
	return ts
}

// lostOf counts a class's arrivals answered neither 2xx nor by a proxy
// rejection (503, 429: queue full or max_wait): errors, requests still
// outstanding at the end (hung), other statuses, and arrivals never sent.
func lostOf(c *loadgen.ClassResult) int64 {
	return c.Sent + c.Overflow - c.OK - c.Status[503] - c.Status[429]
}

// failoverTimes is what killMaster saw after the master's death.
type failoverTimes struct {
	killed time.Time
	// promoted: the replica answers ROLE as master (REPLICAOF NO ONE from
	// the sentinels' leader). announced: the first sentinel names it
	// master, the earliest a client can learn it; allNamed: the last
	// sentinel does (a client asks the one it knows).
	promoted, announced, allNamed time.Time
}

// killMaster SIGKILLs the set's master and waits, polling every
// millisecond, until the replica is promoted and every sentinel names
// it, or timeout.
func killMaster(ctx context.Context, set *testredis.Sentinels, timeout time.Duration) (failoverTimes, error) {
	var ft failoverTimes
	ft.killed = time.Now() // Kill returns once the process is reaped
	set.Master.Kill()
	named := make([]bool, len(set.Sentinels))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for deadline := ft.killed.Add(timeout); ft.allNamed.IsZero(); {
		if ft.promoted.IsZero() {
			if role, err := set.Replica.Do("ROLE"); err == nil {
				if l, ok := role.([]any); ok && len(l) > 0 && l[0] == "master" {
					ft.promoted = time.Now()
				}
			}
		}
		all := true
		for i := range set.Sentinels {
			if !named[i] {
				addr, err := set.MasterAddr(i)
				named[i] = err == nil && addr == set.Replica.Addr()
			}
			if named[i] && ft.announced.IsZero() {
				ft.announced = time.Now()
			}
			all = all && named[i]
		}
		if all {
			ft.allNamed = time.Now()
			break
		}
		if time.Now().After(deadline) {
			return ft, fmt.Errorf("the sentinels did not promote and name the replica within %v of the master's death (promoted: %v, named by %v)", timeout, !ft.promoted.IsZero(), named)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ft, ctx.Err()
		}
	}
	if ft.promoted.IsZero() { // named before a poll saw ROLE change
		ft.promoted = ft.announced
	}
	return ft, nil
}

// pollStore polls pd's GET /api/v1/store every interval until ctx ends.
func (e *env) pollStore(ctx context.Context, pd *proxydServer, interval time.Duration) (samples []storeSample, errs int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		t0 := time.Now()
		st, err := e.storeStatus(pd)
		if err != nil {
			errs++
		} else {
			samples = append(samples, storeSample{at: t0.Add(time.Since(t0) / 2), up: st.Up})
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return samples, errs
		}
	}
}

// failoverBound is docs/shared-quota.md's bound for a window of length w
// spanning one outage, rate × w + 2 × burst ("The bound across an
// outage"; burst + replicas when burst < replicas), and what a failover
// can add: rate × 50 ms of writes the promoted replica missed.
func failoverBound(rate float64, burst, replicas int, w time.Duration) (bound, lag float64) {
	return rate*w.Seconds() + float64(burst+max(burst, replicas)), rate * 0.05
}

// runSentinelFailover is scenario 6e, on the arrivals upstream up; nil
// table when redis-sentinel is not installed.
func runSentinelFailover(ctx context.Context, e *env, o sharedOpts, up *server) (*table, error) {
	srvBin, senBin, err := sentinelBins(findPeer)
	if errors.Is(err, errNoSentinel) {
		e.logf("shared: %v: the Sentinel failover row (6e) is skipped", err)
		e.rep.note("shared: %v: the Sentinel failover row (6e) skipped", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Debian's redis-sentinel is redis-server under another name, and
	// says so.
	sentinelVersion := "redis-sentinel " + strings.TrimPrefix(redisVersion(peerVersionArgs(ctx, senBin, "--version")), "redis-server ")
	dir, err := e.subdir("sentinel")
	if err != nil {
		return nil, err
	}
	e.logf("shared: starting a master, a replica and 3 sentinels (down-after-milliseconds %d)", o.downAfter.Milliseconds())
	set, err := testredis.LaunchSentinels(testredis.SentinelOptions{Server: srvBin, Sentinel: senBin, Dir: dir, DownAfter: o.downAfter,
		// As every child of the harness: its own process group, and
		// SIGKILL if the harness dies (procs.go).
		Prepare: func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		}})
	if err != nil {
		return nil, fmt.Errorf("sentinel set: %w", err)
	}
	defer set.Close()
	conf := proxydConf{Rate: o.rate, Burst: o.burst, QueueSize: o.queueSize, MaxWait: o.maxWait,
		Store: "redis", SentinelMaster: testredis.SentinelMaster, SentinelAddrs: set.Addrs(), RedisPrefix: "bench-sentinel"}
	fleet := make([]*proxydServer, o.replicas)
	defer func() {
		for _, pd := range fleet {
			if pd != nil {
				pd.stop()
			}
		}
	}()
	for i := range fleet {
		if fleet[i], err = e.startProxyd(conf); err != nil {
			return nil, fmt.Errorf("sentinel replica %d: %w", i+1, err)
		}
	}
	if err := e.waitReplicas(ctx, fleet, 10*time.Second); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, time.Second); err != nil { // as between the other runs
		return nil, err
	}

	share := o.rate / float64(o.replicas)
	e.logf("shared: Sentinel failover, %d replicas each offered %.0f/s for %v, the master SIGKILLed at %v", o.replicas, 2*share, o.failover, o.failover/3)
	pollCtx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	samples := make([][]storeSample, len(fleet))
	pollErrs := make([]int, len(fleet))
	var wg sync.WaitGroup
	for i, pd := range fleet {
		wg.Go(func() { samples[i], pollErrs[i] = e.pollStore(pollCtx, pd, o.pollEvery) })
	}
	var ft failoverTimes
	var ftErr error
	wg.Go(func() {
		if ftErr = sleepCtx(pollCtx, o.failover/3); ftErr == nil {
			ft, ftErr = killMaster(pollCtx, set, 10*time.Second)
		}
	})
	var cls []sharedClass
	for i, pd := range fleet {
		cls = append(cls, sharedClass{name: fmt.Sprintf("replica %d", i+1), pd: pd, rate: 2 * share, urgency: 3})
	}
	r, err := e.runSharedLoad(ctx, up.addr, fleet, cls, o.failover)
	stopPolls()
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("sentinel failover: %w", err)
	}
	if ftErr != nil {
		return nil, fmt.Errorf("sentinel failover: %w", ftErr)
	}

	// Requests: every arrival answered 2xx or rejected by the proxy.
	var offered, ok, rejected, lost int64
	var firstErr string
	for i := range r.res.Classes {
		c := &r.res.Classes[i]
		offered += c.Sent + c.Overflow
		ok += c.OK
		rejected += c.Status[503] + c.Status[429]
		lost += lostOf(c)
		if firstErr == "" {
			firstErr = c.FirstError
		}
	}
	// The store: each replica's outages, and when it used the store
	// again after the promotion and the announcement.
	var without, switched, afterPromotion, afterAnnounce []string
	var worstAfterPromotion, worstWithout time.Duration
	var firstDown, lastUp time.Time
	stillDown, outages, fromLog := 0, 0, 0
	for i, pd := range fleet {
		seen := outagesOf(samples[i])
		outages += len(seen)
		// The first outage's start from the replica's own log line of
		// the switch, to the millisecond, when its output still holds
		// it; else the first poll that saw it down.
		if len(seen) > 0 {
			for _, t := range switchTimes(pd.out.String()) {
				if !t.Before(ft.killed.Add(-time.Second)) && (seen[0].up.IsZero() || t.Before(seen[0].up)) {
					seen[0].down = t
					fromLog++
					break
				}
			}
			switched = append(switched, fmtNum(ms(seen[0].down.Sub(ft.killed))))
		} else {
			switched = append(switched, "–")
		}
		var total time.Duration
		var upAgain time.Time
		for _, x := range seen {
			if firstDown.IsZero() || x.down.Before(firstDown) {
				firstDown = x.down
			}
			if x.up.IsZero() {
				stillDown++
				continue
			}
			total += x.up.Sub(x.down)
			upAgain = x.up
			lastUp = later(lastUp, x.up)
		}
		worstWithout = max(worstWithout, total)
		without = append(without, fmtNum(ms(total)))
		if upAgain.IsZero() {
			afterPromotion, afterAnnounce = append(afterPromotion, "–"), append(afterAnnounce, "–")
			continue
		}
		worstAfterPromotion = max(worstAfterPromotion, upAgain.Sub(ft.promoted))
		afterPromotion = append(afterPromotion, fmtNum(ms(upAgain.Sub(ft.promoted))))
		afterAnnounce = append(afterAnnounce, fmtNum(ms(upAgain.Sub(ft.announced))))
	}
	// Admissions at the upstream: over the run, during the outage, and
	// the worst windows against the documented bound.
	from, to := r.start.Add(o.skip), r.start.Add(o.failover)
	ws := countWindows(r.recs, from, to, time.Second)
	w100 := countWindows(r.recs, from, to, 100*time.Millisecond)
	admitted := float64(ws.total) / (o.failover - o.skip).Seconds()
	errRel := admitted/o.rate - 1
	outageRate := math.NaN()
	if !firstDown.IsZero() && lastUp.After(firstDown) {
		outageRate = float64(countWindows(r.recs, firstDown, lastUp, time.Second).total) / lastUp.Sub(firstDown).Seconds()
	}
	n := float64(o.replicas)
	slack := n * max(1, math.Floor(o.rate*4*0.005)) // as in 6a: a lease spent after it left the bucket
	b1, lag := failoverBound(o.rate, o.burst, o.replicas, time.Second)
	b100, _ := failoverBound(o.rate, o.burst, o.replicas, 100*time.Millisecond)
	boundCell := func(b float64) string {
		return fmt.Sprintf("%.0f (+%.0f lag, +%.0f lease slack: %.0f)", b, lag, slack, b+lag+slack)
	}

	tbl := &table{
		title: fmt.Sprintf("Scenario 6e: shared quota across a Sentinel failover: %d replicas sharing rate %g/s burst %d through a master, a replica and 3 sentinels (down-after-milliseconds %d), each offered %.0f/s (2× its share), the master SIGKILLed at %v, open loop, %v",
			o.replicas, o.rate, o.burst, o.downAfter.Milliseconds(), 2*share, ft.killed.Sub(r.start).Round(10*time.Millisecond), o.failover),
		header: []string{"offered/s", "admitted/s", "error", "admitted/s in the outage", "lost", "rejected", "kill → switch to on_error ms", "kill → promoted ms", "promoted → named by first / all sentinels ms", "without the store ms", "promotion → store used ms", "naming → store used ms", "max in any 1 s", "rate×1s+2×burst", "max in any 100 ms", "rate×100ms+2×burst", "noisy"},
		right:  []bool{true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, false},
	}
	tbl.add(fmtNum(float64(offered)/o.failover.Seconds()), fmtNum(admitted), fmtPct(errRel), fmtNum(outageRate),
		fmt.Sprint(lost), fmt.Sprint(rejected), strings.Join(switched, " / "),
		fmtNum(ms(ft.promoted.Sub(ft.killed))), fmtNum(ms(ft.announced.Sub(ft.promoted)))+" / "+fmtNum(ms(ft.allNamed.Sub(ft.promoted))),
		strings.Join(without, " / "), strings.Join(afterPromotion, " / "), strings.Join(afterAnnounce, " / "),
		fmt.Sprint(ws.maxWindow), boundCell(b1), fmt.Sprint(w100.maxWindow), boundCell(b100), noisyFlag(r.share))
	note := fmt.Sprintf("Replicas: limits.store redis with redis.sentinel.master and redis.sentinel.addrs (the three sentinels), redis.timeout 100ms, on_error local (the defaults), rate %g, burst %d, queue_size %d, max_wait %v; %s and %s, no persistence, all on loopback. "+
		"down-after-milliseconds is %d: short, so that the outage fits well inside the run with steady state on both sides, and well above the 200 ms of the Go test (TestSentinelFailover), so that the bench's own load on two cores (three proxyds, five Redis processes, the generator) does not make a sentinel see the master down when it is not; production's default is 30 s, and the time without the store is Sentinel's: down-after-milliseconds plus about a second. "+
		"Lost are arrivals answered neither 2xx nor by a proxy rejection (503 or 429: queue full, max_wait): errors, statuses other than those, and requests still unanswered %v after the last arrival (hung); rejected are the 503s of max_wait at 2× overload. "+
		"Promoted is when the replica first answered ROLE as master (polled every millisecond), named when the first sentinel, then the last, answered GET-MASTER-ADDR-BY-NAME with it (every sentinel polled every millisecond): proxyd can learn the new master only from then, and a replica from the sentinel it asks (go-redis keeps to one while it answers). Naming in the next column is the first sentinel's. Per replica (columns with three figures), its switch to on_error is the time of its log line (%q, to the millisecond; found for %d of %d, else the first poll that saw it down), and its GET /api/v1/store was polled every %v: without the store is from the switch to the first poll that answered up=true again (±%v), store used is that poll. "+
		"Admitted/s is counted at the upstream between %v and %v after the start, and between the first replica's switch to on_error and the last one's return (in the outage); the windows slide over every arrival of the run. Their bound is docs/shared-quota.md's for a window across one outage, rate × t + 2 × burst (\"The bound across an outage\"), with what a failover can add, rate × 50 ms of writes the promoted replica missed (lag), and 6a's lease slack at the upstream.",
		o.rate, o.burst, o.queueSize, o.maxWait, redisVersion(peerVersionArgs(ctx, srvBin, "--version")), sentinelVersion,
		o.downAfter.Milliseconds(), time.Second, downMsg, fromLog, o.replicas, o.pollEvery, o.pollEvery, o.skip, o.failover)
	tbl.notes = append(tbl.notes, note)
	if lost > 0 && firstErr != "" {
		tbl.notes = append(tbl.notes, "First error: "+firstErr)
	}
	if n := sum(pollErrs); n > 0 || stillDown > 0 || outages != o.replicas {
		tbl.notes = append(tbl.notes, fmt.Sprintf("Polls: %d outages seen over %d replicas (one each expected), %d still down at the end, %d polls failed.", outages, o.replicas, stillDown, n))
	}

	m := measurement{Scenario: "shared", Kind: "run", Target: "proxyd ×3 (redis sentinel)", Class: "failover", Limit: o.rate,
		OfferedRPS: round3(float64(offered) / o.failover.Seconds()), AdmittedRPS: round3(admitted), LagP99: ms(r.res.Lag.Quantile(0.99)),
		Sent: offered, OK: ok, Values: map[string]float64{"error_percent": round3(errRel * 100), "lost": float64(lost), "rejected": float64(rejected),
			"kill_to_promoted_ms": ms(ft.promoted.Sub(ft.killed)), "promoted_to_named_ms": ms(ft.announced.Sub(ft.promoted)), "promoted_to_all_named_ms": ms(ft.allNamed.Sub(ft.promoted)),
			"max_without_store_ms": ms(worstWithout), "max_promotion_to_store_ms": ms(worstAfterPromotion),
			"max_1s_window": float64(ws.maxWindow), "bound_1s": b1, "max_100ms_window": float64(w100.maxWindow), "bound_100ms": b100,
			"outages": float64(outages), "still_down": float64(stillDown), "switch_from_log": float64(fromLog)}}
	if !math.IsNaN(outageRate) {
		m.Values["outage_admitted_rps"] = round3(outageRate)
	}
	m.setShare(r.share)
	e.rep.emit(m)
	e.rep.verdict(verdict{target: "Shared quota, Sentinel failover: no request lost or hung",
		met: lost == 0, measured: fmt.Sprintf("%d lost of %d", lost, offered)})
	e.rep.verdict(verdict{target: "Shared quota, Sentinel failover: every replica uses the store again within 1 s of the promotion",
		met:      stillDown == 0 && outages >= o.replicas && worstAfterPromotion <= time.Second,
		measured: fmt.Sprintf("at most %s ms after it (%s ms after the sentinels named it)", fmtNum(ms(worstAfterPromotion)), strings.Join(afterAnnounce, " / "))})
	e.rep.verdict(verdict{target: "Shared quota, Sentinel failover: every 1 s and 100 ms window ≤ rate × t + 2 × burst + failover lag",
		met:      float64(ws.maxWindow) <= b1+lag && float64(w100.maxWindow) <= b100+lag,
		measured: fmt.Sprintf("max %d in 1 s (bound %.0f), %d in 100 ms (bound %.0f)", ws.maxWindow, b1+lag, w100.maxWindow, b100+lag)})
	return tbl, nil
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
