package main

// Scenario llm: an LLM provider's tokens-per-minute quota (issue 24,
// docs/performance.md "LLM token quota (scenario llm)"). Each row gets its
// own mock provider (internal/testprovider, proxybench re-executed as
// "llm-origin") enforcing 500 requests and 200,000 tokens a minute as
// OpenAI documents its limits. Clients offer twice the token quota for
// --llm-duration, request sizes drawn from a heavy-tailed (lognormal)
// distribution with a fixed seed, 20% urgent interactive requests
// (Priority u=1, streamed) and 80% batch (u=6, JSON). Rows, side by side
// and from the same instant: three proxyd replicas sharing the quotas
// through a real redis-server, one proxyd with the same configuration on
// its memory store, one proxyd with a requests-only quota tuned for the
// average request, and direct clients retrying as the OpenAI and
// Anthropic SDKs do. A row whose proxyd refuses its configuration (exit
// 2) is reported as not run with proxyd's own message; the others still
// run.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/internal/cost"
	"github.com/proxyd/proxyd/internal/testprovider"
)

// llmStatsPath answers the llm origin's record (JSON); requests to it go
// to no provider.
const llmStatsPath = "/__proxybench/llm"

// sizeDist is a lognormal distribution of request sizes in tokens (the
// estimate a provider charges at admission: prompt plus max_tokens),
// clipped to [min, max]: most requests are a few hundred tokens, a few
// are tens of thousands.
type sizeDist struct {
	median float64 // e^µ
	sigma  float64 // σ of the underlying normal
	min    int
	max    int
}

// draw is one size.
func (d sizeDist) draw(r *rand.Rand) int {
	x := d.median * math.Exp(d.sigma*r.NormFloat64())
	return int(math.Round(min(max(x, float64(d.min)), float64(d.max))))
}

