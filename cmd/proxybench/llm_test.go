package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/cost"
	"github.com/proxyd/proxyd/internal/testprovider"
)

// The size distribution: a fixed seed gives the same draws; every draw
// is within the bounds; both bounds are hit (some 50-token requests,
// some 20,000-token ones); the tail is heavy (p99 more than 20 times the
// median); the sample mean agrees with the closed form the offered rate
// is computed from.
func TestLLMSizeDist(t *testing.T) {
	d := defaultLLMOpts().sizes
	draws := func(seed uint64) []int {
		r := rand.New(rand.NewPCG(seed, 1))
		out := make([]int, 200000)
		for i := range out {
			out[i] = d.draw(r)
		}
		return out
	}
	a := draws(7)
	if !slices.Equal(a, draws(7)) {
		t.Fatal("same seed, different draws")
	}
	var sum float64
	atMin, atMax := 0, 0
	for _, n := range a {
		if n < d.min || n > d.max {
			t.Fatalf("draw %d outside [%d, %d]", n, d.min, d.max)
		}
		atMin += b2i(n == d.min)
		atMax += b2i(n == d.max)
		sum += float64(n)
	}
	if atMin == 0 || atMax == 0 {
		t.Errorf("bounds not reached: %d at %d, %d at %d", atMin, d.min, atMax, d.max)
	}
	s := slices.Sorted(slices.Values(a))
	if p50, p99 := s[len(s)/2], s[len(s)*99/100]; p99 < 20*p50 || math.Abs(float64(p50)/d.median-1) > 0.03 {
		t.Errorf("p50 %d (median %.0f), p99 %d: not heavy-tailed as drawn", p50, d.median, p99)
	}
	if m, want := sum/float64(len(a)), d.mean(); math.Abs(m/want-1) > 0.02 {
		t.Errorf("sample mean %.1f, closed form %.1f", m, want)
	}
	// Without clipping the closed form is the lognormal's mean.
	wide := sizeDist{median: 100, sigma: 0.5, min: 1, max: 1 << 30}
	if got, want := wide.mean(), 100*math.Exp(0.125); math.Abs(got/want-1) > 1e-6 {
		t.Errorf("unclipped mean %.4f, want %.4f", got, want)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The plan: deterministic; arrivals sorted within the load; about 20%
// urgent; the estimate tokens offered about load × tpm a window; every
// body is the chat request it says: cost.Estimate (proxyd's pricing)
// gives exactly its size, the mock provider's usage is its actual, never
// above the estimate; urgent requests stream with the usage included.
func TestLLMPlan(t *testing.T) {
	o := defaultLLMOpts()
	plan := makeLLMPlan(o)
	again := makeLLMPlan(o)
	if len(plan) != len(again) {
		t.Fatalf("same seed: %d then %d requests", len(plan), len(again))
	}
	var est int64
	urgent := 0
	for i, q := range plan {
		if q.at != again[i].at || q.size != again[i].size || string(q.body) != string(again[i].body) {
			t.Fatalf("request %d differs between two plans of one seed", i)
		}
		if q.at < 0 || q.at >= o.duration || (i > 0 && q.at < plan[i-1].at) {
			t.Fatalf("request %d at %v: outside [0, %v) or out of order", i, q.at, o.duration)
		}
		if e, ok := cost.Estimate(q.body); !ok || e != q.est || q.est != int64(q.size) {
			t.Fatalf("request %d: size %d, est %d, cost.Estimate (%d, %v)", i, q.size, q.est, e, ok)
		}
		var b struct {
			MaxTokens  int64 `json:"max_tokens"`
			Completion int64 `json:"mock_completion_tokens"`
			Stream     bool  `json:"stream"`
			Opts       struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
			Messages []struct{ Role, Content string }
		}
		if err := json.Unmarshal(q.body, &b); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if q.actual != int64(len(q.body)/4)+b.Completion || q.actual > q.est || b.Completion > b.MaxTokens || len(b.Messages) != 1 {
			t.Fatalf("request %d: actual %d, est %d, body %+v", i, q.actual, q.est, b)
		}
		if b.Stream != q.urgent || b.Opts.IncludeUsage != q.urgent {
			t.Fatalf("request %d: urgent %v, stream %v include_usage %v", i, q.urgent, b.Stream, b.Opts.IncludeUsage)
		}
		est += q.est
		urgent += b2i(q.urgent)
	}
	offered := float64(est) / o.duration.Minutes()
	if want := o.load * float64(o.tpm); math.Abs(offered/want-1) > 0.15 {
		t.Errorf("offered %.0f estimate tokens a minute, want about %.0f", offered, want)
	}
	if share := float64(urgent) / float64(len(plan)); math.Abs(share-o.urgentP) > 0.05 {
		t.Errorf("urgent share %.3f, want about %.2f", share, o.urgentP)
	}
	// The requests-only quota is tuned on the mean usage, which is below
	// the mean estimate (answers use 25-100% of max_tokens).
	if m := o.meanActual(); m >= o.sizes.mean() || m < 0.8*o.sizes.mean() {
		t.Errorf("mean usage %.1f against mean size %.1f", m, o.sizes.mean())
	}
	// The smallest request still prices at its size.
	mt, prompt, completion := llmShape(o.sizes.min, 1)
	if e, _ := cost.Estimate(llmBody(mt, prompt, completion, true)); e != int64(o.sizes.min) {
		t.Errorf("a %d-token streamed request is priced %d", o.sizes.min, e)
	}
}

// accountLLM: 2xx answers and their usage by the window of their
// arrival, only windows that ended before the load did; 429s counted
// over the whole run.
func TestAccountLLM(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) int64 { return start.Add(d).UnixNano() }
	ev := []llmEvent{
		{At: at(0), Status: 200, Tokens: 100},
		{At: at(59*time.Second + 999*time.Millisecond), Status: 200, Tokens: 50},
		{At: at(30 * time.Second), Status: 429},
		{At: at(time.Minute), Status: 200, Tokens: 7}, // window 1
		{At: at(time.Minute + 1), Status: 503},        // not 2xx: not used
		{At: at(-time.Millisecond), Status: 200, Tokens: 1000},
		{At: at(2*time.Minute + 5*time.Second), Status: 200, Tokens: 9}, // window 2: the load ended in it
		{At: at(3 * time.Minute), Status: 429},                          // the tail
	}
	a := accountLLM(ev, start, time.Minute, 2*time.Minute+30*time.Second)
	if a.windows != 2 || !slices.Equal(a.tokens, []int64{150, 7}) || !slices.Equal(a.ok, []int{2, 1}) || a.r429 != 2 {
		t.Errorf("account %+v", a)
	}
	if used, share := a.used(100); used != 157 || share != 157.0/200 {
		t.Errorf("used %d, share %g", used, share)
	}
	if _, share := accountLLM(ev, start, time.Minute, 59*time.Second).used(100); !math.IsNaN(share) {
		t.Errorf("no whole window: share %g, want NaN", share)
	}
}

// signalClock is a fake clock that says when something starts waiting
// on it, so the test advances it only once the mock waits.
type signalClock struct {
	*clock.Fake
	scheduled chan time.Duration
}

func (c signalClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	tm := c.Fake.AfterFunc(d, f)
	c.scheduled <- d
	return tm
}

// The llm origin over a real socket on the mock's fake clock: it records
// each request's arrival, status and the usage its answer reported (JSON,
// and an event stream whose events still reach the client one by one
// through the recorder), and the mock's 429 beyond its tokens.
func TestLLMOriginRecords(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	clk := signalClock{Fake: clock.NewFake(t0), scheduled: make(chan time.Duration, 1)}
	o := &llmOrigin{p: testprovider.New(testprovider.Config{RPM: 10, TPM: 1000, Clock: clk, Events: 2, EventDelay: time.Second}), now: clk.Now}
	srv := httptest.NewServer(o)
	defer srv.Close()
	c := srv.Client()
	mt, prompt, completion := llmShape(600, 1)
	jsonBody, streamBody := llmBody(mt, prompt, completion, false), llmBody(mt, prompt, completion, true)
	actual := int64(len(jsonBody)/4 + completion)
	post := func(body []byte) *http.Response {
		t.Helper()
		resp, err := c.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	drain := func(resp *http.Response) string {
		t.Helper()
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if r := post(jsonBody); r.StatusCode != 200 || !strings.Contains(drain(r), `"total_tokens":600`) {
		t.Fatalf("first request: %d", r.StatusCode)
	}
	clk.Advance(time.Second)
	if r := post(jsonBody); r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second request (400 tokens left, 600 asked): %d, retry-after %q", r.StatusCode, r.Header.Get("Retry-After"))
	} else {
		drain(r)
	}
	clk.Advance(time.Minute)
	r := post(streamBody)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("streamed request: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	// The first event arrives while the mock waits on its clock before
	// the second: the recorder flushed it.
	br := bufio.NewReader(r.Body)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first event: %q, %v", line, err)
	}
	if d := <-clk.scheduled; d != time.Second {
		t.Fatalf("the mock waits %v, want 1s", d)
	}
	clk.Advance(time.Second)
	rest, err := io.ReadAll(br)
	r.Body.Close()
	if err != nil || !strings.Contains(string(rest), `"total_tokens":600`) || !strings.Contains(string(rest), "data: [DONE]") {
		t.Fatalf("rest of the stream (%v): %s", err, rest)
	}

	resp, err := c.Get(srv.URL + llmStatsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st llmOriginStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	want := []llmEvent{
		{At: t0.UnixNano(), Status: 200, Tokens: actual},
		{At: t0.Add(time.Second).UnixNano(), Status: 429},
		{At: t0.Add(time.Minute + time.Second).UnixNano(), Status: 200, Tokens: actual},
	}
	if !slices.Equal(st.Events, want) {
		t.Errorf("events %+v\nwant %+v", st.Events, want)
	}
	if p := st.Provider; p.Admitted != 2 || p.RejectedTokens != 1 || p.TokensUsed != 2*actual {
		t.Errorf("provider stats %+v", p)
	}
}

// chatServer answers by the request body's "do" field: "ok" (200 with
// proxyd's Server-Timing), "busy" (503), "hold" (until the client
// leaves); it keeps every body it read.
type chatServer struct {
	mu     sync.Mutex
	bodies []string
	held   chan struct{}
}

func (s *chatServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	var req struct{ Do string }
	_ = json.Unmarshal(b, &req)
	switch req.Do {
	case "ok":
		w.Header().Set("Server-Timing", "queue;dur=12.5, upstream;dur=1")
		_, _ = io.WriteString(w, `{"usage":{"total_tokens":3}}`)
	case "busy":
		w.WriteHeader(http.StatusServiceUnavailable)
	case "hold":
		s.held <- struct{}{}
		<-r.Context().Done()
	}
}

// closeWatch signals on closed when a response body is closed.
type closeWatch struct {
	base   http.RoundTripper
	closed chan string
}

type watchedBody struct {
	io.ReadCloser
	closed chan string
	url    string
}

func (b watchedBody) Close() error {
	err := b.ReadCloser.Close()
	b.closed <- b.url
	return err
}

func (c closeWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err == nil {
		resp.Body = watchedBody{resp.Body, c.closed, req.URL.String()}
	}
	return resp, err
}

// runLLMLoad over a real socket: each request's status and latency, the
// Server-Timing queue wait of 2xx answers, and a request still
// outstanding when the run is stopped counted as canceled, not failed
// with an error of its own.
func TestRunLLMLoad(t *testing.T) {
	cs := &chatServer{held: make(chan struct{}, 1)}
	srv := httptest.NewServer(cs)
	defer srv.Close()
	plan := []llmReq{
		{at: 0, urgent: true, body: []byte(`{"do":"hold"}`)},
		{at: time.Millisecond, urgent: true, body: []byte(`{"do":"ok"}`)},
		{at: 2 * time.Millisecond, body: []byte(`{"do":"busy"}`)},
		{at: 3 * time.Millisecond, body: []byte(`{"do":"ok"}`)},
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	closed := make(chan string, len(plan))
	client := &http.Client{Transport: closeWatch{tr, closed}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Stop the run once the held request is at the server and the
		// three others are answered and read.
		<-cs.held
		for range 3 {
			<-closed
		}
		cancel()
	}()
	start := time.Now()
	recs, lag := runLLMLoad(ctx, llmLoad{plan: plan, target: srv.URL + "/v1/chat/completions", client: func(int) *http.Client { return client },
		start: start, timeout: time.Minute, grace: time.Hour})
	if lag.Count() != 4 {
		t.Errorf("lag recorded for %d requests, want 4", lag.Count())
	}
	if r := recs[0]; !r.canceled || r.status != 0 {
		t.Errorf("held request: %+v, want canceled", r)
	}
	for _, i := range []int{1, 3} {
		if r := recs[i]; r.status != 200 || !r.hasQueue || r.queue != 12500*time.Microsecond || r.latency <= 0 || r.end < plan[i].at {
			t.Errorf("request %d: %+v", i, r)
		}
	}
	if r := recs[2]; r.status != 503 || r.canceled || r.hasQueue {
		t.Errorf("busy request: %+v", r)
	}
	s := summarizeLLM(plan, recs, llmAccount{}, 100, time.Hour)
	if s.urgent.offered != 2 || s.urgent.ok != 1 || s.urgent.canceled != 1 || s.urgent.failed() != 1 ||
		s.batch.offered != 2 || s.batch.ok != 1 || s.batch.failed() != 1 || s.batch.status[503] != 1 || s.urgent.queue.Count() != 1 {
		t.Errorf("summary urgent %+v batch %+v", s.urgent, s.batch)
	}

	// Everything answered: the run returns without waiting for its grace.
	recs, _ = runLLMLoad(context.Background(), llmLoad{plan: plan[1:2], target: srv.URL, client: func(int) *http.Client { return client },
		start: time.Now(), timeout: time.Minute, grace: time.Hour})
	if recs[0].status != 200 {
		t.Errorf("single request: %+v", recs[0])
	}
	<-closed
}

// The SDK row's client resends a POST's body on a retry: the provider
// answers 429 (retry-after-ms 1) to the first attempt and checks that the
// second carries the same body (sdkRetry sends clones of one request,
// which share its Body; the transport rewinds it with GetBody).
func TestLLMSDKRetryResendsBody(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After-Ms", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, "{}")
	}))
	defer srv.Close()
	client, closeIdle := (&llmSetup{retries: 2}).clients(1)
	defer closeIdle()
	mt, prompt, completion := llmShape(200, 1)
	body := llmBody(mt, prompt, completion, false)
	recs, _ := runLLMLoad(context.Background(), llmLoad{plan: []llmReq{{body: body}}, target: srv.URL, client: client,
		start: time.Now(), timeout: time.Minute, grace: time.Minute})
	mu.Lock()
	defer mu.Unlock()
	if recs[0].status != 200 || len(bodies) != 2 || bodies[0] != string(body) || bodies[1] != string(body) {
		t.Errorf("record %+v; the provider read %d bodies, the retry's %d bytes of %d", recs[0], len(bodies), len(bodies[len(bodies)-1]), len(body))
	}
}

// With several replicas, request i goes through replica i mod n: each
// "replica" here is a server that takes the proxied request itself.
func TestLLMClientsSpreadOverReplicas(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	var proxies []*url.URL
	for id := range 3 {
		p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, id)
			mu.Unlock()
		}))
		defer p.Close()
		u, _ := url.Parse(p.URL)
		proxies = append(proxies, u)
	}
	client, closeIdle := (&llmSetup{proxies: proxies}).clients(1)
	defer closeIdle()
	for i := range 6 {
		resp, err := client(i).Get("http://origin.invalid/v1/chat/completions")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if !slices.Equal(seen, []int{0, 1, 2, 0, 1, 2}) {
		t.Errorf("replicas in turn: %v", seen)
	}
}

