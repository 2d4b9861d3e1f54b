package main

// Scenario quota: a per-minute quota as providers state it (issue 23,
// docs/performance.md "Per-window quota (scenario quota)"). An origin
// enforces limit requests per fixed window and answers 429 with
// Retry-After beyond it; clients of mixed priority offer twice that, and
// an "outside" client that does not go through any proxy spends part of
// the same quota. Rows, run side by side and each against its own fresh
// origin: proxyd with hosts[].quotas, direct clients retrying as the
// OpenAI and Anthropic SDKs do, and nginx limit_req.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/bench/peers"
)

// quotaStatsPath answers the quota origin's counts (JSON); requests to it
// are not counted and use no quota.
const quotaStatsPath = "/__proxybench/quota"

// fixedWindow is the origin's quota: at most limit admissions per window
// of length per; window 0 starts at start, or at the first request when
// start is zero, so each origin starts with a fresh window. Not safe for
// concurrent use.
type fixedWindow struct {
	limit int
	per   time.Duration
	start time.Time // zero: set by the first request
	idx   int64     // the current window
	count int       // admitted in it
	// ok and rejected count answers by window index.
	ok, rejected []int
}

// take decides one request arriving at now: admitted or not, what is left
// of the window after it, and the time until the window ends.
func (w *fixedWindow) take(now time.Time) (admitted bool, remaining int, reset time.Duration) {
	if w.start.IsZero() {
		w.start = now
	}
	el := max(now.Sub(w.start), 0)
	idx := int64(el / w.per)
	if idx != w.idx {
		w.idx, w.count = idx, 0
	}
	for int64(len(w.ok)) <= idx {
		w.ok = append(w.ok, 0)
		w.rejected = append(w.rejected, 0)
	}
	reset = w.start.Add(time.Duration(idx+1) * w.per).Sub(now)
	if w.count >= w.limit {
		w.rejected[idx]++
		return false, 0, reset
	}
	w.count++
	w.ok[idx]++
	return true, w.limit - w.count, reset
}

// retryAfterSeconds is Retry-After's delay-seconds (RFC 9110, 10.2.3) for
// a reset: rounded up, at least 1.
func retryAfterSeconds(reset time.Duration) int {
	return max(1, int(math.Ceil(reset.Seconds())))
}

// quotaStats is the origin's account, by window.
type quotaStats struct {
	Start    int64 `json:"start_unix_nano"` // 0 before the first request
	Per      int64 `json:"per_ns"`
	Limit    int   `json:"limit"`
	OK       []int `json:"ok"`
	Rejected []int `json:"rejected"`
}

// quotaOrigin serves the fixed-window quota; with headers, every answer
// carries OpenAI's x-ratelimit-{limit,remaining,reset}-requests.
type quotaOrigin struct {
	mu      sync.Mutex
	w       fixedWindow
	headers bool
	now     func() time.Time
}

func (o *quotaOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == quotaStatsPath {
		o.mu.Lock()
		st := quotaStats{Per: int64(o.w.per), Limit: o.w.limit, OK: append([]int{}, o.w.ok...), Rejected: append([]int{}, o.w.rejected...)}
		if !o.w.start.IsZero() {
			st.Start = o.w.start.UnixNano()
		}
		o.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	o.mu.Lock()
	ok, rem, reset := o.w.take(o.now())
	headers, limit := o.headers, o.w.limit
	o.mu.Unlock()
	h := w.Header()
	if headers {
		h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(limit))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(rem))
		h.Set("X-Ratelimit-Reset-Requests", reset.Round(time.Millisecond).String()) // "59.5s", "1m0s", "12ms", as OpenAI writes them
	}
	if !ok {
		body := []byte(`{"error":{"type":"rate_limit_exceeded","message":"requests per minute exceeded"}}`)
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(reset)))
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(body)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(upstreamBody)))
	_, _ = w.Write(upstreamBody)
}