// phi is the standard normal distribution function.
func phi(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// mean is the clipped distribution's mean: min·P(X < min) + max·P(X > max)
// + E[X; min ≤ X ≤ max], the last e^(µ+σ²/2)·(Φ(β−σ) − Φ(α−σ)) for the
// bounds' standard scores α and β.
func (d sizeDist) mean() float64 {
	mu := math.Log(d.median)
	a := (math.Log(float64(d.min)) - mu) / d.sigma
	b := (math.Log(float64(d.max)) - mu) / d.sigma
	return float64(d.min)*phi(a) + float64(d.max)*(1-phi(b)) +
		math.Exp(mu+d.sigma*d.sigma/2)*(phi(b-d.sigma)-phi(a-d.sigma))
}

// llmMinPrompt is the smallest prompt in tokens: the request's JSON
// around the message content takes about 40 (160 bytes).
const llmMinPrompt = 45

// llmShape splits a request of size tokens into max_tokens and the
// prompt (a quarter of it the most the answer may use, as batch jobs
// set it), and picks the answer's actual completion: a share f (0.25 to
// 1) of max_tokens, so the estimate is never below the usage and proxyd
// gives back the difference.
func llmShape(size int, f float64) (maxTokens, prompt, completion int) {
	maxTokens = max(1, min(size/4, size-llmMinPrompt))
	prompt = size - maxTokens
	completion = int(math.Round(float64(maxTokens) * f))
	return maxTokens, prompt, completion
}

// llmBody is the chat request: prompt tokens of content (four bytes
// each, the body's length in bytes / 4 being the prompt's estimate),
// max_tokens, and the mock's mock_completion_tokens; streamed requests
// ask for the usage in the last event (stream_options.include_usage).
func llmBody(maxTokens, prompt, completion int, stream bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"model":"pb","max_tokens":%d,"mock_completion_tokens":%d,`, maxTokens, completion)
	if stream {
		b.WriteString(`"stream":true,"stream_options":{"include_usage":true},`)
	}
	b.WriteString(`"messages":[{"role":"user","content":"`)
	const tail = `"}]}`
	if n := 4*prompt - b.Len() - len(tail); n > 0 {
		const words = "lorem ipsum dolor sit amet "
		for n > 0 {
			w := words[:min(n, len(words))]
			b.WriteString(w)
			n -= len(w)
		}
	}
	b.WriteString(tail)
	return b.Bytes()
}

// llmReq is one request of the plan.
type llmReq struct {
	at     time.Duration // after the load's start
	urgent bool          // Priority u=1 and streamed; else u=6, JSON
	size   int           // the size drawn
	est    int64         // the estimate: len(body)/4 + max_tokens (cost.Estimate)
	actual int64         // the usage the provider will report
	body   []byte
}

// llmOpts shape the llm scenario.
type llmOpts struct {
	rpm, tpm int           // the provider's limits per per
	per      time.Duration // their window
	load     float64       // offered estimate tokens, as a multiple of tpm
	urgentP  float64       // share of requests that are urgent
	sizes    sizeDist
	duration time.Duration
	replicas int
	seed     uint64
}

func defaultLLMOpts() llmOpts {
	return llmOpts{rpm: 500, tpm: 200000, per: time.Minute, load: 2, urgentP: 0.2,
		sizes: sizeDist{median: 400, sigma: 1.4, min: 50, max: 20000}, duration: 3 * time.Minute, replicas: 3, seed: 24}
}

// rate is the requests per second offered: load × tpm per window, over
// the mean size.
func (o llmOpts) rate() float64 {
	return o.load * float64(o.tpm) / o.per.Seconds() / o.sizes.mean()
}

// makeLLMPlan draws the run's requests: Poisson arrivals at o.rate() for
// o.duration, each urgent with probability o.urgentP, its size from
// o.sizes; the same seed gives the same plan, which every row is offered.
func makeLLMPlan(o llmOpts) []llmReq {
	r := rand.New(rand.NewPCG(o.seed, 0x11a))
	rate := o.rate()
	var plan []llmReq
	at := time.Duration(0)
	for {
		at += time.Duration(r.ExpFloat64() / rate * float64(time.Second))
		if at >= o.duration {
			return plan
		}
		urgent := r.Float64() < o.urgentP
		size := o.sizes.draw(r)
		mt, prompt, completion := llmShape(size, 0.25+0.75*r.Float64())
		body := llmBody(mt, prompt, completion, urgent)
		est, _ := cost.Estimate(body)
		plan = append(plan, llmReq{at: at, urgent: urgent, size: size, est: est, actual: int64(len(body)/4 + completion), body: body})
	}
}

// meanActual is the mean usage of a request of the distribution, as the
// provider bills it, from a fixed sample: what an operator who tunes a
// requests-only quota from the usage dashboard divides the quota by.
func (o llmOpts) meanActual() float64 {
	r := rand.New(rand.NewPCG(o.seed, 0xa7e))
	const n = 200000
	var sum float64
	for range n {
		_, prompt, completion := llmShape(o.sizes.draw(r), 0.25+0.75*r.Float64())
		sum += float64(prompt + completion)
	}
	return sum / n
}

// llmEvent is one request as the origin saw it.
type llmEvent struct {
	At     int64 `json:"at"` // arrival, Unix nanoseconds
	Status int   `json:"status"`
	Tokens int64 `json:"tokens,omitempty"` // the usage its answer reported (2xx)
}

// llmOriginStats is the origin's record: every request, and the mock's
// own counters.
type llmOriginStats struct {
	Events   []llmEvent         `json:"events"`
	Provider testprovider.Stats `json:"provider"`
}

// llmOrigin is the mock provider with a record of each request: when it
// arrived, its status, and the usage its answer carried, read from the
// answer as it is written (internal/cost's Meter, JSON and server-sent
// events alike).
type llmOrigin struct {
	p   *testprovider.Provider
	now func() time.Time
	mu  sync.Mutex
	ev  []llmEvent
}

func (o *llmOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == llmStatsPath {
		o.mu.Lock()
		st := llmOriginStats{Events: slices.Clone(o.ev), Provider: o.p.Stats()}
		o.mu.Unlock()
		if st.Events == nil {
			st.Events = []llmEvent{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	at := o.now()
	mw := &meterWriter{ResponseWriter: w}
	o.p.ServeHTTP(mw, r)
	ev := llmEvent{At: at.UnixNano(), Status: mw.status}
	if mw.status/100 == 2 && mw.m != nil {
		ev.Tokens, _ = mw.m.Usage()
	}
	o.mu.Lock()
	o.ev = append(o.ev, ev)
	o.mu.Unlock()
}

// meterWriter passes an answer through and feeds its body to a usage
// Meter; Flush and Unwrap keep a stream flushed event by event.
type meterWriter struct {
	http.ResponseWriter
	status int
	m      *cost.Meter
}

func (w *meterWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.m = cost.NewMeter(w.Header().Get("Content-Type"), cost.Builtin())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *meterWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	_, _ = w.m.Write(p[:n])
	return n, err
}

func (w *meterWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *meterWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveLLMOrigin runs the hidden subcommand "llm-origin" until SIGTERM,
// SIGINT or --lifetime.
func serveLLMOrigin(args []string) int {
	fs := flag.NewFlagSet("llm-origin", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	rpm := fs.Int("rpm", 500, "requests per window")
	tpm := fs.Int("tpm", 200000, "tokens per window")
	per := fs.Duration("per", time.Minute, "the window")
	lifetime := fs.Duration("lifetime", 30*time.Minute, "exit after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *rpm < 0 || *tpm < 0 || *per <= 0 {
		fmt.Fprintln(os.Stderr, "llm-origin: --rpm and --tpm must not be negative, --per must be positive")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{
		Handler:           &llmOrigin{p: testprovider.New(testprovider.Config{RPM: *rpm, TPM: *tpm, Period: *per}), now: time.Now},
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

func (e *env) startLLMOrigin(o llmOpts) (*server, error) {
	return e.startOrigin("llm-origin", func(addr string) []string {
		return []string{"--listen", addr, "--rpm", strconv.Itoa(o.rpm), "--tpm", strconv.Itoa(o.tpm), "--per", o.per.String()}
	})
}

func (e *env) llmOriginStats(addr string) (llmOriginStats, error) {
	var st llmOriginStats
	return st, e.getStats(addr, llmStatsPath, &st)
}

// llmAccount is the origin's record in whole windows.
type llmAccount struct {
	windows int     // whole windows: ended before the load did
	tokens  []int64 // usage of 2xx answers, by the window of their arrival
	ok      []int   // 2xx answers, by window
	r429    int     // every 429, the tail after the load included
}

// accountLLM sums the origin's events into the whole windows of length
// per from the load's start (the windows that ended before the load did:
// past them arrivals thin out and would understate the use).
func accountLLM(ev []llmEvent, start time.Time, per, duration time.Duration) llmAccount {
	n := max(0, int(duration/per))
	a := llmAccount{windows: n, tokens: make([]int64, n), ok: make([]int, n)}
	for _, e := range ev {
		if e.Status == http.StatusTooManyRequests {
			a.r429++
		}
		d := time.Unix(0, e.At).Sub(start)
		if e.Status/100 != 2 || d < 0 {
			continue
		}
		if i := int(d / per); i < n {
			a.tokens[i] += e.Tokens
			a.ok[i]++
		}
	}
	return a
}

// used is the whole windows' usage and its share of limit per window
// (NaN without a whole window).
func (a llmAccount) used(limit int) (int64, float64) {
	var sum int64
	for _, t := range a.tokens {
		sum += t
	}
	if a.windows == 0 || limit <= 0 {
		return sum, math.NaN()
	}
	return sum, float64(sum) / float64(int64(a.windows)*int64(limit))
}

// llmRec is what the client saw of one request of the plan.
type llmRec struct {
	status   int           // 0: no answer
	err      string        // why, when no answer
	canceled bool          // still outstanding at the end of the run
	end      time.Duration // when the body ended, after the load's start
	latency  time.Duration // from the scheduled send to the end of the body (retries included)
	queue    time.Duration // proxyd's Server-Timing queue;dur
	hasQueue bool
}

// llmLoad is one row's load: the plan, sent open loop from start to
// target through client(i) for request i.
type llmLoad struct {
	plan    []llmReq
	target  string
	client  func(i int) *http.Client
	start   time.Time
	timeout time.Duration // of each request, retries included
	grace   time.Duration // after the last arrival, before the rest is canceled
}

// runLLMLoad sends the plan on its schedule, each request on its own
// goroutine whatever happened to the ones before, and returns what each
// got, with how late each left (the generator's lag).
func runLLMLoad(ctx context.Context, l llmLoad) ([]llmRec, loadgen.Histogram) {
	recs := make([]llmRec, len(l.plan))
	var lag loadgen.Histogram
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := func() bool { return runCtx.Err() != nil }
	var wg sync.WaitGroup
	for i := range l.plan {
		due := l.start.Add(l.plan[i].at)
		if err := sleepCtx(ctx, time.Until(due)); err != nil {
			break
		}
		lag.Record(time.Since(due))
		wg.Go(func() { recs[i] = l.do(runCtx, i, due, stopped) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(l.grace)
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	cancel()
	<-done
	return recs, lag
}

func (l *llmLoad) do(ctx context.Context, i int, due time.Time, stopped func() bool) (rec llmRec) {
	q := &l.plan[i]
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.target, bytes.NewReader(q.body))
	if err != nil {
		rec.err = err.Error()
		return rec
	}
	req.Header.Set("Content-Type", "application/json")
	if q.urgent {
		req.Header.Set("Priority", "u=1")
	} else {
		req.Header.Set("Priority", "u=6")
	}
	resp, err := l.client(i).Do(req)
	if err == nil {
		rec.status = resp.StatusCode
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	rec.end = time.Since(l.start)
	rec.latency = time.Since(due)
	if err != nil {
		if stopped() {
			rec.canceled = true
		}
		rec.status, rec.err = 0, err.Error()
		return rec
	}
	rec.queue, rec.hasQueue = loadgen.ServerTimingDur(resp.Header.Values("Server-Timing"), "queue")
	return rec
}

// llmClassSum is one class of one row.
type llmClassSum struct {
	offered, ok, canceled int
	status                map[int]int
	firstErr              string
	latency, queue        loadgen.Histogram // of 2xx answers
	// okWhole and tokensWhole are the 2xx answers that ended within the
	// whole windows, and their usage: the throughput.
	okWhole     int
	tokensWhole int64
}

// failed is what the client did not get: every request not answered
// 2xx (after the retries, for the SDK row), the canceled included.
func (c *llmClassSum) failed() int { return c.offered - c.ok }

// llmSummary is one row's figures.
type llmSummary struct {
	acct          llmAccount
	used          int64
	share         float64 // of the tpm over the whole windows
	urgent, batch llmClassSum
	lagP99        time.Duration
}

// summarizeLLM reads one row's records against the plan and its origin's
// account; whole is the length of the account's whole windows.
func summarizeLLM(plan []llmReq, recs []llmRec, acct llmAccount, tpm int, whole time.Duration) llmSummary {
	s := llmSummary{acct: acct}
	s.used, s.share = acct.used(tpm)
	s.urgent.status, s.batch.status = map[int]int{}, map[int]int{}
	for i, r := range recs {
		c := &s.batch
		if plan[i].urgent {
			c = &s.urgent
		}
		c.offered++
		if r.status != 0 {
			c.status[r.status]++
		}
		if r.canceled {
			c.canceled++
		}
		if r.err != "" && c.firstErr == "" && !r.canceled {
			c.firstErr = r.err
		}
		if r.status/100 != 2 {
			continue
		}
		c.ok++
		c.latency.Record(r.latency)
		if r.hasQueue {
			c.queue.Record(r.queue)
		}
		if r.end < whole {
			c.okWhole++
			c.tokensWhole += plan[i].actual
		}
	}
	return s
}

// llmRow is one setup of the scenario.
type llmRow struct {
	name     string
	short    string // for the verdicts
	kind     string // "redis", "memory", "requests", "sdk"
	replicas int    // proxyd processes (redis: o.replicas)
	quota    int    // requests: the rule's quota per window
}

// llmResult is one row's outcome: not run (why), or its figures.
type llmResult struct {
	row    llmRow
	notRun string
	sum    llmSummary
	lag    loadgen.Histogram
}

// notRunError is a row that could not be set up for a reason that does
// not fail the run: proxyd refused the configuration (exit 2), or a
// program is missing.
type notRunError struct{ msg string }

func (e *notRunError) Error() string { return e.msg }

// llmQuota is one entry of a hosts rule's quotas.
type llmQuota struct {
	limit  int
	per    time.Duration
	tokens bool
}

// llmProxyd is a proxyd configuration of the scenario: one hosts rule
// for the origin, its quotas, its cost block, and the store.
type llmProxyd struct {
	origin      string
	quotas      []llmQuota
	cost        bool   // cost: {estimate: body}
	redisURL    string // "": the memory store
	redisPrefix string
}

// yaml writes the configuration for listeners addr and admin.
func (c llmProxyd) yaml(addr, admin string, pool int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by proxybench (scenario llm).\nlisten: %s\nadmin:\n  listen: %s\n", addr, admin)
	b.WriteString("limits:\n  rate: 0\n  concurrency: 0\n")
	if c.redisURL != "" {
		fmt.Fprintf(&b, "  store: redis\nredis:\n  url: %q\n  key_prefix: %s\n", c.redisURL, c.redisPrefix)
	}
	fmt.Fprintf(&b, "upstream:\n  max_idle_conns_per_host: %d\n", pool)
	fmt.Fprintf(&b, "hosts:\n  - match: %q\n    quotas:\n", c.origin)
	for _, q := range c.quotas {
		if q.tokens {
			fmt.Fprintf(&b, "      - {limit: %d, per: %s, unit: tokens}\n", q.limit, q.per)
		} else {
			fmt.Fprintf(&b, "      - {limit: %d, per: %s}\n", q.limit, q.per)
		}
	}
	if c.cost {
		b.WriteString("    cost:\n      estimate: body\n")
	}
	b.WriteString("egress:\n  allow: [127.0.0.1]\n  connect_ports: []\n")
	b.WriteString("log:\n  level: warn\n")
	return b.String()
}

// startLLMProxyd starts proxyd on c. A proxyd that exits 2 (its
// configuration refused) is a *notRunError carrying its message.
func (e *env) startLLMProxyd(c llmProxyd) (*proxydServer, error) {
	dir, err := e.subdir("proxyd")
	if err != nil {
		return nil, err
	}
	var ports [2]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	s := &proxydServer{addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), admin: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	conf := filepath.Join(dir, "proxyd.yaml")
	if err := os.WriteFile(conf, []byte(c.yaml(s.addr, s.admin, e.pool)), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("proxyd", []string{e.proxyd, "--config", conf})
	if err != nil {
		return nil, err
	}
	s.proc = p
	if err := p.waitHTTP("http://"+s.admin+"/healthz", 15*time.Second); err != nil {
		p.stop()
		if p.cmd.ProcessState != nil && p.cmd.ProcessState.ExitCode() == 2 {
			return nil, &notRunError{msg: lastLines(p.out.String(), 4)}
		}
		return nil, err
	}
	if err := p.waitTCP(s.addr, 5*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return s, nil
}

// lastLines is the last n non-empty lines of out, joined by "; ".
func lastLines(out string, n int) string {
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "exited 2 (configuration refused) without a message"
	}
	return strings.Join(lines[max(0, len(lines)-n):], "; ")
}

// llmSetup is a row ready to run: its origin, and the proxies its
// requests go through (none: direct).
type llmSetup struct {
	origin  *server
	proxies []*url.URL
	retries int
	stops   []func()
}

func (s *llmSetup) stop() {
	for _, f := range slices.Backward(s.stops) {
		f()
	}
	s.stops = nil
}

// setupLLMRow starts a row's origin, and its redis-server and proxyd
// replicas if any.
func (e *env) setupLLMRow(ctx context.Context, o llmOpts, row llmRow) (*llmSetup, error) {
	s := &llmSetup{}
	var err error
	if s.origin, err = e.startLLMOrigin(o); err != nil {
		return s, err
	}
	s.stops = append(s.stops, s.origin.stop)
	conf := llmProxyd{origin: s.origin.addr,
		quotas: []llmQuota{{limit: o.rpm, per: o.per}, {limit: o.tpm, per: o.per, tokens: true}}, cost: true}
	switch row.kind {
	case "sdk":
		s.retries = 2
		return s, nil
	case "requests":
		conf.quotas, conf.cost = []llmQuota{{limit: row.quota, per: o.per}}, false
	case "redis":
		rd, _, err := e.startRedis(ctx)
		if errors.Is(err, errNoRedis) {
			return s, &notRunError{msg: err.Error()}
		}
		if err != nil {
			return s, err
		}
		s.stops = append(s.stops, rd.stop)
		conf.redisURL, conf.redisPrefix = "redis://"+rd.addr+"/0", "llm"
	}
	var fleet []*proxydServer
	for i := range row.replicas {
		pd, err := e.startLLMProxyd(conf)
		if err != nil {
			if row.replicas > 1 {
				err = fmt.Errorf("replica %d: %w", i+1, err)
			}
			return s, err
		}
		s.stops = append(s.stops, pd.stop)
		fleet = append(fleet, pd)
		pu, _ := url.Parse("http://" + pd.addr)
		s.proxies = append(s.proxies, pu)
	}
	if row.kind == "redis" {
		if err := e.waitReplicas(ctx, fleet, 10*time.Second); err != nil {
			return s, err
		}
	}
	return s, nil
}

// clients are a row's HTTP clients: request i goes through proxy i mod
// len(proxies) (the replicas in turn), or straight to the origin with
// the SDKs' retries.
func (s *llmSetup) clients(seed uint64) (func(i int) *http.Client, func()) {
	var cs []*http.Client
	var trs []*http.Transport
	if len(s.proxies) == 0 {
		tr := loadgen.NewTransport(nil, 256)
		trs = append(trs, tr)
		var rt http.RoundTripper = tr
		if s.retries > 0 {
			rt = &sdkRetry{base: tr, maxRetries: s.retries, rng: rand.New(rand.NewPCG(seed, 0x5d4))}
		}
		cs = append(cs, &http.Client{Transport: rt})
	}
	for _, p := range s.proxies {
		tr := loadgen.NewTransport(p, 256)
		trs = append(trs, tr)
		cs = append(cs, &http.Client{Transport: tr})
	}
	return func(i int) *http.Client { return cs[i%len(cs)] }, func() {
		for _, tr := range trs {
			tr.CloseIdleConnections()
		}
	}
}

// llmRows are the scenario's setups; tuned is the requests-only quota.
func llmRows(o llmOpts, tuned int) []llmRow {
	q := fmt.Sprintf("quotas %d/%v + %d tokens/%v, cost estimate: body", o.rpm, o.per, o.tpm, o.per)
	return []llmRow{
		{name: fmt.Sprintf("proxyd ×%d on redis, %s", o.replicas, q), short: fmt.Sprintf("proxyd ×%d on redis", o.replicas), kind: "redis", replicas: o.replicas},
		{name: "proxyd ×1 (memory store), " + q, short: "proxyd ×1 (memory store)", kind: "memory", replicas: 1},
		{name: fmt.Sprintf("proxyd, requests-only quota %d/%v (tuned for the average request)", tuned, o.per), kind: "requests", replicas: 1, quota: tuned},
		{name: "direct, SDK retries (2, back-off 0.5 s·2^n, retry-after)", kind: "sdk"},
	}
}

func runLLM(ctx context.Context, e *env, o llmOpts) error {
	plan := makeLLMPlan(o)
	meanAct := o.meanActual()
	tuned := max(1, int(math.Round(float64(o.tpm)/meanAct)))
	rows := llmRows(o, tuned)
	e.logf("llm: %d rows side by side, provider %d requests + %d tokens per %v, %d requests offered (%.2f/s, %.0f%% urgent) for %v",
		len(rows), o.rpm, o.tpm, o.per, len(plan), o.rate(), o.urgentP*100, o.duration)

	results := make([]llmResult, len(rows))
	setups := make([]*llmSetup, len(rows))
	errs := make([]error, len(rows))
	var wg sync.WaitGroup
	for i, row := range rows {
		results[i].row = row
		wg.Go(func() { setups[i], errs[i] = e.setupLLMRow(ctx, o, row) })
	}
	wg.Wait()
	defer func() {
		for _, s := range setups {
			if s != nil {
				s.stop()
			}
		}
	}()
	for i, err := range errs {
		var nr *notRunError
		switch {
		case errors.As(err, &nr):
			results[i].notRun = nr.msg
			setups[i].stop()
			e.logf("llm: %s: not run: %s", rows[i].name, nr.msg)
		case err != nil:
			return fmt.Errorf("%s: %w", rows[i].name, err)
		}
	}

	// Every row starts at the same moment, so that they share the
	// machine alike.
	start := time.Now().Add(time.Second)
	whole := time.Duration(int(o.duration/o.per)) * o.per
	for i := range rows {
		if results[i].notRun != "" {
			continue
		}
		wg.Go(func() {
			client, closeIdle := setups[i].clients(o.seed + uint64(i))
			defer closeIdle()
			recs, lag := runLLMLoad(ctx, llmLoad{plan: plan, target: "http://" + setups[i].origin.addr + "/v1/chat/completions",
				client: client, start: start, timeout: 2*o.per + 10*time.Second, grace: o.per + 10*time.Second})
			st, err := e.llmOriginStats(setups[i].origin.addr)
			if err != nil {
				errs[i] = err
				return
			}
			results[i].sum = summarizeLLM(plan, recs, accountLLM(st.Events, start, o.per, o.duration), o.tpm, whole)
			results[i].lag = lag
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, err := range errs {
		if err != nil && results[i].notRun == "" {
			return fmt.Errorf("%s: %w", rows[i].name, err)
		}
	}
	e.rep.table(llmTable(o, plan, meanAct, results))
	for _, r := range results {
		for _, m := range llmMeasurements(o, r) {
			e.rep.emit(m)
		}
	}
	for _, v := range llmVerdicts(o, results) {
		e.rep.verdict(v)
	}
	return nil
}

// llmTable is the scenario's table: one line per row, not-run rows with
// their reason.
func llmTable(o llmOpts, plan []llmReq, meanAct float64, results []llmResult) *table {
	tbl := &table{
		title: fmt.Sprintf("Scenario llm: provider %d requests + %d tokens per %v (429 beyond), offered %.0f%% of its tokens (%.0f%% urgent u=1 streamed, the rest batch u=6), heavy-tailed sizes, open loop, %v",
			o.rpm, o.tpm, o.per, o.load*100, o.urgentP*100, o.duration),
		header: []string{"setup", "provider 429s", "tokens used (whole windows)", "urgent OK", "urgent queue p99 ms", "urgent p50 / p99 ms", "batch req/min", "batch tokens/min", "failed for the client"},
		right:  []bool{false, true, true, true, true, true, true, true, true},
	}
	for _, r := range results {
		if r.notRun != "" {
			tbl.add(r.row.name, "not run: "+r.notRun)
			continue
		}
		s := &r.sum
		mins := (time.Duration(s.acct.windows) * o.per).Minutes()
		qp99 := "–"
		if s.urgent.queue.Count() > 0 {
			qp99 = fmtNum(ms(s.urgent.queue.Quantile(0.99)))
		}
		tbl.add(r.row.name, fmt.Sprint(s.acct.r429),
			fmt.Sprintf("%.1f%% (%d/%d; by window %s)", s.share*100, s.used, int64(s.acct.windows)*int64(o.tpm), windowShares(s.acct, o.tpm)),
			fmt.Sprintf("%d / %d", s.urgent.ok, s.urgent.offered), qp99,
			fmtNum(ms(s.urgent.latency.Quantile(0.5)))+" / "+fmtNum(ms(s.urgent.latency.Quantile(0.99))),
			fmtNum(float64(s.batch.okWhole)/mins), fmtNum(float64(s.batch.tokensWhole)/mins),
			fmt.Sprintf("%d (%d canceled at the end)", s.urgent.failed()+s.batch.failed(), s.urgent.canceled+s.batch.canceled))
	}
	ps := planStats(plan)
	var lags []string
	for _, r := range results {
		if r.notRun == "" && r.lag.Count() > 0 {
			lags = append(lags, fmtNum(ms(r.lag.Quantile(0.99))))
		}
	}
	tbl.notes = append(tbl.notes,
		fmt.Sprintf("Each row has its own mock provider (internal/testprovider, proxybench re-executed): requests and tokens as buckets replenished continuously, a request charged len(body)/4 + max_tokens at admission and corrected to its usage when answered, 429 with retry-after beyond, x-ratelimit-* on every answer. All rows are offered the same plan (seed %d) from the same instant: %d requests, Poisson arrivals at %.2f/s, %d urgent (Priority u=1, stream with include_usage) and %d batch (u=6, JSON); sizes lognormal (median %.0f, σ %.1f) clipped to %d–%d tokens: p50 %d, p90 %d, p99 %d, %d at %d and %d at %d; estimates %.0f tokens/min offered (mean %.0f), usage a mean of %.0f (the answer uses 25–100%% of max_tokens, a quarter of the size).",
			o.seed, len(plan), o.rate(), ps.urgent, len(plan)-ps.urgent, o.sizes.median, o.sizes.sigma, o.sizes.min, o.sizes.max,
			ps.p50, ps.p90, ps.p99, ps.atMin, o.sizes.min, ps.atMax, o.sizes.max, float64(ps.est)/o.duration.Minutes(), o.sizes.mean(), meanAct),
		fmt.Sprintf("Tokens used: the usage the provider's 2xx answers reported (read from the answer, JSON or event stream), by the window of their arrival at the provider, over the windows of %v from the load's start that ended before it did, against %d per window; the provider starts with full buckets, so a client that spends as it arrives can pass 100%% in the first window. Provider 429s count the whole run, the tail included. proxyd rows: one hosts rule matching the provider, defaults otherwise (max_wait 30s, queue_size 10000), clients do not retry; with several replicas, request i goes to replica i mod %d. The requests-only quota is %d tokens over the mean usage of a request (%.0f). SDK row: OpenAI's and Anthropic's retry policy. Urgent queue wait is proxyd's Server-Timing queue;dur; latency is of 2xx answers, from the scheduled send to the end of the body (retries included). Batch req/min and tokens/min: 2xx answers that ended within the whole windows, and their usage. Failed: not answered 2xx (after the retries), or still outstanding %v after the last arrival (canceled).",
			o.per, o.tpm, o.replicas, o.tpm, meanAct, o.per+10*time.Second))
	if len(lags) > 0 {
		tbl.notes = append(tbl.notes, fmt.Sprintf("How late the generator sent requests against the plan, p99 ms by row that ran: %s (over 100 ms, the machine rather than the setup delayed the requests).", strings.Join(lags, ", ")))
	}
	return tbl
}

// windowShares is each whole window's usage as a share of limit:
// "101%, 96%, 98%".
func windowShares(a llmAccount, limit int) string {
	parts := make([]string, len(a.tokens))
	for i, t := range a.tokens {
		parts[i] = fmt.Sprintf("%.0f%%", float64(t)/float64(limit)*100)
	}
	return strings.Join(parts, ", ")
}

// llmPlanStats describes a plan for the report.
type llmPlanStats struct {
	urgent, p50, p90, p99, atMin, atMax int
	est, actual                         int64
}

func planStats(plan []llmReq) llmPlanStats {
	var s llmPlanStats
	sizes := make([]int, 0, len(plan))
	lo, hi := math.MaxInt, 0
	for _, q := range plan {
		sizes = append(sizes, q.size)
		lo, hi = min(lo, q.size), max(hi, q.size)
		s.est += q.est
		s.actual += q.actual
		if q.urgent {
			s.urgent++
		}
	}
	if len(sizes) == 0 {
		return s
	}
	slices.Sort(sizes)
	at := func(q float64) int { return sizes[min(len(sizes)-1, int(q*float64(len(sizes))))] }
	s.p50, s.p90, s.p99 = at(0.5), at(0.9), at(0.99)
	for _, n := range sizes {
		if n == lo {
			s.atMin++
		}
		if n == hi {
			s.atMax++
		}
	}
	return s
}

// llmMeasurements are a row's JSON lines, one per class.
func llmMeasurements(o llmOpts, r llmResult) []measurement {
	if r.notRun != "" {
		return []measurement{{Scenario: "llm", Kind: "run", Target: r.row.name, Limit: float64(o.tpm), FirstError: r.notRun, Values: map[string]float64{"not_run": 1}}}
	}
	s := &r.sum
	mins := (time.Duration(s.acct.windows) * o.per).Minutes()
	var out []measurement
	for _, c := range []struct {
		name string
		c    *llmClassSum
	}{{"urgent", &s.urgent}, {"batch", &s.batch}} {
		m := measurement{Scenario: "llm", Kind: "run", Target: r.row.name, Class: c.name, Limit: float64(o.tpm),
			OfferedRPS: round3(float64(c.c.offered) / o.duration.Seconds()), LagP99: ms(r.lag.Quantile(0.99)),
			Sent: int64(c.c.offered), OK: int64(c.c.ok), FirstError: c.c.firstErr, Canceled: int64(c.c.canceled), Status: map[int]int64{},
			Values: map[string]float64{"provider_429": float64(s.acct.r429), "tokens_used_fraction": round3(s.share), "whole_windows": float64(s.acct.windows),
				"tokens_used_whole_windows": float64(s.used), "failed": float64(c.c.failed()),
				"ok_per_min": round3(float64(c.c.okWhole) / mins), "tokens_per_min": round3(float64(c.c.tokensWhole) / mins)}}
		for k, v := range c.c.status {
			m.Status[k] = int64(v)
		}
		m.setLatency(&c.c.latency)
		if c.c.queue.Count() > 0 {
			m.Values["queue_p50_ms"] = ms(c.c.queue.Quantile(0.5))
			m.Values["queue_p99_ms"] = ms(c.c.queue.Quantile(0.99))
		}
		if r.row.quota > 0 {
			m.Values["proxyd_request_quota"] = float64(r.row.quota)
		}
		out = append(out, m)
	}
	return out
}

// llmVerdicts hold the token-quota rows to the goals: no 429
// from the provider and at least 90% of its tokens used.
func llmVerdicts(o llmOpts, results []llmResult) []verdict {
	var vs []verdict
	for _, r := range results {
		if r.row.kind != "redis" && r.row.kind != "memory" {
			continue
		}
		v := verdict{target: fmt.Sprintf("LLM tokens, %s with quotas %d/%v + %d tokens/%v: the provider answers no 429 and ≥ 90%% of its tokens are used", r.row.short, o.rpm, o.per, o.tpm, o.per)}
		if r.notRun != "" {
			v.skipped = "not run: " + r.notRun
		} else {
			v.met = r.sum.acct.r429 == 0 && r.sum.share >= 0.9
			v.measured = fmt.Sprintf("%d 429s, %.1f%% used", r.sum.acct.r429, r.sum.share*100)
		}
		vs = append(vs, v)
	}
	return vs
}