// The proxyd configurations decode (as proxyd's YAML) to the hosts rule
// meant: the token rows' two quotas and cost block, the store; the
// requests-only one passes proxyd's validation as it stands.
func TestLLMProxydYAML(t *testing.T) {
	o := defaultLLMOpts()
	decode := func(c llmProxyd) config.Config {
		t.Helper()
		cfg := config.Default()
		if err := yaml.Unmarshal([]byte(c.yaml("127.0.0.1:1", "127.0.0.1:2", 64)), &cfg); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tok := llmProxyd{origin: "127.0.0.1:9", quotas: []llmQuota{{limit: o.rpm, per: o.per}, {limit: o.tpm, per: o.per, tokens: true}}, cost: true,
		redisURL: "redis://127.0.0.1:6379/0", redisPrefix: "llm"}
	cfg := decode(tok)
	if len(cfg.Hosts) != 1 {
		t.Fatalf("hosts %+v", cfg.Hosts)
	}
	h := cfg.Hosts[0]
	want := []config.Quota{{Limit: 500, Per: time.Minute}, {Limit: 200000, Per: time.Minute, Unit: config.QuotaTokens}}
	if h.Match != "127.0.0.1:9" || !slices.Equal(h.Quotas, want) || h.Cost == nil || h.Cost.Estimate != config.CostEstimateBody {
		t.Errorf("rule %+v (cost %+v)", h, h.Cost)
	}
	if cfg.Limits.Store != "redis" || cfg.Redis.URL != "redis://127.0.0.1:6379/0" || cfg.Redis.KeyPrefix != "llm" || cfg.Limits.Rate != 0 {
		t.Errorf("limits %+v, redis %+v", cfg.Limits, cfg.Redis)
	}
	req := llmProxyd{origin: "127.0.0.1:9", quotas: []llmQuota{{limit: 213, per: o.per}}}
	cfg = decode(req)
	if err := cfg.Validate(); err != nil {
		t.Errorf("requests-only configuration refused: %v", err)
	}
	if h := cfg.Hosts[0]; !slices.Equal(h.Quotas, []config.Quota{{Limit: 213, Per: time.Minute}}) || h.Cost != nil || cfg.Limits.Store == "redis" {
		t.Errorf("requests-only rule %+v, store %q", h, cfg.Limits.Store)
	}
}

// A proxyd that exits 2 (configuration refused) makes its row "not run"
// with proxyd's message; any other failure to start stays an error. The
// "proxyd" here is a script that exits as told, run as a real child.
func TestStartLLMProxydNotRun(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e := &env{dir: dir, pool: 4}
	e.proxyd = script("refuses", `echo "proxyd: hosts[0].quotas[1].unit: tokens needs hosts[0].cost (not built yet)" >&2; exit 2`)
	_, err := e.startLLMProxyd(llmProxyd{origin: "127.0.0.1:9"})
	var nr *notRunError
	if !errors.As(err, &nr) || nr.msg != "proxyd: hosts[0].quotas[1].unit: tokens needs hosts[0].cost (not built yet)" {
		t.Errorf("exit 2: %v (%T), want not run with proxyd's message", err, err)
	}
	e.proxyd = script("fails", `echo "listen: address already in use" >&2; exit 1`)
	_, err = e.startLLMProxyd(llmProxyd{origin: "127.0.0.1:9"})
	if err == nil || errors.As(err, &nr) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("exit 1: %v, want an error (not \"not run\") with the output", err)
	}
	if lastLines("\n a \n\nb\nc\n", 2) != "b; c" || !strings.Contains(lastLines("", 2), "without a message") {
		t.Errorf("lastLines: %q, %q", lastLines("\n a \n\nb\nc\n", 2), lastLines("", 2))
	}
}

