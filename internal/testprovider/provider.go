package testprovider

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
)

// Config configures a Provider. The zero value has no limits.
type Config struct {
	// RPM is the most requests per Period; 0 means no limit.
	RPM int
	// TPM is the most tokens per Period; 0 means no limit.
	TPM int
	// Period is the limits' window; 0 means one minute.
	Period time.Duration
	// Events is the number of content chunks of a streamed answer; 0
	// means 8.
	Events int
	// EventDelay is the pause before each content chunk after the first.
	EventDelay time.Duration
	// Clock tells the time for the limits and times EventDelay; nil means
	// the real clock.
	Clock clock.Clock
}

// Stats are a Provider's counters.
type Stats struct {
	Requests         int64 // requests received
	Admitted         int64 // answered 200
	Rejected         int64 // answered 429
	RejectedRequests int64 // 429s for lack of requests
	RejectedTokens   int64 // 429s for lack of tokens (or too large)
	BadRequests      int64 // answered 400 (not a chat request)
	TokensAdmitted   int64 // estimates taken at admission
	TokensUsed       int64 // actual usage of the answers
}

// Provider is the mock provider; New makes one.
type Provider struct {
	cfg    Config
	clk    clock.Clock
	period time.Duration

	mu struct {
		sync.Mutex
		requests, tokens bucket
	}
	seq atomic.Int64

	requests, admitted, rejected, rejectedRequests, rejectedTokens, bad, tokensAdmitted, tokensUsed atomic.Int64
}

var _ http.Handler = (*Provider)(nil)

// New returns a Provider with full buckets.
func New(cfg Config) *Provider {
	p := &Provider{cfg: cfg, clk: cfg.Clock, period: cfg.Period}
	if p.clk == nil {
		p.clk = clock.Real{}
	}
	if p.period <= 0 {
		p.period = time.Minute
	}
	if p.cfg.Events <= 0 {
		p.cfg.Events = 8
	}
	now := p.clk.Now()
	p.mu.requests = newBucket(cfg.RPM, p.period, now)
	p.mu.tokens = newBucket(cfg.TPM, p.period, now)
	return p
}

// Stats returns the counters.
func (p *Provider) Stats() Stats {
	return Stats{
		Requests:         p.requests.Load(),
		Admitted:         p.admitted.Load(),
		Rejected:         p.rejected.Load(),
		RejectedRequests: p.rejectedRequests.Load(),
		RejectedTokens:   p.rejectedTokens.Load(),
		BadRequests:      p.bad.Load(),
		TokensAdmitted:   p.tokensAdmitted.Load(),
		TokensUsed:       p.tokensUsed.Load(),
	}
}

// bucket is one limit: level units, at most limit, replenished at
// limit/period; it may go below zero (debt). limit 0 means none.
type bucket struct {
	limit int
	rate  float64 // units per second
	level float64
	at    time.Time
}

func newBucket(limit int, period time.Duration, now time.Time) bucket {
	return bucket{limit: limit, rate: float64(limit) / period.Seconds(), level: float64(limit), at: now}
}

func (b *bucket) refill(now time.Time) {
	if b.limit == 0 {
		return
	}
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		b.level = math.Min(float64(b.limit), b.level+dt*b.rate)
	}
	b.at = now
}

// wait is how long until n units fit (refilled first).
func (b *bucket) wait(n int64) time.Duration {
	if b.limit == 0 || b.level >= float64(n) {
		return 0
	}
	return time.Duration((float64(n) - b.level) / b.rate * float64(time.Second))
}

// headers writes the bucket's x-ratelimit-*-<dim> fields.
func (b *bucket) headers(h http.Header, dim string) {
	if b.limit == 0 {
		return
	}
	h.Set("x-ratelimit-limit-"+dim, strconv.Itoa(b.limit))
	h.Set("x-ratelimit-remaining-"+dim, strconv.FormatInt(max(0, int64(math.Floor(b.level))), 10))
	full := time.Duration((float64(b.limit) - b.level) / b.rate * float64(time.Second))
	h.Set("x-ratelimit-reset-"+dim, FormatReset(full))
}

// FormatReset writes a duration as OpenAI's x-ratelimit-reset-* fields
// do: "12ms" below a second, else Go's form rounded up to the
// millisecond ("1.5s", "6m0s").
func FormatReset(d time.Duration) string {
	d = (d + time.Millisecond - 1).Truncate(time.Millisecond)
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return d.String()
}

// chatRequest is what the mock reads of a request.
type chatRequest struct {
	Model               string `json:"model"`
	MaxTokens           *int64 `json:"max_tokens"`
	MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	Stream              bool   `json:"stream"`
	StreamOptions       struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	// Test fields: the completion's size and a stream's content chunks.
	MockCompletionTokens *int64 `json:"mock_completion_tokens"`
	MockEvents           *int   `json:"mock_events"`
}