// serveQuotaOrigin runs the hidden subcommand "quota-origin" until
// SIGTERM, SIGINT or --lifetime.
func serveQuotaOrigin(args []string) int {
	fs := flag.NewFlagSet("quota-origin", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	limit := fs.Int("limit", 600, "requests per window")
	per := fs.Duration("per", time.Minute, "the window")
	headers := fs.Bool("headers", false, "send x-ratelimit-{limit,remaining,reset}-requests on every answer")
	start := fs.Int64("start", 0, "window 0's start, Unix nanoseconds (0: the first request)")
	lifetime := fs.Duration("lifetime", 30*time.Minute, "exit after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *limit < 1 || *per <= 0 {
		fmt.Fprintln(os.Stderr, "quota-origin: --limit and --per must be positive")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := fixedWindow{limit: *limit, per: *per}
	if *start != 0 {
		w.start = time.Unix(0, *start)
	}
	srv := &http.Server{
		Handler:           &quotaOrigin{w: w, headers: *headers, now: time.Now},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(*lifetime):
	}
	_ = srv.Close()
	return 0
}

// sdkRetry is a RoundTripper that retries as the OpenAI and Anthropic
// SDKs (Python and TypeScript, both generated by Stainless) do: up to
// maxRetries more attempts on 408, 409, 429, 5xx and connection errors;
// the wait is retry-after-ms or retry-after when 0 < it <= 60 s, else
// 0.5 s·2^n capped at 8 s, times a jitter in (0.75, 1].
type sdkRetry struct {
	base       http.RoundTripper
	maxRetries int
	mu         sync.Mutex
	rng        *rand.Rand
}

func (s *sdkRetry) jitter() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return 1 - 0.25*s.rng.Float64()
}

// sdkRetryDelay is the SDKs' wait before retry n (0 for the first), from
// the answer's headers (nil after a connection error) and a jitter factor.
func sdkRetryDelay(h http.Header, n int, jitter float64) time.Duration {
	if h != nil {
		if v, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && v > 0 && v <= 60000 {
			return time.Duration(v * float64(time.Millisecond))
		}
		if v, err := strconv.ParseFloat(h.Get("Retry-After"), 64); err == nil && v > 0 && v <= 60 {
			return time.Duration(v * float64(time.Second))
		}
		if t, err := http.ParseTime(h.Get("Retry-After")); err == nil {
			if d := time.Until(t); d > 0 && d <= time.Minute {
				return d
			}
		}
	}
	d := min(0.5*math.Pow(2, float64(n)), 8)
	return time.Duration(d * jitter * float64(time.Second))
}

func retryable(code int) bool {
	return code == 408 || code == 409 || code == 429 || code >= 500
}

func (s *sdkRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		resp, err := s.base.RoundTrip(req.Clone(req.Context()))
		if n >= s.maxRetries || (err == nil && !retryable(resp.StatusCode)) || req.Context().Err() != nil {
			return resp, err
		}
		var h http.Header
		if err == nil {
			h = resp.Header
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		t := time.NewTimer(sdkRetryDelay(h, n, s.jitter()))
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-t.C:
		}
	}
}

// redirectRT sends every request to host instead (the outside client
// calls the origin itself whatever the row's URL).
type redirectRT struct {
	base http.RoundTripper
	host string
}

func (r redirectRT) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Host, req.Host = r.host, r.host
	return r.base.RoundTrip(req)
}

// quotaOpts shape the quota scenario.
type quotaOpts struct {
	limit    int           // the origin's quota per window
	per      time.Duration // its window
	offered  float64       // per second, urgent and batch together
	urgentP  float64       // share of offered that is urgent (u=1); the rest is batch (u=6)
	outside  float64       // the outside client, per second
	duration time.Duration
}

func defaultQuotaOpts() quotaOpts {
	return quotaOpts{limit: 600, per: time.Minute, offered: 20, urgentP: 0.2, outside: 1, duration: 3 * time.Minute}
}

// quotaRow is one setup of the scenario.
type quotaRow struct {
	name    string
	kind    string  // "proxyd", "sdk", "nginx"
	headers bool    // the origin sends x-ratelimit-*-requests
	quota   int     // proxyd: the hosts rule's quota per window; nginx: its rate per window
	rate    float64 // proxyd: the hosts rule's rate, 0 for none
}

