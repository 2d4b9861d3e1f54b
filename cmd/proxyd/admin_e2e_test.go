package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/proxyd/proxyd/internal/testnet"
)

// queueState reads GET /api/v1/queue.
// queueState is GET /api/v1/queue.
type queueState struct {
	Depth      int            `json:"depth"`
	InFlight   int            `json:"in_flight"`
	ByPriority map[string]int `json:"by_priority"`
	Paused     []struct {
		Destination string  `json:"destination"`
		Remaining   float64 `json:"remaining_seconds"`
	} `json:"paused"`
	Hosts []struct {
		Match    string `json:"match"`
		InFlight int    `json:"in_flight"`
		Waiting  int    `json:"waiting"`
	} `json:"hosts"`
}

func readQueue(t *testing.T, p *proc) queueState {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/api/v1/queue")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var q queueState
	if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
		t.Fatal(err)
	}
	return q
}

// waitDepth waits until depth requests are waiting.
func waitDepth(t *testing.T, p *proc, depth int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("queue depth %d", depth), func() (bool, any) {
		q := readQueue(t, p)
		return q.Depth == depth, q
	})
}

// scrape returns the metric families of /metrics.
func scrape(t *testing.T, p *proc) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// counts returns proxyd_requests_total as "priority/outcome" → value,
// leaving out zeros.
func counts(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	fam := scrape(t, p)["proxyd_requests_total"]
	if fam == nil {
		t.Fatal("no proxyd_requests_total")
	}
	for _, m := range fam.GetMetric() {
		var pr, oc string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "priority":
				pr = l.GetValue()
			case "outcome":
				oc = l.GetValue()
			}
		}
		if v := m.GetCounter().GetValue(); v != 0 {
			out[pr+"/"+oc] = v
		}
	}
	return out
}