const maxRequestBody = 16 << 20

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	var req chatRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || r.Method != http.MethodPost {
		p.bad.Add(1)
		if err == nil {
			err = fmt.Errorf("method %s: want POST", r.Method)
		}
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", err.Error())
		return
	}
	prompt := int64(len(body) / 4)
	limit := int64(0)
	switch {
	case req.MaxTokens != nil:
		limit = max(0, *req.MaxTokens)
	case req.MaxCompletionTokens != nil:
		limit = max(0, *req.MaxCompletionTokens)
	}
	estimate := prompt + limit
	completion := int64(16)
	switch {
	case req.MockCompletionTokens != nil:
		completion = max(0, *req.MockCompletionTokens)
	case req.MaxTokens != nil || req.MaxCompletionTokens != nil:
		completion = limit
	}
	actual := prompt + completion

	if !p.admit(w, estimate) {
		return
	}
	var once sync.Once
	correct := func() {
		once.Do(func() {
			p.tokensUsed.Add(actual)
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.mu.tokens.limit > 0 {
				p.mu.tokens.refill(p.clk.Now())
				p.mu.tokens.level = math.Min(float64(p.mu.tokens.limit), p.mu.tokens.level+float64(estimate-actual))
			}
		})
	}
	defer correct()

	id := "chatcmpl-mock-" + strconv.FormatInt(p.seq.Add(1), 10)
	model := req.Model
	if model == "" {
		model = "mock"
	}
	text := strings.Repeat("abcd", int(min(completion, 1<<18)))
	usage := map[string]int64{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": actual}
	if !req.Stream {
		correct()
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": p.clk.Now().Unix(), "model": model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text}, "finish_reason": "stop"}},
			"usage":   usage,
		})
		return
	}
	events := p.cfg.Events
	if req.MockEvents != nil && *req.MockEvents > 0 {
		events = min(*req.MockEvents, 10000)
	}
	p.stream(w, r, streamArgs{id: id, model: model, text: text, events: events, includeUsage: req.StreamOptions.IncludeUsage, usage: usage, correct: correct})
}

// admit takes one request and estimate tokens, both or neither, and
// writes the rate-limit headers; on refusal it answers the 429.
func (p *Provider) admit(w http.ResponseWriter, estimate int64) bool {
	now := p.clk.Now()
	p.mu.Lock()
	rq, tk := &p.mu.requests, &p.mu.tokens
	rq.refill(now)
	tk.refill(now)
	tooLarge := tk.limit > 0 && estimate > int64(tk.limit)
	wr, wt := rq.wait(1), tk.wait(estimate)
	ok := !tooLarge && wr == 0 && wt == 0
	if ok {
		if rq.limit > 0 {
			rq.level--
		}
		if tk.limit > 0 {
			tk.level -= float64(estimate)
		}
	}
	h := w.Header()
	rq.headers(h, "requests")
	tk.headers(h, "tokens")
	limit := tk.limit
	p.mu.Unlock()

	switch {
	case ok:
		p.admitted.Add(1)
		p.tokensAdmitted.Add(estimate)
		return true
	case tooLarge:
		p.rejected.Add(1)
		p.rejectedTokens.Add(1)
		writeError(w, http.StatusTooManyRequests, "tokens", "rate_limit_exceeded",
			fmt.Sprintf("Request too large: Limit %d, Requested %d. The input or output tokens must be reduced in order to run successfully.", limit, estimate))
		return false
	}
	p.rejected.Add(1)
	dim, wait := "requests", wr
	if wr == 0 {
		dim, wait = "tokens", wt
		p.rejectedTokens.Add(1)
	} else {
		p.rejectedRequests.Add(1)
	}
	h.Set("retry-after", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
	writeError(w, http.StatusTooManyRequests, dim, "rate_limit_exceeded",
		fmt.Sprintf("Rate limit reached for %s. Please try again in %s.", dim, FormatReset(wait)))
	return false
}

type streamArgs struct {
	id, model, text string
	events          int
	includeUsage    bool
	usage           map[string]int64
	correct         func()
}

// stream writes a chat completion as server-sent events, flushing each.
func (p *Provider) stream(w http.ResponseWriter, r *http.Request, a streamArgs) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	created := p.clk.Now().Unix()
	send := func(v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{
			"id": a.id, "object": "chat.completion.chunk", "created": created, "model": a.model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
		if a.includeUsage {
			c["usage"] = nil
		}
		return c
	}
	per := (len(a.text) + a.events - 1) / a.events
	for i := range a.events {
		if i > 0 && !p.pause(r, p.cfg.EventDelay) {
			return
		}
		piece := a.text[min(i*per, len(a.text)):min((i+1)*per, len(a.text))]
		delta := map[string]any{"content": piece}
		if i == 0 {
			delta["role"] = "assistant"
		}
		if !send(chunk(delta, nil)) {
			return
		}
	}
	if !send(chunk(map[string]any{}, "stop")) {
		return
	}
	a.correct()
	if a.includeUsage && !send(map[string]any{"id": a.id, "object": "chat.completion.chunk", "created": created, "model": a.model, "choices": []any{}, "usage": a.usage}) {
		return
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}

// pause waits d on the clock, or until the client leaves (false).
func (p *Provider) pause(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	done := make(chan struct{})
	t := p.clk.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return true
	case <-r.Context().Done():
		t.Stop()
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in OpenAI's error shape.
func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}})
}
