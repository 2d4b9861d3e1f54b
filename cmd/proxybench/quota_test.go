package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// The origin's fixed window: limit per window from the first request, the
// count starting over at each window's start (not sliding), reset counted
// to the window's end; times are given, no clock runs.
func TestFixedWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	w := fixedWindow{limit: 3, per: time.Minute}
	type step struct {
		at        time.Duration // after t0
		ok        bool
		remaining int
		reset     time.Duration
	}
	steps := []step{
		{0, true, 2, time.Minute}, // the first request starts window 0
		{10 * time.Second, true, 1, 50 * time.Second},
		{59 * time.Second, true, 0, time.Second},
		{59*time.Second + 999*time.Millisecond, false, 0, time.Millisecond}, // 4th in window 0
		{time.Minute, true, 2, time.Minute},                                 // window 1 starts full, whatever came just before
		{time.Minute + 1, true, 1, time.Minute - 1},
		{time.Minute + 2, true, 0, time.Minute - 2},
		{time.Minute + 3, false, 0, time.Minute - 3},
		{time.Minute + 4, false, 0, time.Minute - 4},
		{3*time.Minute + 30*time.Second, true, 2, 30 * time.Second}, // windows 2 skipped, 3 fresh
	}
	for i, s := range steps {
		ok, rem, reset := w.take(t0.Add(s.at))
		if ok != s.ok || rem != s.remaining || reset != s.reset {
			t.Errorf("step %d at +%v: got (%v, %d, %v), want (%v, %d, %v)", i, s.at, ok, rem, reset, s.ok, s.remaining, s.reset)
		}
	}
	if want := []int{3, 3, 0, 1}; !slices.Equal(w.ok, want) {
		t.Errorf("ok by window %v, want %v", w.ok, want)
	}
	if want := []int{1, 2, 0, 0}; !slices.Equal(w.rejected, want) {
		t.Errorf("rejected by window %v, want %v", w.rejected, want)
	}
	// A burst at the end of one window and the start of the next gets
	// 2 × limit through in a short time: the fixed window's known edge,
	// which a proxy in front must not rely on.
	w = fixedWindow{limit: 3, per: time.Minute}
	w.take(t0)
	n := 0
	for _, at := range []time.Duration{59 * time.Second, 59 * time.Second, 60 * time.Second, 60 * time.Second, 60 * time.Second, 60 * time.Second} {
		if ok, _, _ := w.take(t0.Add(at)); ok {
			n++
		}
	}
	if n != 5 { // 2 left in window 0, 3 in window 1
		t.Errorf("edge burst: %d admitted, want 5", n)
	}
	// With a given start, window 0 begins there, not at the first
	// request.
	w = fixedWindow{limit: 1, per: time.Minute, start: t0}
	if ok, _, reset := w.take(t0.Add(59 * time.Second)); !ok || reset != time.Second {
		t.Errorf("given start: (%v, %v), want (true, 1s)", ok, reset)
	}
	if ok, _, _ := w.take(t0.Add(60 * time.Second)); !ok {
		t.Error("given start: window 1 refused its first request")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, c := range []struct {
		reset time.Duration
		want  int
	}{{time.Millisecond, 1}, {0, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {59*time.Second + 1, 60}} {
		if got := retryAfterSeconds(c.reset); got != c.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", c.reset, got, c.want)
		}
	}
}