// The report: a row that did not run says why in place of its figures
// and its verdict is "not measured"; a row that ran shows the provider's
// 429s, the tokens used over whole windows, urgent queue and latency, the
// batch throughput per minute and what failed for the client.
func TestLLMReport(t *testing.T) {
	o := defaultLLMOpts()
	o.duration = 2*time.Minute + 30*time.Second
	plan := []llmReq{
		{urgent: true, est: 100, actual: 80},
		{urgent: false, est: 1000, actual: 900},
		{urgent: false, est: 2000, actual: 1500},
		{urgent: false, est: 50, actual: 50},
	}
	recs := []llmRec{
		{status: 200, end: time.Second, latency: 40 * time.Millisecond, queue: 30 * time.Millisecond, hasQueue: true},
		{status: 200, end: 90 * time.Second, latency: time.Second},
		{status: 200, end: 2*time.Minute + 10*time.Second, latency: time.Second}, // after the whole windows
		{status: 503, end: 31 * time.Second, err: ""},
	}
	acct := llmAccount{windows: 2, tokens: []int64{190000, 170000}, ok: []int{100, 90}, r429: 0}
	sum := summarizeLLM(plan, recs, acct, o.tpm, 2*time.Minute)
	if sum.used != 360000 || sum.share != 0.9 || sum.batch.okWhole != 1 || sum.batch.tokensWhole != 900 || sum.batch.failed() != 1 {
		t.Fatalf("summary %+v", sum)
	}
	rows := llmRows(o, 213)
	results := []llmResult{
		{row: rows[0], notRun: "proxyd: hosts[0].quotas[1].unit: tokens needs hosts[0].cost (not built yet)"},
		{row: rows[1], sum: sum},
	}
	md := llmTable(o, makeLLMPlan(o), o.meanActual(), results).markdown()
	for _, want := range []string{
		"| proxyd ×3 on redis, quotas 500/1m0s + 200000 tokens/1m0s, cost estimate: body | not run: proxyd: hosts[0].quotas[1].unit: tokens needs hosts[0].cost (not built yet) |",
		"| 0 | 90.0% (360000/400000; by window 95%, 85%) | 1 / 1 | 30.0 | 40.0 / 40.0 | 0.50 | 450 | 1 (0 canceled at the end) |",
	} {
		if !strings.Contains(strings.Join(strings.Fields(md), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	vs := llmVerdicts(o, results)
	if len(vs) != 2 || !strings.HasPrefix(vs[0].skipped, "not run: proxyd: hosts[0]") || !strings.HasPrefix(vs[0].target, "LLM tokens, proxyd ×3 on redis with quotas 500/1m0s + 200000 tokens/1m0s:") || vs[1].skipped != "" || !vs[1].met || vs[1].measured != "0 429s, 90.0% used" {
		t.Errorf("verdicts %+v", vs)
	}
	results[1].sum.acct.r429 = 1
	if vs := llmVerdicts(o, results); vs[1].met {
		t.Errorf("a provider 429 met the goal: %+v", vs[1])
	}
	lines := llmMeasurements(o, results[0])
	if len(lines) != 1 || lines[0].Values["not_run"] != 1 || !strings.Contains(lines[0].FirstError, "not built yet") {
		t.Errorf("not-run measurement %+v", lines)
	}
	lines = llmMeasurements(o, results[1])
	if len(lines) != 2 || lines[0].Class != "urgent" || lines[0].Values["queue_p99_ms"] != 30 || lines[1].Values["tokens_per_min"] != 450 || lines[1].Status[503] != 1 {
		t.Errorf("measurements %+v", lines)
	}
}

// llm runs only when named, 70 s with --quick; under a window it is
// refused.
func TestParseFlagsLLM(t *testing.T) {
	o, err := parseFlagsQuiet(t, "--scenario", "llm", "--quick")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.scenarios, []string{"llm"}) || o.llm.duration != 70*time.Second {
		t.Errorf("scenarios %v, duration %v", o.scenarios, o.llm.duration)
	}
	if o, _ := parseFlagsQuiet(t); slices.Contains(o.scenarios, "llm") || o.llm.duration != 3*time.Minute {
		t.Errorf("all: %v, duration %v", o.scenarios, o.llm.duration)
	}
	if _, err := parseFlagsQuiet(t, "--scenario", "llm", "--llm-duration", "30s"); err == nil || !strings.Contains(err.Error(), "--llm-duration") {
		t.Errorf("--llm-duration 30s: %v", err)
	}
}