// quotaPhase is how long before the load the origin's first window starts.
const quotaPhase = 500 * time.Millisecond

// quotaResult is what one row measured.
type quotaResult struct {
	row   quotaRow
	res   *loadgen.Result
	st    quotaStats
	start time.Time // the load's start
	err   error
}

func (e *env) startQuotaOrigin(o quotaOpts, headers bool, start time.Time) (*server, error) {
	return e.startOrigin("quota-origin", func(addr string) []string {
		args := []string{"--listen", addr, "--limit", strconv.Itoa(o.limit), "--per", o.per.String(), "--start", strconv.FormatInt(start.UnixNano(), 10)}
		if headers {
			args = append(args, "--headers")
		}
		return args
	})
}

// startOrigin re-executes proxybench as the origin cmd (quota-origin,
// llm-origin) on a free loopback port, with the flags args gives for its
// address, and waits until it listens.
func (e *env) startOrigin(cmd string, args func(addr string) []string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc(cmd, append([]string{e.self, cmd}, args(addr)...))
	if err != nil {
		return nil, err
	}
	if err := p.waitTCP(addr, 10*time.Second); err != nil {
		return nil, err
	}
	return &server{p, addr}, nil
}

func (e *env) quotaStats(addr string) (quotaStats, error) {
	var st quotaStats
	return st, e.getStats(addr, quotaStatsPath, &st)
}