// The origin over a real socket, on an injected clock: 200s with the
// x-ratelimit headers while the window has room, then 429 + Retry-After
// until the window's end, and the counts it reports.
func TestQuotaOriginAnswers(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	o := &quotaOrigin{w: fixedWindow{limit: 2, per: time.Minute}, headers: true, now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	srv := httptest.NewServer(o)
	defer srv.Close()
	c := srv.Client()
	get := func() *http.Response {
		t.Helper()
		resp, err := c.Get(srv.URL + "/v1/chat/completions")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	type want struct {
		code                    int
		remaining, reset, retry string
	}
	check := func(r *http.Response, w want) {
		t.Helper()
		got := want{r.StatusCode, r.Header.Get("X-Ratelimit-Remaining-Requests"), r.Header.Get("X-Ratelimit-Reset-Requests"), r.Header.Get("Retry-After")}
		if got != w || r.Header.Get("X-Ratelimit-Limit-Requests") != "2" {
			t.Errorf("got %+v (limit %q), want %+v", got, r.Header.Get("X-Ratelimit-Limit-Requests"), w)
		}
	}
	check(get(), want{200, "1", "1m0s", ""})
	at(500 * time.Millisecond)
	check(get(), want{200, "0", "59.5s", ""})
	at(40 * time.Second)
	check(get(), want{429, "0", "19.5s", "20"})
	at(19*time.Second + 499*time.Millisecond)
	check(get(), want{429, "0", "1ms", "1"})
	at(time.Millisecond)
	check(get(), want{200, "1", "1m0s", ""})

	o.mu.Lock()
	o.headers = false
	o.mu.Unlock()
	at(time.Second)
	r := get()
	if r.StatusCode != 200 || r.Header.Get("X-Ratelimit-Remaining-Requests") != "" {
		t.Errorf("without headers: %d, remaining %q", r.StatusCode, r.Header.Get("X-Ratelimit-Remaining-Requests"))
	}
	resp, err := c.Get(srv.URL + quotaStatsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st quotaStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Start != time.Unix(1_800_000_000, 0).UnixNano() || st.Limit != 2 || st.Per != int64(time.Minute) ||
		!slices.Equal(st.OK, []int{2, 2}) || !slices.Equal(st.Rejected, []int{2, 0}) {
		t.Errorf("stats %+v", st)
	}
	// Only windows that ended before the load did count as whole.
	if n := completeWindows(st, time.Unix(0, st.Start).Add(119*time.Second)); n != 1 {
		t.Errorf("complete windows at +119s: %d, want 1", n)
	}
	if n := completeWindows(st, time.Unix(0, st.Start).Add(10*time.Minute)); n != 2 {
		t.Errorf("complete windows at +10m: %d, want 2 (as many as the origin saw)", n)
	}
}

// The SDKs' wait: retry-after-ms, then retry-after (seconds or a date)
// when at most 60 s; otherwise 0.5 s·2^n up to 8 s, times the jitter.
func TestSDKRetryDelay(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, c := range []struct {
		h      http.Header
		n      int
		jitter float64
		want   time.Duration
	}{
		{h("Retry-After", "20"), 0, 1, 20 * time.Second},
		{h("Retry-After", "60"), 1, 1, 60 * time.Second},
		{h("Retry-After", "61"), 0, 1, 500 * time.Millisecond}, // too long: back-off
		{h("Retry-After-Ms", "1500", "Retry-After", "9"), 0, 1, 1500 * time.Millisecond},
		{h(), 0, 0.75, 375 * time.Millisecond},
		{h(), 1, 1, time.Second},
		{nil, 5, 1, 8 * time.Second}, // capped
	} {
		if got := sdkRetryDelay(c.h, c.n, c.jitter); got != c.want {
			t.Errorf("sdkRetryDelay(%v, %d, %g) = %v, want %v", c.h, c.n, c.jitter, got, c.want)
		}
	}
}

// quota runs only when named: "all" keeps its length.
func TestParseFlagsQuota(t *testing.T) {
	o, err := parseFlagsQuiet(t, "--scenario", "quota", "--quick")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.scenarios, []string{"quota"}) || o.quota.duration != 70*time.Second {
		t.Errorf("scenarios %v, duration %v", o.scenarios, o.quota.duration)
	}
	if o, _ := parseFlagsQuiet(t); slices.Contains(o.scenarios, "quota") {
		t.Errorf("all includes quota: %v", o.scenarios)
	}
	if _, err := parseFlagsQuiet(t, "--scenario", "quota", "--quota-duration", "30s"); err == nil {
		t.Error("--quota-duration 30s (under a window) accepted")
	}
}

func parseFlagsQuiet(t *testing.T, args ...string) (*options, error) {
	t.Helper()
	return parseFlags(args, io.Discard)
}
