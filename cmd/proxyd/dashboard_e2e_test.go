package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium (apt-get install chromium), or
// skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not found: the dashboard test drives a real headless Chromium (apt-get install chromium; .ci/run installs it)")
	return ""
}

// adminGet GETs an admin API path with the bearer token and decodes the
// JSON answer into v.
func adminGet(t *testing.T, p *proc, token, path string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// dashLimits is the part of GET /api/v1/limits the page shows.
type dashLimits struct {
	Rate        float64 `json:"rate"`
	Burst       int     `json:"burst"`
	Concurrency int     `json:"concurrency"`
}

// providerRow is a row of the page's "Provider limits" table.
type providerRow struct {
	Rule, Unit, Remaining, Limit, Reset, State string
}

// quotaRow is a row of the page's "Quotas" table: the cells, the width
// of its budget bar and its classes.
type quotaRow struct {
	Used, Limit, Debt, Ratio, State, Bar, BarClass string
}

// pageView is what the page shows, read from its DOM.
type pageView struct {
	Snapshot    string            `json:"snapshot"`
	Samples     string            `json:"samples"`
	AuthShown   bool              `json:"authShown"`
	State       string            `json:"state"`
	Depth       string            `json:"depth"`
	InFlight    string            `json:"inflight"`
	Concurrency string            `json:"concurrency"`
	Rate        string            `json:"rate"`
	Burst       string            `json:"burst"`
	Admitted    string            `json:"admitted"`
	Tunnels     string            `json:"tunnels"`
	ByPriority  map[string]string `json:"byPriority"`
	P50         map[string]string `json:"p50"`
	Oldest      map[string]string `json:"oldest"`  // priority -> oldest wait cell
	Legends     map[string]string `json:"legends"` // legend id -> text
	Colors      map[string]string `json:"colors"`  // legend swatches and bars, computed background colours
	PrioFull    int               `json:"prioFull"`
	Paused      []string          `json:"paused"`
	Hosts       map[string]string `json:"hosts"` // match -> in flight
	StoreShown  bool              `json:"storeShown"`
	FormStatus  string            `json:"formStatus"`
	// Providers are the "Provider limits" rows, by "destination unit".
	Providers map[string]providerRow `json:"providers"`
	// Quotas are the "Quotas" rows, by "rule unit per".
	Quotas map[string]quotaRow `json:"quotas"`
}

const readPage = `(() => {
  const t = (s) => { const e = document.querySelector(s); return e ? e.textContent : ""; };
  const v = {snapshot: document.body.dataset.snapshot || "", samples: document.body.dataset.samples || "0", authShown: !document.getElementById("auth").hidden,
    state: t("#state"), depth: t("#depth"), inflight: t("#inflight"), concurrency: t("#concurrency-cap"),
    rate: t("#rate-limit"), burst: t("#burst-limit"), admitted: t("#admitted-rate"), tunnels: t("#tunnels-open"),
    byPriority: {}, p50: {}, paused: [], hosts: {}, storeShown: !document.getElementById("store-panel").hidden,
    formStatus: t("#limits-status"), oldest: {}, legends: {}, colors: {},
    prioFull: document.querySelectorAll("#prio-table .bar.full").length};
  document.querySelectorAll("#prio-table tbody tr").forEach((r) => {
    v.byPriority[r.dataset.priority] = r.querySelector(".waiting").textContent;
    v.p50[r.dataset.priority] = r.querySelector(".p50").textContent;
    v.oldest[r.dataset.priority] = r.querySelector(".oldest").textContent;
  });
  for (const id of ["admitted-legend", "inflight-legend", "depth-legend", "prio-legend", "hosts-legend", "providers-legend", "quotas-legend"]) v.legends[id] = t("#" + id);
  const bg = (s) => { const e = document.querySelector(s); return e ? getComputedStyle(e).backgroundColor : ""; };
  v.colors = {legendBar: bg("#hosts-legend .sw-bar"), legendFull: bg("#hosts-legend .sw-full"),
    bar: bg("#hosts-table .bar:not(.full) > div"), barFull: bg("#hosts-table .bar.full > div"),
    prioLegendBar: bg("#prio-legend .sw-bar"), prioBar: bg("#prio-table .bar > div"),
    quotaLegendDebt: bg("#quotas-legend .sw-debt"), quotaBarDebt: bg("#quotas-table .bar.debt > div"),
    quotaLegendBar: bg("#quotas-legend .sw-bar"), quotaBar: bg("#quotas-table .bar:not(.full):not(.debt) > div")};
  document.querySelectorAll("#paused-table tbody tr").forEach((r) => v.paused.push(r.dataset.destination));
  document.querySelectorAll("#hosts-table tbody tr").forEach((r) => { v.hosts[r.dataset.match] = r.querySelector(".inflight").textContent; });
  v.providers = {};
  document.querySelectorAll("#providers-table tbody tr").forEach((r) => {
    const c = (k) => r.querySelector("." + k).textContent;
    v.providers[r.dataset.destination + " " + r.dataset.unit] = {Rule: c("rule"), Unit: c("unit"), Remaining: c("remaining"), Limit: c("limit"), Reset: c("reset"), State: c("state")};
  });
  v.quotas = {};
  document.querySelectorAll("#quotas-table tbody tr").forEach((r) => {
    const c = (k) => r.querySelector("." + k).textContent;
    const bar = r.querySelector(".bar");
    v.quotas[r.dataset.rule + " " + r.dataset.unit + " " + r.dataset.per] = {Used: c("used"), Limit: c("limit"), Debt: c("debt-units"), Ratio: c("ratio"), State: c("state"),
      Bar: bar.firstChild.style.width, BarClass: bar.className};
  });
  return v;
})()`

// TestDashboardInChromium drives /dashboard in a real headless Chromium
// against a running proxyd with traffic (docs/admin-api.md, "GET /dashboard"): the page asks for the
// token, shows the numbers of /api/v1/queue and /api/v1/limits and what
// the providers last said is left (an origin answering OpenAI's
// x-ratelimit-* headers) with its reset counting down, a budget bar per
// quota with a tokens quota in debt (an LLM origin answering, gzip
// compressed, more usage than its request was priced at), changes the
// rate through its form, and is screenshotted (to
// PROXYD_DASHBOARD_SCREENSHOT when set, else under t.TempDir()).
func TestDashboardInChromium(t *testing.T) {
	chrome := chromiumPath(t)
	const token = "dash-s3cret"

	// held: requests to /slow wait until release is closed.
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(held.Close)
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.Header().Set("X-Ratelimit-Remaining-Requests", "0")
		w.Header().Set("X-Ratelimit-Reset-Requests", "60s")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(limited.Close)
	// An OpenAI-style origin: 3 requests left of 60 until +100 s, and
	// tokens until +6 min, capped at max_pause (not priced: its rule has
	// no tokens quota).
	openai := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("X-Ratelimit-Limit-Requests", "60")
		h.Set("X-Ratelimit-Remaining-Requests", "3")
		h.Set("X-Ratelimit-Reset-Requests", "100s")
		h.Set("X-Ratelimit-Limit-Tokens", "150000")
		h.Set("X-Ratelimit-Remaining-Tokens", "149000")
		h.Set("X-Ratelimit-Reset-Tokens", "6m0s")
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(openai.Close)
	// An LLM origin under a tokens quota: its gzip answer reports 1300
	// tokens used, above the request's price (400), and its provider
	// says 5000 tokens of 10000 are left.
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("X-Ratelimit-Limit-Tokens", "10000")
		h.Set("X-Ratelimit-Remaining-Tokens", "5000")
		h.Set("X-Ratelimit-Reset-Tokens", "6m0s")
		h.Set("Content-Type", "application/json")
		h.Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write([]byte(`{"choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":1000,"completion_tokens":300,"total_tokens":1300}}`))
		_ = zw.Close()
	}))
	t.Cleanup(llm.Close)
	flowing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(flowing.Close)
	_, heldPort, _ := net.SplitHostPort(held.Listener.Addr().String())
	heldRule := "127.0.0.1:" + heldPort
	openaiDest := openai.Listener.Addr().String()
	limitedDest := limited.Listener.Addr().String()
	llmDest := llm.Listener.Addr().String()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxyd.yaml")
	writeFile(t, cfg, fmt.Sprintf(`admin:
  token: %s
limits:
  rate: 1000
  burst: 100
  concurrency: 3
upstream:
  max_pause: 2m
hosts:
  - {match: "%s", rate: 500, concurrency: 2}
  - {match: "%s", rate: 50}
  - {match: "*.example.com", rate: 10, concurrency: 5}
  - {match: "api.github.com", rate: 80, burst: 20, concurrency: 8}
  - {match: "api.openai.com:443", rate: 50, concurrency: 16}
  - {match: "api.stripe.com", rate: 25}
  - {match: "hooks.slack.com", rate: 1, concurrency: 1}
  - {match: "%s", quotas: [{limit: 100, per: 1m}, {limit: 1000, per: 1h, unit: tokens}]}
`, token, heldRule, openaiDest, llmDest))
	p := startProxyd(t, "--config", cfg)
	c := p.client()

	// Traffic that finished: forwarded, and a 429 that pauses its
	// destination.
	for i := range 20 {
		if st := getStatus(c, fmt.Sprintf("%s/fast?%d", held.URL, i)); st != http.StatusOK {
			t.Fatalf("GET /fast: %d", st)
		}
	}
	if st := getStatus(c, limited.URL+"/x"); st != http.StatusTooManyRequests {
		t.Fatalf("GET limited: %d, want 429", st)
	}
	if st := getStatus(c, openai.URL+"/v1/chat/completions"); st != http.StatusOK {
		t.Fatalf("GET openai: %d", st)
	}
	// Priced 400 tokens, used 1300: 300 above the quota's 1000.
	preq, _ := http.NewRequest(http.MethodPost, llm.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[]}`))
	preq.Header.Set("X-Proxy-Cost", "400")
	presp, err := c.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(presp.Body); presp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"total_tokens":1300`) {
		t.Fatalf("POST llm: %d %q", presp.StatusCode, body)
	}
	presp.Body.Close()
	var stats struct {
		Hosts []struct {
			Match  string `json:"match"`
			Quotas []struct {
				Unit string `json:"unit"`
				Used int    `json:"used"`
				Debt int    `json:"debt"`
			} `json:"quotas"`
			CostRatio *struct {
				Count uint64  `json:"count"`
				Sum   float64 `json:"sum"`
			} `json:"cost_ratio"`
		} `json:"hosts"`
	}
	adminGet(t, p, token, "/api/v1/stats", &stats)
	for _, h := range stats.Hosts {
		if h.Match != llmDest {
			continue
		}
		if len(h.Quotas) != 2 || h.Quotas[1].Unit != "tokens" || h.Quotas[1].Used != 1300 || h.Quotas[1].Debt != 300 || h.Quotas[0].Used != 1 || h.Quotas[0].Debt != 0 ||
			h.CostRatio == nil || h.CostRatio.Count != 1 || h.CostRatio.Sum != 3.25 {
			t.Errorf("GET /api/v1/stats: rule %s = %+v (cost ratio %+v), want 1 request and 1300 tokens used, 300 in debt, one answer at 3.25 its price", h.Match, h.Quotas, h.CostRatio)
		}
	}
	// Held traffic: two in flight (the rule's cap), six waiting at three
	// urgencies.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after unblock (cleanups run last first)
	t.Cleanup(unblock)
	send := func(prio int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, held.URL+"/slow", nil)
			req.Header.Set("X-Priority", strconv.Itoa(prio))
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	send(3)
	send(3)
	var q queueState
	waitFor(t, 10*time.Second, "two requests in flight", func() (bool, any) {
		adminGet(t, p, token, "/api/v1/queue", &q)
		return q.InFlight == 2, q
	})
	for _, prio := range []int{1, 1, 3, 6, 6, 6} {
		send(prio)
	}
	waitFor(t, 10*time.Second, "six requests waiting", func() (bool, any) {
		adminGet(t, p, token, "/api/v1/queue", &q)
		return q.Depth == 6, q
	})

	// Flowing traffic at urgency 0 to another destination, until stopped.
	stopFlow := make(chan struct{})
	flowDone := make(chan struct{})
	go func() {
		defer close(flowDone)
		tick := time.NewTicker(5 * time.Millisecond) // pacing, not an assertion
		defer tick.Stop()
		for {
			select {
			case <-stopFlow:
				return
			case <-tick.C:
			}
			req, _ := http.NewRequest(http.MethodGet, flowing.URL+"/flow", nil)
			req.Header.Set("X-Priority", "0")
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopFlow); <-flowDone }) }
	t.Cleanup(stop)

	// The browser.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1440, 1100),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	// The first Do starts the browser, for as long as bctx lives.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	defer func() { _ = chromedp.Cancel(bctx) }() // closes the browser and waits for it
	ctx, cancelTimeout := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelTimeout()

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	view := func() pageView {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return v
	}
	waitPage := func(what string, cond func(pageView) bool) pageView {
		t.Helper()
		var v pageView
		waitFor(t, 30*time.Second, what, func() (bool, any) {
			v = view()
			return cond(v), v
		})
		return v
	}

	run("open /dashboard", chromedp.Navigate("http://"+p.admin+"/dashboard"))
	// The page is served without the token; the API answers 401, and the
	// page asks for it.
	waitPage("the token prompt", func(v pageView) bool { return v.AuthShown })
	run("enter the token",
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("token-save")),
	)
	// Live numbers: the flow is admitted, urgency 0's waits have a p50,
	// the pause and the hosts rules are listed; no store section. Ten
	// snapshots first, so that the charts in the screenshot have a line.
	v := waitPage("live numbers with traffic flowing", func(v pageView) bool {
		a, err := strconv.ParseFloat(v.Admitted, 64)
		n, _ := strconv.Atoi(v.Samples)
		return n >= 10 && !v.AuthShown && v.State == "live" && err == nil && a > 0 && v.P50["0"] != "–" && v.P50["0"] != "" &&
			len(v.Paused) == 1 && len(v.Hosts) == 8 && len(v.Providers) == 4 && len(v.Quotas) == 2
	})
	if v.StoreShown {
		t.Errorf("the store section is shown without a shared store")
	}
	// Priority 6's requests all wait (held): no p50 yet, but the oldest
	// wait of those waiting (issue 25: the row showed only "–"). A
	// priority with none waiting shows "–".
	if v.P50["6"] != "–" || !regexp.MustCompile(`^[0-9.]+ (µs|ms|s)$|^[0-9]+ min [0-9]+ s$`).MatchString(v.Oldest["6"]) || v.Oldest["2"] != "–" {
		t.Errorf("priority 6: p50 %q, oldest wait %q; priority 2: oldest wait %q; want –, a duration, –", v.P50["6"], v.Oldest["6"], v.Oldest["2"])
	}
	// The legends name what the colours mean, and their swatches have the
	// colours of what they explain: the held rule's bar is full (2 of 2).
	for id, want := range map[string]string{
		"admitted-legend": "limits.rate", "inflight-legend": "limits.concurrency", "depth-legend": "stacked by priority",
		"prio-legend": "oldest wait", "hosts-legend": "at its concurrency", "quotas-legend": "in debt: used above the limit",
		"providers-legend": "tokens: requests priced in tokens go while their price fits",
	} {
		if !strings.Contains(v.Legends[id], want) {
			t.Errorf("legend #%s = %q, want it to say %q", id, v.Legends[id], want)
		}
	}
	if c := v.Colors; c["barFull"] == "" || c["legendFull"] != c["barFull"] || c["legendBar"] != c["bar"] || c["legendBar"] == c["legendFull"] || c["prioLegendBar"] != c["prioBar"] ||
		c["quotaBarDebt"] == "" || c["quotaLegendDebt"] != c["quotaBarDebt"] || c["quotaLegendDebt"] == c["legendFull"] || c["quotaLegendBar"] != c["quotaBar"] {
		t.Errorf("legend colours %v do not match the bars'", c)
	}
	// Quotas: a budget bar each; the tokens quota is in debt (its bar full
	// and red, 300 above its limit) and shows its answers' usage against
	// their price; the requests quota holds one request of 100.
	for k, want := range map[string]quotaRow{
		llmDest + " tokens 1h":   {Used: "1300", Limit: "1000", Debt: "300", Ratio: "3.25", State: "in debt", Bar: "100%", BarClass: "bar full debt"},
		llmDest + " requests 1m": {Used: "1", Limit: "100", Debt: "–", Ratio: "–", State: "", Bar: "1%", BarClass: "bar"},
	} {
		if got := v.Quotas[k]; got != want {
			t.Errorf("quotas row %q = %+v, want %+v (rows %v)", k, got, want, v.Quotas)
		}
	}
	if v.PrioFull != 0 {
		t.Errorf("%d priority bars drawn as full: they have no cap", v.PrioFull)
	}
	if _, port, _ := net.SplitHostPort(limited.Listener.Addr().String()); v.Paused[0] != "127.0.0.1:"+port {
		t.Errorf("paused = %v, want 127.0.0.1:%s", v.Paused, port)
	}
	// Provider limits: per destination and unit, what the provider last
	// said, the hosts rule, the limit and the time to the reset; the 429's
	// destination is also paused.
	resetIn := regexp.MustCompile(`^([0-9.]+) s$`)
	for k, want := range map[string]providerRow{
		openaiDest + " requests":  {Rule: openaiDest, Unit: "requests", Remaining: "3", Limit: "60"},
		openaiDest + " tokens":    {Rule: openaiDest, Unit: "tokens", Remaining: "149000", Limit: "150000", State: "not priced"},
		llmDest + " tokens":       {Rule: llmDest, Unit: "tokens", Remaining: "5000", Limit: "10000"},
		limitedDest + " requests": {Rule: "–", Unit: "requests", Remaining: "0", Limit: "–", State: "paused"},
	} {
		got, ok := v.Providers[k]
		if !ok || !resetIn.MatchString(got.Reset) {
			t.Errorf("provider limits row %q = %+v (shown %v), want a reset countdown in seconds", k, got, ok)
			continue
		}
		got.Reset = ""
		if got != want {
			t.Errorf("provider limits row %q = %+v, want %+v", k, got, want)
		}
	}
	if m := resetIn.FindStringSubmatch(v.Providers[openaiDest+" requests"].Reset); m != nil {
		first, _ := strconv.ParseFloat(m[1], 64)
		if first > 100 || first <= 1 {
			t.Errorf("openai requests reset in %v s, want under the stated 100 s, and ahead", first)
		}
		// It counts down with the snapshots.
		waitPage("the reset counting down", func(v pageView) bool {
			m := resetIn.FindStringSubmatch(v.Providers[openaiDest+" requests"].Reset)
			if m == nil {
				return false
			}
			n, err := strconv.ParseFloat(m[1], 64)
			return err == nil && n <= first-1
		})
	}

	shot := os.Getenv("PROXYD_DASHBOARD_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// With the flow stopped, the state holds still: the page's numbers are
	// those of /api/v1/queue and /api/v1/limits.
	stop()
	var lim dashLimits
	var last struct {
		page      pageView
		queue     queueState
		limits    dashLimits
		mismatch  string
		snapshots []string
	}
	waitFor(t, 30*time.Second, "the page showing /api/v1/queue and /api/v1/limits", func() (bool, any) {
		adminGet(t, p, token, "/api/v1/queue", &q)
		adminGet(t, p, token, "/api/v1/limits", &lim)
		v := view()
		last.page, last.queue, last.limits = v, q, lim
		last.mismatch = pageMismatch(v, q, lim, heldRule)
		return last.mismatch == "", last
	})

	// A rate change from the form reaches the live limits.
	run("change the rate",
		chromedp.Click(chromedp.ID("limit-rate")),
		chromedp.SetValue(chromedp.ID("limit-rate"), ""), // focused: the page leaves it alone
		chromedp.SendKeys(chromedp.ID("limit-rate"), "250"),
		chromedp.Click(chromedp.ID("limits-apply")),
	)
	waitFor(t, 30*time.Second, "rate 250 in GET /api/v1/limits", func() (bool, any) {
		adminGet(t, p, token, "/api/v1/limits", &lim)
		return lim.Rate == 250 && lim.Burst == 100 && lim.Concurrency == 3, lim
	})
	waitPage("the page showing rate 250", func(v pageView) bool { return v.Rate == "250" })

	unblock()
	wg.Wait()
}

