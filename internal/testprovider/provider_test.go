package testprovider

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/cost"
	"github.com/proxyd/proxyd/internal/headers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// signalClock is a fake clock that says on scheduled when something
// starts waiting on it, so a test advances it only once the handler waits.
type signalClock struct {
	*clock.Fake
	scheduled chan time.Duration
}

func (c signalClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := c.Fake.AfterFunc(d, f)
	c.scheduled <- d
	return t
}

func start(t *testing.T, cfg Config) (*Provider, *httptest.Server) {
	t.Helper()
	p := New(cfg)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

type answer struct {
	status int
	h      http.Header
	body   string
}

func post(t *testing.T, url, body string) answer {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// chat is a request body of exactly size bytes (so its prompt is size/4
// tokens) with the given extra fields.
func chat(t *testing.T, size int, fields string) string {
	t.Helper()
	head := `{"model":"m",` + fields + `,"messages":[{"role":"user","content":"`
	tail := `"}]}`
	pad := size - len(head) - len(tail)
	if pad < 0 {
		t.Fatalf("size %d too small for %s", size, fields)
	}
	return head + strings.Repeat("x", pad) + tail
}

func (a answer) header(t *testing.T, name, want string) {
	t.Helper()
	if got := a.h.Get(name); got != want {
		t.Errorf("%s = %q, want %q (status %d)", name, got, want, a.status)
	}
}

// RPM: the limit is a bucket replenished continuously; every answer
// states it, a 429 adds retry-after.
func TestRequestsPerPeriod(t *testing.T) {
	clk := clock.NewFake(t0)
	p, srv := start(t, Config{RPM: 3, Period: time.Second, Clock: clk})
	body := chat(t, 100, `"max_tokens":1`)
	for i := range 3 {
		a := post(t, srv.URL, body)
		if a.status != 200 {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
		a.header(t, "x-ratelimit-limit-requests", "3")
		a.header(t, "x-ratelimit-remaining-requests", fmt.Sprint(2-i))
		a.header(t, "x-ratelimit-limit-tokens", "")
	}
	a := post(t, srv.URL, body)
	if a.status != 429 || !strings.Contains(a.body, `"type":"requests"`) || !strings.Contains(a.body, `"code":"rate_limit_exceeded"`) {
		t.Fatalf("4th request: %d %s", a.status, a.body)
	}
	a.header(t, "retry-after", "1")
	a.header(t, "x-ratelimit-remaining-requests", "0")
	a.header(t, "x-ratelimit-reset-requests", "1s")
	if d, ok := headers.ParseResetDuration(a.h.Get("x-ratelimit-reset-requests")); !ok || d != time.Second {
		t.Errorf("proxyd reads the reset as %v, %v", d, ok)
	}

	clk.Advance(334 * time.Millisecond) // one request's worth
	if a := post(t, srv.URL, body); a.status != 200 {
		t.Fatalf("after a third of the period: %d %s", a.status, a.body)
	}
	if a := post(t, srv.URL, body); a.status != 429 {
		t.Fatalf("again at once: %d, want 429", a.status)
	}
	want := Stats{Requests: 6, Admitted: 4, Rejected: 2, RejectedRequests: 2, TokensAdmitted: 4 * 26, TokensUsed: 4 * 26}
	if got := p.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// TPM: a request is priced len(body)/4 + max_tokens at admission, and the
// price is replaced by the actual usage when it is answered: an
// over-estimate is given back, an under-estimate goes into debt that
// delays the next request.
func TestTokensPerPeriod(t *testing.T) {
	clk := clock.NewFake(t0)
	p, srv := start(t, Config{TPM: 1000, Period: time.Second, Clock: clk})

	// 400 bytes: 100 prompt tokens; max_tokens 200: estimate 300; it uses 110.
	a := post(t, srv.URL, chat(t, 400, `"max_tokens":200,"mock_completion_tokens":10`))
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	a.header(t, "x-ratelimit-limit-tokens", "1000")
	a.header(t, "x-ratelimit-remaining-tokens", "700") // at admission
	a.header(t, "x-ratelimit-reset-tokens", "300ms")
	if !strings.Contains(a.body, `"usage":{"completion_tokens":10,"prompt_tokens":100,"total_tokens":110}`) {
		t.Errorf("usage in %s", a.body)
	}
	if n, ok := meter("application/json", a.body); n != 110 || !ok {
		t.Errorf("cost.Meter reads %d, %v from the answer; want 110", n, ok)
	}

	// 190 came back: 890 left; the next estimate of 300 leaves 590.
	a = post(t, srv.URL, chat(t, 400, `"max_tokens":200,"mock_completion_tokens":10`))
	a.header(t, "x-ratelimit-remaining-tokens", "590")

	// 300 - 110 = 190 came back again: 780 left. An under-estimate:
	// priced 110 (670 left), uses 1100: 670 + 110 - 1100 = -320, a debt.
	a = post(t, srv.URL, chat(t, 400, `"max_tokens":10,"mock_completion_tokens":1000`))
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	a = post(t, srv.URL, chat(t, 80, `"max_tokens":1`)) // 21 tokens
	if a.status != 429 || !strings.Contains(a.body, `"type":"tokens"`) {
		t.Fatalf("in debt: %d %s", a.status, a.body)
	}
	a.header(t, "x-ratelimit-remaining-tokens", "0")
	a.header(t, "retry-after", "1") // 341 tokens at 1000/s: 341ms, rounded up
	if !strings.Contains(a.body, "try again in 341ms") {
		t.Errorf("429 body %s", a.body)
	}
	clk.Advance(340 * time.Millisecond)
	if a := post(t, srv.URL, chat(t, 80, `"max_tokens":1`)); a.status != 429 {
		t.Fatalf("before the debt is repaid: %d %s", a.status, a.body)
	}
	clk.Advance(2 * time.Millisecond)
	if a := post(t, srv.URL, chat(t, 80, `"max_tokens":1`)); a.status != 200 {
		t.Fatalf("after the debt is repaid: %d %s", a.status, a.body)
	}

	// An estimate above the limit can never be admitted.
	a = post(t, srv.URL, chat(t, 100, `"max_tokens":5000`))
	if a.status != 429 || a.h.Get("retry-after") != "" || !strings.Contains(a.body, "Request too large: Limit 1000, Requested 5025") {
		t.Fatalf("too large: %d retry-after %q %s", a.status, a.h.Get("retry-after"), a.body)
	}

	want := Stats{Requests: 7, Admitted: 4, Rejected: 3, RejectedTokens: 3, TokensAdmitted: 300 + 300 + 110 + 21, TokensUsed: 110 + 110 + 1100 + 21}
	if got := p.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func meter(ct, body string) (int64, bool) {
	m := cost.NewMeter(ct, nil)
	m.Write([]byte(body))
	return m.Usage()
}

// A streamed answer: content chunks with usage null, the finish chunk, the
// usage chunk with stream_options.include_usage, [DONE]; without it no
// usage at all. cost.Meter reads exactly the usage.
func TestStream(t *testing.T) {
	p, srv := start(t, Config{TPM: 100000, Events: 5})
	a := post(t, srv.URL, chat(t, 200, `"stream":true,"stream_options":{"include_usage":true},"max_tokens":30`))
	if a.status != 200 || a.h.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q", a.status, a.h.Get("Content-Type"))
	}
	events := strings.Split(strings.TrimSuffix(a.body, "\n\n"), "\n\n")
	if len(events) != 5+3 {
		t.Fatalf("%d events, want 5 content, finish, usage, [DONE]:\n%s", len(events), a.body)
	}
	var content strings.Builder
	for i, e := range events[:5] {
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *json.RawMessage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(e, "data: ")), &c); err != nil || !strings.Contains(e, `"usage":null`) {
			t.Fatalf("event %d %q: %v", i, e, err)
		}
		content.WriteString(c.Choices[0].Delta.Content)
	}
	if content.String() != strings.Repeat("abcd", 30) {
		t.Errorf("content %q", content.String())
	}
	if !strings.Contains(events[6], `"choices":[],`) || !strings.Contains(events[6], `"usage":{"completion_tokens":30,"prompt_tokens":50,"total_tokens":80}`) || events[7] != "data: [DONE]" {
		t.Errorf("last events %q", events[5:])
	}
	if n, ok := meter("text/event-stream", a.body); n != 80 || !ok {
		t.Errorf("cost.Meter reads %d, %v; want 80", n, ok)
	}

	a = post(t, srv.URL, chat(t, 200, `"stream":true,"max_tokens":30`))
	if strings.Contains(a.body, "usage") {
		t.Errorf("without include_usage: %s", a.body)
	}
	if n, ok := meter("text/event-stream", a.body); ok {
		t.Errorf("cost.Meter reads %d without usage", n)
	}
	if s := p.Stats(); s.TokensUsed != 160 || s.Admitted != 2 {
		t.Errorf("Stats() = %+v", s)
	}
}

// Each event is flushed as it is produced, EventDelay apart on the clock:
// the client reads the first while the handler waits for the second; the
// handler stops waiting when the client leaves.
func TestStreamEventsFlushedOneByOne(t *testing.T) {
	clk := signalClock{clock.NewFake(t0), make(chan time.Duration, 1)}
	_, srv := start(t, Config{Events: 3, EventDelay: time.Hour, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader(chat(t, 100, `"stream":true,"max_tokens":3`)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	readEvent := func() string {
		t.Helper()
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading an event: %v (so far %q)", err, b.String())
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	if e := readEvent(); !strings.Contains(e, `"content":"abcd"`) {
		t.Fatalf("first event %q", e)
	}
	if d := <-clk.scheduled; d != time.Hour {
		t.Fatalf("waits %v, want EventDelay", d)
	}
	clk.Advance(time.Hour)
	if e := readEvent(); !strings.Contains(e, `"content":"abcd"`) {
		t.Fatalf("second event %q", e)
	}
	<-clk.scheduled
	cancel() // the client leaves while the handler waits for the third
	if _, err := io.ReadAll(r); err == nil {
		t.Error("the body went on after the client left")
	}
}

// Not a chat request: 400, counted, no tokens taken.
func TestBadRequest(t *testing.T) {
	p, srv := start(t, Config{TPM: 10})
	if a := post(t, srv.URL, "not json"); a.status != 400 || !strings.Contains(a.body, `"type":"invalid_request_error"`) {
		t.Fatalf("%d %s", a.status, a.body)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if s := p.Stats(); s.BadRequests != 2 || s.Admitted != 0 || s.TokensAdmitted != 0 {
		t.Errorf("Stats() = %+v", s)
	}
}

func TestFormatReset(t *testing.T) {
	for d, want := range map[time.Duration]string{
		12 * time.Millisecond:                 "12ms",
		1500 * time.Microsecond:               "2ms",
		0:                                     "0ms",
		1500 * time.Millisecond:               "1.5s",
		6 * time.Minute:                       "6m0s",
		time.Second + time.Nanosecond:         "1.001s",
		59*time.Second + 999*time.Millisecond: "59.999s",
	} {
		got := FormatReset(d)
		if got != want {
			t.Errorf("FormatReset(%v) = %q, want %q", d, got, want)
		}
		if back, ok := headers.ParseResetDuration(got); !ok || back < d {
			t.Errorf("ParseResetDuration(%q) = %v, %v; want >= %v", got, back, ok, d)
		}
	}
}
