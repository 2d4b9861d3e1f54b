package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counter is an upstream that counts hits by path and answers with what
// reply says.
type counter struct {
	srv   *httptest.Server
	mu    sync.Mutex
	hits  map[string][]time.Time
	reply func(n int, w http.ResponseWriter, r *http.Request)
}

func newCounter(t *testing.T, reply func(n int, w http.ResponseWriter, r *http.Request)) *counter {
	t.Helper()
	c := &counter{hits: map[string][]time.Time{}, reply: reply}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.hits[r.URL.Path] = append(c.hits[r.URL.Path], time.Now())
		n := len(c.hits[r.URL.Path])
		c.mu.Unlock()
		if c.reply != nil {
			c.reply(n, w, r)
			return
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counter) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.hits[path])
}

func (c *counter) times(path string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.hits[path]...)
}

func (c *counter) hostPort() string { return strings.TrimPrefix(c.srv.URL, "http://") }

func startWithConfig(t *testing.T, yaml string) *proc {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, cfg, yaml)
	return startProxyd(t, "--config", cfg)
}

// TestHostRuleDoesNotBlockOthers: 100 requests wait for a destination
// limited to 2/s while 100 requests to another destination all complete.
func TestHostRuleDoesNotBlockOthers(t *testing.T) {
	slow := newCounter(t, nil)
	fast := newCounter(t, nil)
	p := startWithConfig(t, fmt.Sprintf(`
limits:
  rate: 0
  concurrency: 64
hosts:
  - match: "%s"
    rate: 2
    burst: 1
    concurrency: 2
`, slow.hostPort()))
	c := p.client()
	defer c.CloseIdleConnections()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 200

	slowDone := make(chan int, 100)
	for i := 0; i < 100; i++ {
		go func() { slowDone <- getStatus(c, slow.srv.URL+"/s") }()
	}
	// All 100 have arrived: each is either waiting or was admitted at 2/s.
	waitFor(t, 20*time.Second, "all 100 limited requests waiting or arrived", func() (bool, any) {
		depth, arrived := readQueue(t, p).Depth, slow.count("/s")
		return depth+arrived == 100, fmt.Sprintf("%d waiting, %d arrived", depth, arrived)
	})
	start := time.Now()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(fast.srv.URL + "/f")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ok.Load() != 100 {
		t.Fatalf("%d/100 requests to the unlimited destination succeeded", ok.Load())
	}
	q := readQueue(t, p)
	if q.Depth < 80 || q.Depth+slow.count("/s") != 100 {
		t.Fatalf("the limited destination was not held: depth %d, %d sent", q.Depth, slow.count("/s"))
	}
	if len(q.Hosts) != 1 || q.Hosts[0].Waiting != q.Depth {
		t.Fatalf("hosts state %+v", q.Hosts)
	}
	t.Logf("100 requests to the other destination took %v while %d waited for the 2/s one", elapsed, q.Depth)
	// Let the rest through so the test ends quickly.
	req, _ := http.NewRequest("PATCH", "http://"+p.admin+"/api/v1/limits", strings.NewReader(`{"hosts":[]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PATCH hosts: %v %v", err, resp)
	}
	resp.Body.Close()
	for i := 0; i < 100; i++ {
		if s := <-slowDone; s != 200 {
			t.Fatalf("limited request: %d", s)
		}
	}
}

// TestHostRulePortAndConcurrency: a rule with a port caps only that port.
func TestHostRulePortAndConcurrency(t *testing.T) {
	release := make(chan struct{})
	capped := newCounter(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		<-release
		_, _ = io.WriteString(w, "ok")
	})
	other := newCounter(t, nil)
	defer close(release)
	p := startWithConfig(t, fmt.Sprintf("limits:\n  rate: 0\nhosts:\n  - match: \"%s\"\n    concurrency: 1\n", capped.hostPort()))
	c := p.client()
	defer c.CloseIdleConnections()
	for i := 0; i < 3; i++ {
		go func() {
			if resp, err := c.Get(capped.srv.URL + "/c"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitDepth(t, p, 2)
	// The admitted one may still be on its way to the upstream.
	waitFor(t, 20*time.Second, "the admitted request at the upstream", func() (bool, any) {
		n := capped.count("/c")
		return n >= 1, fmt.Sprintf("%d requests at the upstream", n)
	})
	if capped.count("/c") != 1 || readQueue(t, p).Depth != 2 {
		t.Fatalf("%d in flight to a destination capped at 1", capped.count("/c"))
	}
	resp, err := c.Get(other.srv.URL + "/o") // same host, other port
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("other port: %v %v", err, resp)
	}
	resp.Body.Close()
	if q := readQueue(t, p); q.Hosts[0].InFlight != 1 || q.Hosts[0].Waiting != 2 {
		t.Fatalf("hosts %+v", q.Hosts)
	}
}

// TestBackpressureForms: each upstream signal pauses its destination for
// about the time it says; requests to it wait, others flow.
func TestBackpressureForms(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		hdr    map[string]string
		secs   float64
	}{
		{"429 Retry-After seconds", 429, map[string]string{"Retry-After": "30"}, 30},
		{"503 Retry-After date", 503, map[string]string{"Retry-After": time.Now().Add(40 * time.Second).UTC().Format(http.TimeFormat)}, 40},
		{"X-RateLimit epoch", 200, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": fmt.Sprint(time.Now().Add(42 * time.Second).Unix())}, 42},
		{"X-RateLimit delta", 200, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "20"}, 20},
		{"RateLimit-Reset", 200, map[string]string{"RateLimit-Remaining": "0", "RateLimit-Reset": "25"}, 25},
		{"RateLimit structured", 200, map[string]string{"RateLimit": `"default";r=0;t=35`}, 35},
		{"capped by max_pause", 429, map[string]string{"Retry-After": "3600"}, 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newCounter(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					for k, v := range tc.hdr {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tc.status)
					return
				}
				_, _ = io.WriteString(w, "ok")
			})
			other := newCounter(t, nil)
			p := startWithConfig(t, "limits:\n  rate: 0\nupstream:\n  max_pause: 45s\n")
			c := p.client()
			defer c.CloseIdleConnections()
			resp, err := c.Get(up.srv.URL + "/x")
			if err != nil || resp.StatusCode != tc.status {
				t.Fatalf("first: %v %v", err, resp)
			}
			resp.Body.Close()
			q := readQueue(t, p)
			if len(q.Paused) != 1 || q.Paused[0].Destination != up.hostPort() {
				t.Fatalf("paused %+v", q.Paused)
			}
			if r := q.Paused[0].Remaining; r > tc.secs || r < tc.secs-5 {
				t.Fatalf("paused for %.1fs, want about %.0fs", r, tc.secs)
			}
			// The paused destination holds its next request; another flows.
			held := make(chan int, 1)
			go func() { held <- getStatus(c, up.srv.URL+"/x") }()
			waitDepth(t, p, 1)
			resp, err = c.Get(other.srv.URL + "/y")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("other destination: %v %v", err, resp)
			}
			resp.Body.Close()
			if up.count("/x") != 1 {
				t.Fatal("a request went to the paused destination")
			}
			// Lift the pause by shortening max_wait: the held request is
			// answered "queue timeout", never sent.
			req, _ := http.NewRequest("PATCH", "http://"+p.admin+"/api/v1/limits", strings.NewReader(`{"max_wait":"1ms"}`))
			r2, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r2.Body.Close()
			if s := <-held; s != 503 || up.count("/x") != 1 {
				t.Fatalf("held request: %d, upstream hits %d", s, up.count("/x"))
			}
		})
	}
}

// TestPauseReleasesInOrder: after the reset, the held requests go.
func TestPauseReleasesInOrder(t *testing.T) {
	up := newCounter(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	p := startWithConfig(t, "limits:\n  rate: 0\n")
	c := p.client()
	defer c.CloseIdleConnections()
	resp, err := c.Get(up.srv.URL + "/first")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	paused := time.Now()
	resp, err = c.Get(up.srv.URL + "/second")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("second: %v %v", err, resp)
	}
	resp.Body.Close()
	if got := up.times("/second")[0].Sub(paused); got < 500*time.Millisecond {
		t.Fatalf("second request sent %v after a 1 s Retry-After", got)
	}
}

func TestRetries(t *testing.T) {
	flaky := func(failures int, status int, hdr ...string) func(int, http.ResponseWriter, *http.Request) {
		return func(n int, w http.ResponseWriter, _ *http.Request) {
			if n <= failures {
				for i := 0; i+1 < len(hdr); i += 2 {
					w.Header().Set(hdr[i], hdr[i+1])
				}
				w.WriteHeader(status)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}
	}
	cfg := `
limits:
  rate: 0
upstream:
  retry:
    attempts: 2
    on: ["connect-failure", "502", "503"]
    backoff_base: 1ms
    backoff_max: 5ms
    budget: 1
`
	t.Run("idempotent retried to success", func(t *testing.T) {
		up := newCounter(t, flaky(2, 503))
		p := startWithConfig(t, cfg)
		c := p.client()
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest("PUT", up.srv.URL+"/r", strings.NewReader("same body"))
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != 200 || up.count("/r") != 3 {
			t.Fatalf("%v %v after %d hits", err, resp, up.count("/r"))
		}
		resp.Body.Close()
	})
	t.Run("attempts bound the count", func(t *testing.T) {
		up := newCounter(t, flaky(10, 502))
		p := startWithConfig(t, cfg)
		c := p.client()
		defer c.CloseIdleConnections()
		resp, err := c.Get(up.srv.URL + "/r")
		if err != nil || resp.StatusCode != 502 || up.count("/r") != 3 {
			t.Fatalf("%v %v after %d hits", err, resp, up.count("/r"))
		}
		resp.Body.Close()
	})
	t.Run("POST and unlisted statuses are not retried", func(t *testing.T) {
		up := newCounter(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/post" {
				w.WriteHeader(503)
				return
			}
			w.WriteHeader(500)
		})
		p := startWithConfig(t, cfg)
		c := p.client()
		defer c.CloseIdleConnections()
		resp, err := c.Post(up.srv.URL+"/post", "text/plain", strings.NewReader("x"))
		if err != nil || resp.StatusCode != 503 || up.count("/post") != 1 {
			t.Fatalf("POST: %v %v after %d hits", err, resp, up.count("/post"))
		}
		resp.Body.Close()
		resp, err = c.Get(up.srv.URL + "/500")
		if err != nil || resp.StatusCode != 500 || up.count("/500") != 1 {
			t.Fatalf("500: %v %v after %d hits", err, resp, up.count("/500"))
		}
		resp.Body.Close()
	})
	t.Run("Retry-After is honoured", func(t *testing.T) {
		up := newCounter(t, flaky(1, 503, "Retry-After", "1"))
		p := startWithConfig(t, cfg)
		c := p.client()
		defer c.CloseIdleConnections()
		resp, err := c.Get(up.srv.URL + "/r")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", err, resp)
		}
		resp.Body.Close()
		hits := up.times("/r")
		if len(hits) != 2 || hits[1].Sub(hits[0]) < 900*time.Millisecond {
			t.Fatalf("retry %v after a Retry-After of 1 s (%d hits)", hits[1].Sub(hits[0]), len(hits))
		}
	})
	t.Run("budget stops a storm", func(t *testing.T) {
		up := newCounter(t, flaky(1000, 503))
		p := startWithConfig(t, `
limits:
  rate: 0
upstream:
  retry:
    attempts: 10
    on: ["503"]
    backoff_base: 1ms
    backoff_max: 2ms
    budget: 0
`)
		c := p.client()
		defer c.CloseIdleConnections()
		for i, want := range []int{4, 1, 1} { // the floor of 3 retries, then none
			path := fmt.Sprintf("/s%d", i)
			resp, err := c.Get(up.srv.URL + path)
			if err != nil || resp.StatusCode != 503 {
				t.Fatalf("%v %v", err, resp)
			}
			resp.Body.Close()
			if got := up.count(path); got != want {
				t.Fatalf("request %d reached the upstream %d times, want %d", i, got, want)
			}
		}
		fams := scrape(t, p)
		// The first request is refused its fourth retry, the others their first.
		if v := fams["proxyd_retry_budget_exhausted_total"].GetMetric()[0].GetCounter().GetValue(); v != 3 {
			t.Fatalf("budget exhausted %v times, want 3", v)
		}
		if v := fams["proxyd_upstream_retries_total"].GetMetric()[0].GetCounter().GetValue(); v != 3 {
			t.Fatalf("retries %v, want 3", v)
		}
	})
}

func TestGatewayRoutes(t *testing.T) {
	api := newCounter(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Host+" "+r.URL.RequestURI())
	})
	p := startWithConfig(t, fmt.Sprintf(`
limits:
  rate: 0
routes:
  - prefix: /x
    upstream: %[1]s/v1
    strip_prefix: true
  - prefix: /x/admin
    upstream: %[1]s/admin-api
    strip_prefix: false
  - prefix: /plain
    upstream: %[1]s
`, api.srv.URL))
	for _, tc := range []struct{ path, want string }{
		{"/x/users?page=2", api.hostPort() + " /v1/users?page=2"},
		{"/x", api.hostPort() + " /v1"},
		{"/x/admin/keys", api.hostPort() + " /admin-api/x/admin/keys"}, // longest prefix wins
		{"/plain/a/b", api.hostPort() + " /plain/a/b"},
		{"/x/files/a%2Fb?x=1", api.hostPort() + " /v1/files/a%2Fb?x=1"}, // escaping kept
	} {
		resp, err := http.Get("http://" + p.proxy + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != tc.want || resp.Header.Get("Via") != "1.1 proxyd" {
			t.Fatalf("%s: %d %q, want %q", tc.path, resp.StatusCode, b, tc.want)
		}
	}
	for _, path := range []string{"/nope", "/xy", "/"} {
		resp, err := http.Get("http://" + p.proxy + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Proxy-Status"), "destination_not_found") {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, resp.Header.Get("Proxy-Status"))
		}
	}
}