// pageMismatch describes how the page differs from the API's answers, ""
// when it shows them.
func pageMismatch(v pageView, q queueState, l dashLimits, heldRule string) string {
	limit := func(n float64) string {
		if n == 0 {
			return "unlimited"
		}
		return strconv.FormatFloat(n, 'f', -1, 64)
	}
	checks := []struct{ what, page, api string }{
		{"depth", v.Depth, strconv.Itoa(q.Depth)},
		{"in_flight", v.InFlight, strconv.Itoa(q.InFlight)},
		{"rate", v.Rate, limit(l.Rate)},
		{"burst", v.Burst, strconv.Itoa(l.Burst)},
		{"concurrency", v.Concurrency, limit(float64(l.Concurrency))},
	}
	for prio, n := range q.ByPriority {
		checks = append(checks, struct{ what, page, api string }{"by_priority " + prio, v.ByPriority[prio], strconv.Itoa(n)})
	}
	for _, h := range q.Hosts {
		if h.Match == heldRule {
			checks = append(checks, struct{ what, page, api string }{"hosts " + h.Match + " in_flight", v.Hosts[h.Match], strconv.Itoa(h.InFlight)})
		}
	}
	if len(q.ByPriority) != 8 || len(v.ByPriority) != 8 {
		return fmt.Sprintf("priorities: page %d, API %d", len(v.ByPriority), len(q.ByPriority))
	}
	for _, c := range checks {
		if c.page != c.api {
			return fmt.Sprintf("%s: page %q, API %q", c.what, c.page, c.api)
		}
	}
	return ""
}
