package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/upstream"
)

func TestBackoffCeilings(t *testing.T) {
	p := compileRetry(config.Retry{Attempts: 10, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second})
	top := func(n int64) int64 { return n - 1 } // the largest draw
	zero := func(int64) int64 { return 0 }
	for n, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second} {
		if got := p.backoff(n, top); got != want {
			t.Errorf("retry %d: ceiling %v, want %v", n, got, want)
		}
		if got := p.backoff(n, zero); got != 0 {
			t.Errorf("retry %d: floor %v, want 0 (full jitter)", n, got)
		}
	}
	// The real jitter stays within [0, ceiling].
	for i := 0; i < 1000; i++ {
		if d := p.backoff(2, jitter); d < 0 || d > 400*time.Millisecond {
			t.Fatalf("jittered back-off %v outside [0, 400ms]", d)
		}
	}
	if jitter(0) != 0 || jitter(-5) != 0 {
		t.Fatal("jitter of an empty range")
	}
}

func TestRetryable(t *testing.T) {
	p := compileRetry(config.Retry{On: []string{"connect-failure", "429", "503"}})
	resp := func(code int) *http.Response { return &http.Response{StatusCode: code} }
	for _, tc := range []struct {
		name string
		resp *http.Response
		err  error
		want bool
	}{
		{"429", resp(429), nil, true},
		{"503", resp(503), nil, true},
		{"502 not listed", resp(502), nil, false},
		{"200", resp(200), nil, false},
		{"refused", nil, fmt.Errorf("%w: x", upstream.ErrConnRefused), true},
		{"dns", nil, fmt.Errorf("%w: x", upstream.ErrDNS), true},
		{"dial timeout", nil, fmt.Errorf("%w: x", upstream.ErrConnectTimeout), true},
		{"response timeout is 504, not listed", nil, fmt.Errorf("%w: x", upstream.ErrResponseTimeout), false},
		{"reset is 502, not listed", nil, fmt.Errorf("%w: x", upstream.ErrUpstream), false},
		{"client gone", nil, errors.New("context canceled"), false},
	} {
		if got := p.retryable(tc.resp, tc.err); got != tc.want {
			t.Errorf("%s: retryable %v, want %v", tc.name, got, tc.want)
		}
	}
	q := compileRetry(config.Retry{On: []string{"502", "504"}})
	if !q.retryable(nil, fmt.Errorf("%w: x", upstream.ErrResponseTimeout)) || !q.retryable(nil, fmt.Errorf("%w: x", upstream.ErrUpstream)) {
		t.Error("504 and 502 should cover proxy-side response timeouts and upstream failures")
	}
	if q.retryable(nil, fmt.Errorf("%w: x", upstream.ErrConnRefused)) {
		t.Error("connect-failure not listed")
	}
}

func TestIdempotent(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true, "PUT": true, "DELETE": true, "TRACE": true, "POST": false, "PATCH": false, "CONNECT": false} {
		if idempotent(m) != want {
			t.Errorf("%s: idempotent %v", m, !want)
		}
	}
}

func TestRetryBudget(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := &retryBudget{clock: clk}
	// The floor: 3 retries in 10 s whatever the traffic.
	for i := 0; i < 3; i++ {
		if !b.allow(0.2) {
			t.Fatalf("retry %d refused under the floor", i)
		}
	}
	if b.allow(0.2) {
		t.Fatal("fourth retry allowed with no requests seen")
	}
	// 100 requests in the window: 20% is 20 retries (3 already spent).
	for i := 0; i < 100; i++ {
		b.request()
	}
	n := 0
	for b.allow(0.2) {
		n++
	}
	if n != 17 {
		t.Fatalf("%d more retries allowed, want 17", n)
	}
	// The window slides: 10 s later the old requests and retries are gone.
	clk.Advance(10 * time.Second)
	for i := 0; i < 3; i++ {
		if !b.allow(0.2) {
			t.Fatalf("retry %d refused in a fresh window", i)
		}
	}
	if b.allow(0.2) {
		t.Fatal("the floor again bounds a fresh window")
	}
}

func TestReplayBody(t *testing.T) {
	small := httptest.NewRequest("PUT", "http://x/", strings.NewReader("abc"))
	b, ok, err := replayBody(small, small.Body)
	if err != nil || !ok || string(b) != "abc" {
		t.Fatalf("small body: %q %v %v", b, ok, err)
	}
	big := httptest.NewRequest("PUT", "http://x/", strings.NewReader(strings.Repeat("x", maxReplayBody+1)))
	if _, ok, _ := replayBody(big, big.Body); ok {
		t.Fatal("a body over the bound was buffered")
	}
	unknown := httptest.NewRequest("PUT", "http://x/", strings.NewReader("abc"))
	unknown.ContentLength = -1
	if _, ok, _ := replayBody(unknown, unknown.Body); ok {
		t.Fatal("a body of unknown length was buffered")
	}
	none := httptest.NewRequest("GET", "http://x/", nil)
	if b, ok, _ := replayBody(none, none.Body); !ok || b != nil {
		t.Fatal("no body should be replayable as nothing")
	}
}

// The retry budget counts requests only while retries are on: with
// attempts 0 nothing can be retried, and the budget's mutex is not taken.
func TestRetryBudgetCountsOnlyWithRetries(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer origin.Close()
	disp := dispatch.New(dispatch.Config{Limits: dispatch.Limits{QueueSize: 10, MaxWait: time.Minute, MaxTunnels: 1}}, dispatch.Deps{})
	defer disp.Close()
	fwd := upstream.New(upstream.Config{})
	defer fwd.Close()
	cfg := config.Default()
	h, err := New(cfg, Deps{Dispatcher: disp, Forwarder: fwd})
	if err != nil {
		t.Fatal(err)
	}
	counted := func() int64 {
		h.retries.mu.Lock()
		defer h.retries.mu.Unlock()
		req, _ := h.retries.sumsLocked(h.clock.Now())
		return req
	}
	get := func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, origin.URL+"/x", nil))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
	}
	get()
	if n := counted(); n != 0 {
		t.Errorf("retries off: %d requests counted, want 0", n)
	}
	cfg.Upstream.Retry.Attempts = 1
	if err := h.SetPolicy(cfg); err != nil {
		t.Fatal(err)
	}
	get()
	if n := counted(); n != 1 {
		t.Errorf("retries on: %d requests counted, want 1", n)
	}
}
