package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/testprovider"
	"github.com/proxyd/proxyd/internal/testredis"
)

// tokensCall is one request of TestSharedTokensE2E: its usage, and when
// it reached the provider (zero: it never did).
type tokensCall struct {
	status  int
	usage   int64
	arrived time.Time
}

// docs/shared-quota.md ("Tokens"): three proxyd replicas share a hosts
// rule's quotas of 300 requests and 20,000 tokens per second through
// Redis, in front of a mock provider (internal/testprovider) that
// enforces the same limits the way OpenAI does (estimate at admission,
// corrected by the usage, 429 beyond). Offered three times the tokens in
// estimates (about twice in usage: answers use a quarter to all of
// max_tokens) for 6 s, in heavy-tailed sizes (60 to 2,000 tokens, most
// small: at most a tenth of the quota, as the llm benchmark's 20,000 of
// 200,000), a fifth streamed with their usage in the last event,
// requests sent to the replicas in turn: the provider never answers 429,
// and the usage of its answers, by the second of their arrival, is at
// least 90% of 20,000 over the whole seconds after the first (the
// overload sustained); every request is answered 200, or 503 after
// max_wait.
func TestSharedTokensE2E(t *testing.T) {
	const rpm, tpm, per = 300, 20000, time.Second
	prov := testprovider.New(testprovider.Config{RPM: rpm, TPM: tpm, Period: per, Events: 4})
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		mu.Lock()
		arrived[r.Header.Get("X-Request")] = now
		mu.Unlock()
		prov.ServeHTTP(w, r)
	}))
	defer up.Close()
	r := testredis.Start(t)
	cfg := writeConfig(t, fmt.Sprintf(`limits:
  store: redis
  rate: 0
  max_wait: 2s
  queue_size: 1000
hosts:
  - match: 127.0.0.1
    quotas:
      - {limit: %d, per: %s}
      - {limit: %d, per: %s, unit: tokens}
    cost: {estimate: body}
redis:
  url: %s
  key_prefix: tokens-e2e
`, rpm, per, tpm, per, r.URL()))
	var ps []*proc
	for range 3 {
		ps = append(ps, startProxyd(t, "--config", cfg))
	}
	var clients []*http.Client
	for _, p := range ps {
		waitStore(t, p, true)
		tr := &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + p.proxy)), MaxIdleConnsPerHost: 500}
		defer tr.CloseIdleConnections()
		clients = append(clients, &http.Client{Transport: tr, Timeout: 15 * time.Second})
	}

	const dur = 6 * time.Second
	rng := rand.New(rand.NewPCG(24, 3))
	var calls []*tokensCall
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	var offered int64
	for now := time.Now(); now.Before(start.Add(dur)); now = <-tick.C {
		for float64(offered) < now.Sub(start).Seconds()*3*tpm {
			// Sizes (estimates) 60 to 2,000 tokens, most small: a
			// prompt of a quarter, max_tokens the rest, of which the
			// answer uses a quarter to all.
			u := rng.Float64()
			size := 60 + int(1940*u*u*u)
			prompt := size / 4
			maxTokens := size - prompt
			completion := maxTokens/4 + rng.IntN(maxTokens*3/4+1)
			stream := rng.IntN(5) == 0
			body := chatRequest(prompt, maxTokens, completion, stream)
			est := int64(len(body)/4 + maxTokens)
			offered += est
			i := len(calls)
			c := &tokensCall{status: -1}
			calls = append(calls, c)
			wg.Go(func() {
				id := fmt.Sprint(i)
				req, _ := http.NewRequest(http.MethodPost, up.URL+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("X-Request", id)
				req.Header.Set("Content-Type", "application/json")
				resp, err := clients[i%len(clients)].Do(req)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				defer mu.Unlock()
				c.status, c.arrived = resp.StatusCode, arrived[id]
				if resp.StatusCode == http.StatusOK {
					c.usage = int64(len(body)/4 + completion)
				}
			})
		}
	}
	tick.Stop()
	wg.Wait()

	st := prov.Stats()
	statuses := map[int]int{}
	var first time.Time
	for _, c := range calls {
		statuses[c.status]++
		if c.status == http.StatusOK && (first.IsZero() || c.arrived.Before(first)) {
			first = c.arrived
		}
	}
	t.Logf("%d requests (%d tokens estimated, %.1f× the quota over %v); answers %v; provider %+v", len(calls), offered, float64(offered)/(tpm*dur.Seconds()), dur, statuses, st)
	if st.Rejected != 0 {
		t.Errorf("the provider answered %d 429s (%d for tokens, %d for requests): want none", st.Rejected, st.RejectedTokens, st.RejectedRequests)
	}
	if statuses[200]+statuses[503] != len(calls) {
		t.Errorf("answers %v for %d requests: want each a 200 or a 503", statuses, len(calls))
	}
	if first.IsZero() {
		t.Fatal("nothing reached the provider")
	}
	// Usage by the second of arrival at the provider, from the first
	// arrival; whole seconds within the load, the first one left out.
	whole := int((dur - first.Sub(start)) / per)
	used := make([]int64, whole)
	for _, c := range calls {
		if c.status != http.StatusOK {
			continue
		}
		if k := int(c.arrived.Sub(first) / per); k < whole {
			used[k] += c.usage
		}
	}
	var sum int64
	for _, u := range used[1:] {
		sum += u
	}
	share := float64(sum) / float64(tpm*(whole-1))
	t.Logf("usage by second %v: %.1f%% of %d over seconds 2–%d", used, share*100, tpm, whole)
	if share < 0.9 {
		t.Errorf("usage %.1f%% of the tokens quota over %d whole seconds, want at least 90%%", share*100, whole-1)
	}
}

// chatRequest is an OpenAI chat request of about prompt tokens (four
// bytes each) asking for maxTokens, whose mock answer uses completion;
// streamed ones ask for their usage in the last event.
func chatRequest(prompt, maxTokens, completion int, stream bool) string {
	head := fmt.Sprintf(`{"model":"m","max_tokens":%d,"mock_completion_tokens":%d,`, maxTokens, completion)
	if stream {
		head += `"stream":true,"stream_options":{"include_usage":true},`
	}
	head += `"messages":[{"role":"user","content":"`
	tail := `"}]}`
	pad := max(0, prompt*4-len(head)-len(tail))
	return head + strings.Repeat("a", pad) + tail
}