// TestRequestsTotalMatchesTraffic sends a known mix and checks that
// proxyd_requests_total by priority and outcome is exactly what was sent,
// and that queue depth by priority in /metrics equals /api/v1/queue.
func TestRequestsTotalMatchesTraffic(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	refused := "http://" + testnet.FreeAddr(t) + "/"

	p := startWithConfig(t, "limits:\n  concurrency: 1\n  queue_size: 3\n")
	c := p.client()
	defer c.CloseIdleConnections()

	type res struct {
		status int
		err    error
	}
	send := func(ctx context.Context, u string, hdr ...string) chan res {
		ch := make(chan res, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			resp, err := c.Do(req)
			if err != nil {
				ch <- res{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ch <- res{status: resp.StatusCode}
		}()
		return ch
	}
	bg := context.Background()
	expect := func(ch chan res, status int) {
		t.Helper()
		r := <-ch
		if r.err != nil || r.status != status {
			t.Fatalf("got %+v, want %d", r, status)
		}
	}

	slow := send(bg, up.URL+"/slow", "X-Priority", "0") // holds the only slot
	waitInFlight(t, p, 1)
	timedOut := send(bg, up.URL+"/a", "X-Priority", "5", "X-Proxy-Timeout", "200ms")
	expect(timedOut, 503) // queue_timeout{5}
	b := send(bg, up.URL+"/b", "X-Priority", "5")
	waitDepth(t, p, 1)
	cancelC, stopC := context.WithCancel(bg)
	cReq := send(cancelC, up.URL+"/c", "X-Priority", "5")
	waitDepth(t, p, 2)
	dCtx, stopD := context.WithCancel(bg)
	d := send(dCtx, up.URL+"/d", "Priority", "u=4")
	waitDepth(t, p, 3)

	// Depth by priority agrees between /metrics and /api/v1/queue.
	q := readQueue(t, p)
	fams := scrape(t, p)
	for _, m := range fams["proxyd_queue_depth"].GetMetric() {
		pr := m.GetLabel()[0].GetValue()
		if int(m.GetGauge().GetValue()) != q.ByPriority[pr] {
			t.Fatalf("depth{%s}: metrics %v, api %d", pr, m.GetGauge().GetValue(), q.ByPriority[pr])
		}
	}
	if q.ByPriority["5"] != 2 || q.ByPriority["4"] != 1 || q.InFlight != 1 {
		t.Fatalf("queue %+v", q)
	}

	expect(send(bg, up.URL+"/e", "X-Priority", "6"), 503) // rejected{6}: queue full
	f := send(bg, up.URL+"/f", "X-Priority", "2")         // evicts c: shed{5}
	if r := <-cReq; r.err != nil || r.status != 503 {
		t.Fatalf("evicted request: %+v", r)
	}
	stopC()
	stopD() // d's client leaves: canceled{4}
	if r := <-d; r.err == nil {
		t.Fatalf("canceled request answered %d", r.status)
	}
	waitDepth(t, p, 2)
	expect(send(bg, up.URL+"/g", "X-Priority", "banana"), 400)                 // denied{3}
	expect(send(bg, up.URL+"/h", "Via", "1.1 proxyd", "X-Priority", "7"), 508) // denied{7}
	close(release)
	expect(slow, 200)                                 // forwarded{0}
	expect(f, 200)                                    // forwarded{2}
	expect(b, 200)                                    // forwarded{5}
	expect(send(bg, refused, "X-Priority", "7"), 502) // error{7}

	want := map[string]float64{
		"0/forwarded": 1, "2/forwarded": 1, "5/forwarded": 1,
		"5/queue_timeout": 1, "6/rejected": 1, "5/shed": 1, "4/canceled": 1,
		"3/denied": 1, "7/denied": 1, "7/error": 1,
	}
	deadline := time.Now().Add(5 * time.Second)
	var got map[string]float64
	for time.Now().Before(deadline) {
		if got = counts(t, p); fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("proxyd_requests_total\n got %v\nwant %v", got, want)
}

// waitInFlight waits until n requests are in flight.
func waitInFlight(t *testing.T, p *proc, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("in_flight %d", n), func() (bool, any) {
		q := readQueue(t, p)
		return q.InFlight == n, q
	})
}

func readLimits(t *testing.T, p *proc) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/api/v1/limits")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestConfigFileWatch edits the config file in place and by rename (as
// editors do) and sees the new limits within 2 s; an invalid edit leaves the
// old limits and logs why.
func TestConfigFileWatch(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxyd.yaml")
	writeFile(t, cfg, "limits:\n  rate: 5\n")
	p := startProxyd(t, "--config", cfg)
	waitRate := func(want float64) {
		t.Helper()
		waitFor(t, 2*time.Second, fmt.Sprintf("rate %v", want), func() (bool, any) {
			l := readLimits(t, p)
			return l["rate"] == want, l
		})
	}
	writeFile(t, cfg, "limits:\n  rate: 7\n") // in place
	waitRate(7)

	tmp := filepath.Join(dir, ".proxyd.yaml.swp")
	writeFile(t, tmp, "limits:\n  rate: 9\n")
	if err := os.Rename(tmp, cfg); err != nil { // rename over, as editors save
		t.Fatal(err)
	}
	waitRate(9)

	writeFile(t, cfg, "limits:\n  rate: -1\n")
	line := p.log.waitLine(t, "reload failed; keeping the current configuration")
	if !strings.Contains(fmt.Sprint(line["error"]), "limits.rate") {
		t.Fatalf("reload error does not name the key: %v", line["error"])
	}
	if got := readLimits(t, p)["rate"]; got != 9.0 {
		t.Fatalf("invalid edit changed rate to %v", got)
	}
}

// TestAdminTokenOverSockets checks the token from the config file guards
// /api/ on the real admin listener, and /healthz stays open.
func TestAdminTokenOverSockets(t *testing.T) {
	p := startWithConfig(t, "admin:\n  token: s3cret\n")
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+p.admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/api/v1/limits", "") != 401 || get("/api/v1/limits", "nope") != 401 || get("/api/v1/limits", "s3cret") != 200 {
		t.Fatal("token not enforced")
	}
	if get("/healthz", "") != 200 || get("/metrics", "") != 200 {
		t.Fatal("open endpoints need a token")
	}
}

// TestPatchDrainsWaitingQueue: requests waiting on a slow rate are
// admitted at once when a PATCH raises it.
func TestPatchDrainsWaitingQueue(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer up.Close()
	p := startWithConfig(t, "limits:\n  rate: 0.01\n  burst: 1\n")
	c := p.client()
	defer c.CloseIdleConnections()
	done := make(chan int, 5)
	for i := 0; i < 5; i++ {
		go func() { done <- getStatus(c, up.URL) }()
	}
	waitDepth(t, p, 4) // one took the burst token; four wait ~100 s each
	req, _ := http.NewRequest("PATCH", "http://"+p.admin+"/api/v1/limits", strings.NewReader(`{"rate":1000,"burst":10}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PATCH: %v %v", err, resp)
	}
	resp.Body.Close()
	for i := 0; i < 5; i++ {
		select {
		case s := <-done:
			if s != 200 {
				t.Fatalf("status %d", s)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiting requests not admitted after the PATCH")
		}
	}
	p.log.waitLine(t, "limits changed through the admin API")
}

// TestConcurrentPatchesUnderTraffic: PATCHes from many goroutines while
// requests flow through the proxy (run under -race): every PATCH applies
// whole, every request gets exactly one answer.
func TestConcurrentPatchesUnderTraffic(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer up.Close()
	p := startWithConfig(t, "limits:\n  rate: 500\n  burst: 50\n  concurrency: 8\n")
	c := p.client()
	defer c.CloseIdleConnections()

	stop := make(chan struct{})
	var traffic sync.WaitGroup
	var answered, failed atomic.Int64
	for i := 0; i < 8; i++ {
		traffic.Add(1)
		go func() {
			defer traffic.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(up.URL)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 || resp.StatusCode == 503 {
					answered.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	var patches sync.WaitGroup
	for i := 1; i <= 20; i++ {
		patches.Add(1)
		go func(i int) {
			defer patches.Done()
			body := fmt.Sprintf(`{"rate":%d,"burst":%d,"concurrency":%d}`, 100*i, i, i)
			req, _ := http.NewRequest("PATCH", "http://"+p.admin+"/api/v1/limits", strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("PATCH %d: %v", i, err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("PATCH %d: %d", i, resp.StatusCode)
			}
		}(i)
	}
	patches.Wait()
	close(stop)
	traffic.Wait()
	l := readLimits(t, p)
	rate, burst, conc := l["rate"].(float64), l["burst"].(float64), l["concurrency"].(float64)
	if rate != 100*burst || conc != burst {
		t.Fatalf("final limits %v mix different PATCHes", l)
	}
	if failed.Load() != 0 || answered.Load() == 0 {
		t.Fatalf("%d requests answered, %d failed", answered.Load(), failed.Load())
	}
	// Each handler releases its slot just after its client has the body.
	waitFor(t, 20*time.Second, "nothing waiting or in flight", func() (bool, any) {
		q := readQueue(t, p)
		return q.Depth == 0 && q.InFlight == 0, q
	})
}

// TestAdminHostCheck drives the admin listener of a running proxyd with no
// token: a request whose Host is a name not listed (what a page that
// rebinds its own name to 127.0.0.1 makes the browser send) is refused 421
// on every path, naming the Host and admin.allowed_hosts, and the limits
// stay; IP literals (a probe by pod IP), localhost and the names of
// admin.allowed_hosts, from the file or from PROXYD_ADMIN_ALLOWED_HOSTS,
// are answered.
func TestAdminHostCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *proc
	}{
		{"file", func(t *testing.T) *proc {
			return startWithConfig(t, "admin:\n  allowed_hosts: [proxyd-admin.internal]\n")
		}},
		{"environment", func(t *testing.T) *proc {
			return startProxydEnv(t, append([]string{"PROXYD_ADMIN_ALLOWED_HOSTS=other.internal, proxyd-admin.internal"}, loopbackAllow...))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.start(t)
			port := p.admin[strings.LastIndexByte(p.admin, ':')+1:]
			do := func(method, path, host, body string) (int, string) {
				t.Helper()
				req, err := http.NewRequest(method, "http://"+p.admin+path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Host = host
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}

			code, body := do("PATCH", "/api/v1/limits", "attacker.example:"+port, `{"rate":1}`)
			if code != http.StatusMisdirectedRequest || !strings.Contains(body, `got Host "attacker.example:`+port+`"`) || !strings.Contains(body, `add "attacker.example" to admin.allowed_hosts`) {
				t.Fatalf("PATCH with Host attacker.example: %d %q, want 421 naming the Host and admin.allowed_hosts", code, body)
			}
			if rate := readLimits(t, p)["rate"]; rate != 100.0 {
				t.Fatalf("rate %v after the refused PATCH, want 100", rate)
			}
			for _, path := range []string{"/healthz", "/readyz", "/metrics", "/dashboard", "/api/v1/queue"} {
				if code, body := do("GET", path, "attacker.example:"+port, ""); code != http.StatusMisdirectedRequest {
					t.Errorf("GET %s with Host attacker.example: %d %.100q, want 421", path, code, body)
				}
				if code, body := do("GET", path, "10.244.1.17:"+port, ""); code != http.StatusOK {
					t.Errorf("GET %s with Host 10.244.1.17 (a pod IP): %d %.100q, want 200", path, code, body)
				}
			}
			for i, host := range []string{"127.0.0.1:" + port, "[::1]:" + port, "localhost:" + port, "LOCALHOST:" + port, "proxyd-admin.internal:" + port, "Proxyd-Admin.Internal"} {
				rate := 10 + i
				if code, body := do("PATCH", "/api/v1/limits", host, fmt.Sprintf(`{"rate":%d}`, rate)); code != http.StatusOK {
					t.Errorf("PATCH with Host %q: %d %q, want 200", host, code, body)
					continue
				}
				if got := readLimits(t, p)["rate"]; got != float64(rate) {
					t.Errorf("PATCH with Host %q: rate %v afterwards, want %d", host, got, rate)
				}
			}
			line := p.log.waitLine(t, "admin request refused: Host not allowed")
			if line["host"] != "attacker.example:"+port {
				t.Errorf("refusal logged with host %v", line["host"])
			}
		})
	}
}