// getStats decodes an origin's JSON counts at path into v.
func (e *env) getStats(addr, path string, v any) error {
	resp, err := e.ctl.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// runQuotaRow starts the row's origin and target, offers the load and
// reads the origin's counts.
func (e *env) runQuotaRow(ctx context.Context, o quotaOpts, row quotaRow, at time.Time) (r quotaResult) {
	r.row = row
	// The origin's window 0 starts half a second before the load: the
	// outside client's arrival i, at about at + i seconds, then falls in
	// window i/60 with half a second to spare either side (anchored at the
	// first request, the outside client's 61st arrival could land in
	// window 0 by a few milliseconds).
	up, err := e.startQuotaOrigin(o, row.headers, at.Add(-quotaPhase))
	if err != nil {
		r.err = err
		return r
	}
	defer up.stop()
	target := "http://" + up.addr + "/v1/chat/completions"
	var proxy *url.URL
	var retries int
	switch row.kind {
	case "proxyd":
		pd, err := e.startProxyd(proxydConf{Hosts: []proxydHost{{Match: up.addr, Rate: row.rate, Quotas: []proxydQuota{{Limit: row.quota, Per: o.per}}}}})
		if err != nil {
			r.err = err
			return r
		}
		defer pd.stop()
		proxy, _ = url.Parse("http://" + pd.addr)
	case "sdk":
		retries = 2
	case "nginx":
		rate := int(math.Round(float64(row.quota) / o.per.Seconds()))
		s, err := e.startPeer("nginx", "nginx.conf.tmpl", peers.Data{Upstream: up.addr, Rate: rate, Burst: nginxBurst})
		if err != nil {
			r.err = err
			return r
		}
		defer s.stop()
		target = "http://" + s.addr + "/v1/chat/completions"
	}
	client := func(u int) *http.Client {
		tr := loadgen.NewTransport(proxy, 256)
		var rt http.RoundTripper = tr
		if retries > 0 {
			rt = &sdkRetry{base: tr, maxRetries: retries, rng: rand.New(rand.NewPCG(uint64(u), uint64(at.UnixNano())))}
		}
		return &http.Client{Transport: rt}
	}
	outside := loadgen.NewTransport(nil, 4)
	defer outside.CloseIdleConnections()
	cls := []loadgen.Class{
		{Name: "urgent", Rate: o.offered * o.urgentP, Header: http.Header{"Priority": {"u=1"}}, Client: client(1)},
		{Name: "batch", Rate: o.offered * (1 - o.urgentP), Header: http.Header{"Priority": {"u=6"}}, Client: client(6)},
		{Name: "outside", Rate: o.outside, Client: &http.Client{Transport: redirectRT{base: outside, host: up.addr}}},
	}
	// Every row starts at the same moment, so that they share the
	// machine alike.
	if err := sleepCtx(ctx, time.Until(at)); err != nil {
		r.err = err
		return r
	}
	r.start = time.Now()
	r.res, r.err = loadgen.RunOpen(ctx, loadgen.Options{
		URL:            target,
		Duration:       o.duration,
		Timeout:        2*o.per + 10*time.Second, // two retries honouring a retry-after of up to a window each
		Grace:          o.per + 10*time.Second,
		MaxOutstanding: e.maxOutstanding(),
		Classes:        cls,
	})
	for _, c := range cls {
		if t, ok := c.Client.Transport.(*sdkRetry); ok {
			t.base.(*http.Transport).CloseIdleConnections()
		} else if t, ok := c.Client.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	}
	if r.err != nil {
		return r
	}
	r.st, r.err = e.quotaStats(up.addr)
	return r
}

// completeWindows is how many of the origin's windows ended before the
// load did (the first starts at the first request).
func completeWindows(st quotaStats, loadEnd time.Time) int {
	if st.Start == 0 || st.Per <= 0 {
		return 0
	}
	n := int(loadEnd.Sub(time.Unix(0, st.Start)) / time.Duration(st.Per))
	return max(0, min(n, len(st.OK)))
}

func runQuota(ctx context.Context, e *env, o quotaOpts) error {
	share := o.limit - int(math.Round(o.outside*o.per.Seconds())) // the quota less the outside client's use
	paced := float64(share) / o.per.Seconds()
	rows := []quotaRow{
		{name: fmt.Sprintf("proxyd, hosts quota %d/%v", share, o.per), kind: "proxyd", quota: share},
		{name: fmt.Sprintf("proxyd, hosts quota %d/%v, origin sends x-ratelimit-*", share, o.per), kind: "proxyd", headers: true, quota: share},
		{name: fmt.Sprintf("proxyd, hosts quota %d/%v (the whole quota), origin sends x-ratelimit-*", o.limit, o.per), kind: "proxyd", headers: true, quota: o.limit},
		{name: fmt.Sprintf("proxyd, hosts quota %d/%v + rate %g/s (paced)", share, o.per, paced), kind: "proxyd", quota: share, rate: paced},
		{name: "direct, SDK retries (2, back-off 0.5 s·2^n, retry-after)", kind: "sdk"},
		{name: "direct, SDK retries, origin sends x-ratelimit-*", kind: "sdk", headers: true},
	}
	if _, ok := e.peers["nginx"]; ok {
		rows = append(rows, quotaRow{name: fmt.Sprintf("nginx limit_req %d r/s (%d/%v)", share/int(o.per.Seconds()), share, o.per), kind: "nginx", quota: share})
	} else {
		e.rep.note("quota: no nginx limit_req row: nginx is not installed or not in --peers")
	}
	e.logf("quota: %d rows side by side, origin %d/%v fixed window, offered %.0f/s (%.0f%% u=1, the rest u=6) + outside %.0f/s, for %v (then up to %v for late answers)",
		len(rows), o.limit, o.per, o.offered, o.urgentP*100, o.outside, o.duration, o.per+10*time.Second)
	at := time.Now().Add(3 * time.Second) // every row's children started by then
	results := make([]quotaResult, len(rows))
	var wg sync.WaitGroup
	for i, row := range rows {
		wg.Go(func() { results[i] = e.runQuotaRow(ctx, o, row, at) })
	}
	wg.Wait()
	tbl := &table{
		title: fmt.Sprintf("Scenario quota: origin quota %d/%v (fixed window, 429 + retry-after beyond), offered %.0f/s (%.0f%% urgent u=1, the rest batch u=6) + an outside client at %.0f/s, open loop, %v",
			o.limit, o.per, o.offered, o.urgentP*100, o.outside, o.duration),
		header: []string{"setup", "origin 429s", "quota used (whole windows)", "answered OK", "urgent OK", "urgent p50 / p99 ms", "failed for the client", "outside: OK / 429"},
		right:  []bool{false, true, true, true, true, true, true, true},
	}
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.row.name, r.err)
		}
		loadEnd := r.start.Add(o.duration)
		nw := completeWindows(r.st, loadEnd)
		used, rejected := 0, 0
		for i := range r.st.OK {
			rejected += r.st.Rejected[i]
			if i < nw {
				used += r.st.OK[i]
			}
		}
		usedShare := math.NaN()
		if nw > 0 {
			usedShare = float64(used) / float64(nw*o.limit)
		}
		u, b, out := r.res.Class("urgent"), r.res.Class("batch"), r.res.Class("outside")
		failed := func(c *loadgen.ClassResult) int64 { return c.Sent + c.Overflow - c.OK }
		tbl.add(r.row.name, fmt.Sprint(rejected), fmt.Sprintf("%.1f%% (%d/%d, %d windows)", usedShare*100, used, nw*o.limit, nw),
			fmt.Sprintf("%d / %d", u.OK+b.OK, u.Sent+u.Overflow+b.Sent+b.Overflow), fmt.Sprintf("%d / %d", u.OK, u.Sent+u.Overflow),
			fmtNum(ms(u.Latency.Quantile(0.5)))+" / "+fmtNum(ms(u.Latency.Quantile(0.99))),
			fmt.Sprintf("%d (%d canceled at the end)", failed(u)+failed(b), u.Canceled+b.Canceled),
			fmt.Sprintf("%d / %d", out.OK, out.Status[429]))
		for _, c := range []*loadgen.ClassResult{u, b, out} {
			m := measurement{Scenario: "quota", Kind: "run", Target: r.row.name, Class: c.Name, Limit: float64(o.limit),
				OfferedRPS: round3(float64(c.Sent+c.Overflow) / o.duration.Seconds()), LagP99: ms(r.res.Lag.Quantile(0.99)),
				Values: map[string]float64{"origin_429": float64(rejected), "quota_used_fraction": round3(usedShare), "whole_windows": float64(nw),
					"origin_ok_whole_windows": float64(used), "failed": float64(failed(c)), "proxyd_quota": float64(r.row.quota)}}
			if r.row.headers {
				m.Values["origin_headers"] = 1
			}
			m.setClass(c)
			e.rep.emit(m)
		}
		if r.row.kind == "proxyd" && r.row.quota == share && !r.row.headers && r.row.rate == 0 {
			e.rep.verdict(verdict{target: fmt.Sprintf("Quota: through proxyd (hosts quota %d/%v) the origin answers no 429 and ≥ 95%% of its quota is used", share, o.per),
				met: rejected == 0 && usedShare >= 0.95, measured: fmt.Sprintf("%d 429s, %.1f%% used", rejected, usedShare*100)})
		}
	}
	tbl.notes = append(tbl.notes, fmt.Sprintf("Each row has its own origin (proxybench re-executed) whose window 0 starts %v before the load, so every row starts with a fresh quota; all rows run at the same time, from the same instant. Quota used is the origin's 2xx answers (proxied and outside together) in the windows that ended before the load did, over %d per window. Origin 429s count every window, the load's tail included. The outside client calls the origin directly at %.0f/s, no retries. proxyd: a hosts rule matching the origin with quotas [{limit, per: %v}] (the paced row adds the rule's rate, burst max(1, rate)), defaults otherwise (max_wait 30s, queue_size 10000); its clients do not retry. SDK rows: OpenAI's and Anthropic's retry policy (2 retries on 408/409/429/5xx; retry-after-ms or retry-after when at most 60 s, else 0.5 s·2^n up to 8 s × jitter 0.75–1). Latency is of 2xx answers, from the scheduled send (retries included). Failed: answered non-2xx after the retries, an error, or still outstanding %v after the last arrival (canceled).",
		quotaPhase, o.limit, o.outside, o.per, o.per+10*time.Second))
	e.rep.table(tbl)
	return nil
}
