package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend is a real dispatcher behind the Backend interface, as the
// app wires it.
type fakeBackend struct {
	mu    sync.Mutex
	l     config.Limits
	hosts []config.HostRule
	d     *dispatch.Dispatcher
	sets  int
}

func newFakeBackend() *fakeBackend {
	l := config.Default().Limits
	return &fakeBackend{l: l, hosts: []config.HostRule{}, d: dispatch.New(dispatch.Config{Limits: toDispatch(l)}, dispatch.Deps{})}
}

func toDispatch(l config.Limits) dispatch.Limits {
	return dispatch.Limits{Rate: l.Rate, Burst: l.Burst, Concurrency: l.Concurrency, QueueSize: l.QueueSize, MaxWait: l.MaxWait, MaxTunnels: l.MaxTunnels}
}

func (b *fakeBackend) Limits() (config.Limits, []config.HostRule) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.l, append([]config.HostRule(nil), b.hosts...)
}

func (b *fakeBackend) UpdateLimits(change func(*config.Limits, *[]config.HostRule) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, hosts := b.l, append([]config.HostRule(nil), b.hosts...)
	if err := change(&l, &hosts); err != nil {
		return err
	}
	b.l, b.hosts = l, hosts
	b.sets++
	b.d.SetLimits(toDispatch(l))
	return nil
}

func (b *fakeBackend) Stats() dispatch.Stats { return b.d.Stats() }

func newTestServer(t *testing.T, token string) (*httptest.Server, *fakeBackend) {
	t.Helper()
	b := newFakeBackend()
	s := New(Config{Token: token}, Deps{Backend: b, Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# metrics\n")
	})})
	s.SetReady(true)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		b.d.Close()
	})
	return srv, b
}

func call(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestGetLimits(t *testing.T) {
	srv, _ := newTestServer(t, "")
	code, h, body := call(t, "GET", srv.URL+"/api/v1/limits", "", "")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", code, h.Get("Content-Type"))
	}
	want := `{"rate":100,"burst":10,"concurrency":64,"queue_size":10000,"max_wait":"30s","hosts":[]}` + "\n"
	if body != want {
		t.Fatalf("body %s, want %s", body, want)
	}
}

func TestPatchAndPut(t *testing.T) {
	srv, b := newTestServer(t, "")
	code, _, body := call(t, "PATCH", srv.URL+"/api/v1/limits", "", `{"rate":50,"concurrency":8,"max_wait":"10s"}`)
	if code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got["rate"] != 50.0 || got["concurrency"] != 8.0 || got["max_wait"] != "10s" || got["burst"] != 10.0 {
		t.Fatalf("PATCH answer %v", got)
	}
	if s := b.Stats(); s.Limits.Rate != 50 || s.Limits.Concurrency != 8 || s.Limits.MaxWait != 10*time.Second {
		t.Fatalf("dispatcher limits %+v", s.Limits)
	}
	put := `{"rate":5,"burst":2,"concurrency":1,"queue_size":10,"max_wait":"1m","hosts":[{"match":"*.example.com","rate":1,"concurrency":2}]}`
	code, _, body = call(t, "PUT", srv.URL+"/api/v1/limits", "", put)
	if code != 200 || !strings.Contains(body, `"hosts":[{"match":"*.example.com","rate":1,"concurrency":2}]`) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if l, hosts := b.Limits(); l.QueueSize != 10 || len(hosts) != 1 || l.MaxTunnels != 1024 {
		t.Fatalf("after PUT: %+v %+v", l, hosts)
	}
}

func TestBadUpdatesChangeNothing(t *testing.T) {
	srv, b := newTestServer(t, "")
	for _, tc := range []struct {
		name, method, body string
		status             int
		errWant            string
	}{
		{"malformed", "PATCH", `{"rate":`, 400, "body:"},
		{"not an object", "PATCH", `[1,2]`, 400, "body:"},
		{"empty", "PATCH", ``, 400, "body: empty"},
		{"trailing", "PATCH", `{"rate":1}{"rate":2}`, 400, "more than one"},
		{"unknown field", "PATCH", `{"rat":5}`, 400, "rat: unknown field"},
		{"unknown host field", "PATCH", `{"hosts":[{"match":"a.com"},{"match":"b.com","rps":1}]}`, 400, "hosts[1].rps: unknown field"},
		{"host wrong type", "PATCH", `{"hosts":[{"match":"a.com","rate":"x"}]}`, 400, "hosts[0].rate: wrong type"},
		{"host not an object", "PATCH", `{"hosts":[5]}`, 400, "hosts[0]: wrong type"},
		{"hosts not an array", "PATCH", `{"hosts":{}}`, 400, "hosts: wrong type"},
		{"wrong type", "PATCH", `{"rate":"fast"}`, 400, "rate: wrong type"},
		{"negative rate", "PATCH", `{"rate":-1}`, 400, "rate: "},
		{"zero burst", "PATCH", `{"burst":0}`, 400, "burst: "},
		{"negative concurrency", "PATCH", `{"concurrency":-2}`, 400, "concurrency: "},
		{"zero queue", "PATCH", `{"queue_size":0}`, 400, "queue_size: "},
		{"bad duration", "PATCH", `{"max_wait":"soon"}`, 400, "max_wait: "},
		{"zero duration", "PATCH", `{"max_wait":"0s"}`, 400, "max_wait: "},
		{"number duration", "PATCH", `{"max_wait":30}`, 400, "max_wait: wrong type"},
		{"bad host", "PATCH", `{"hosts":[{"match":"*."}]}`, 400, "hosts[0].match"},
		{"put partial", "PUT", `{"rate":5}`, 400, "burst: required"},
		{"absurd rate", "PATCH", `{"rate":1e12}`, 400, "rate: must be <="},
		{"absurd queue", "PATCH", `{"queue_size":1000000000000}`, 400, "queue_size: must be <="},
		{"absurd max_wait", "PATCH", `{"max_wait":"8760h"}`, 400, "max_wait: must be <="},
		{"fractional burst", "PATCH", `{"burst":1.5}`, 400, "burst: wrong type"},
		{"too large", "PATCH", `{"rate":1,"x":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := call(t, tc.method, srv.URL+"/api/v1/limits", "", tc.body)
			var e map[string]string
			if code != tc.status || h.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e["error"], tc.errWant) {
				t.Fatalf("%d %s, want %d with error containing %q", code, body, tc.status, tc.errWant)
			}
			if l, _ := b.Limits(); l != config.Default().Limits {
				t.Fatalf("limits changed: %+v", l)
			}
		})
	}
	if b.sets != 0 {
		t.Fatalf("SetLimits called %d times", b.sets)
	}
}

func TestQueueEndpoint(t *testing.T) {
	srv, b := newTestServer(t, "")
	b.d.SetLimits(dispatch.Limits{Rate: 0, Burst: 1, Concurrency: 1, QueueSize: 10, MaxWait: time.Minute, MaxTunnels: 1})
	p, err := b.d.Enqueue(dispatch.Request{Urgency: 3})
	if err != nil {
		t.Fatal(err)
	}
	var waiting []*dispatch.Ticket
	for _, u := range []int{0, 5, 5} {
		tk, err := b.d.Enqueue(dispatch.Request{Urgency: u})
		if err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, tk)
	}
	code, _, body := call(t, "GET", srv.URL+"/api/v1/queue", "", "")
	var q struct {
		Depth      int            `json:"depth"`
		InFlight   int            `json:"in_flight"`
		ByPriority map[string]int `json:"by_priority"`
		Oldest     *float64       `json:"oldest_wait_seconds"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &q) != nil {
		t.Fatalf("%d %s", code, body)
	}
	if q.Depth != 3 || q.InFlight != 1 || q.ByPriority["0"] != 1 || q.ByPriority["5"] != 2 || len(q.ByPriority) != 8 || q.Oldest == nil {
		t.Fatalf("queue %s", body)
	}
	for _, tk := range waiting {
		tk.Cancel()
	}
	p.Cancel()
}

func TestToken(t *testing.T) {
	srv, _ := newTestServer(t, "s3cret")
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/api/v1/limits", "", 401},
		{"/api/v1/limits", "wrong", 401},
		{"/api/v1/limits", "s3cret", 200},
		{"/api/v1/queue", "", 401},
		{"/api/v1/queue", "s3cret", 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/metrics", "", 200},
	} {
		code, h, body := call(t, "GET", srv.URL+tc.path, tc.token, "")
		if code != tc.want {
			t.Fatalf("%s token %q: %d %s", tc.path, tc.token, code, body)
		}
		if code == 401 && (h.Get("WWW-Authenticate") != `Bearer realm="proxyd"` || !strings.Contains(body, "unauthorized")) {
			t.Fatalf("401 without challenge: %v %s", h, body)
		}
	}
	// The scheme is case-insensitive; the token is not, nor is any other
	// scheme accepted.
	for hdr, want := range map[string]int{"bearer s3cret": 200, "Bearer S3CRET": 401, "Basic s3cret": 401, "Bearer  s3cret": 401, "Bearer": 401} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/limits", nil)
		req.Header.Set("Authorization", hdr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("Authorization %q: %d, want %d", hdr, resp.StatusCode, want)
		}
	}
	// A PATCH without the token changes nothing.
	if code, _, _ := call(t, "PATCH", srv.URL+"/api/v1/limits", "", `{"rate":1}`); code != 401 {
		t.Fatalf("PATCH without token: %d", code)
	}
}

func TestMethodsAndHealth(t *testing.T) {
	srv, _ := newTestServer(t, "")
	if code, h, _ := call(t, "DELETE", srv.URL+"/api/v1/limits", "", ""); code != 405 || !strings.Contains(h.Get("Allow"), "PATCH") {
		t.Fatalf("DELETE: %d Allow %q", code, h.Get("Allow"))
	}
	if code, _, _ := call(t, "GET", srv.URL+"/api/v1/nope", "", ""); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
	if code, _, body := call(t, "GET", srv.URL+"/healthz", "", ""); code != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", code, body)
	}
	s := New(Config{}, Deps{})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 {
		t.Fatalf("readyz before SetReady(true): %d", rec.Code)
	}
}

// TestConcurrentPatches runs PATCHes from many goroutines (under -race):
// each applies whole, and the final state is one of the PATCHes.
func TestConcurrentPatches(t *testing.T) {
	srv, b := newTestServer(t, "")
	var wg sync.WaitGroup
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"rate":%d,"burst":%d}`, i, i)
			if code, _, resp := call(t, "PATCH", srv.URL+"/api/v1/limits", "", body); code != 200 {
				t.Errorf("PATCH %d: %d %s", i, code, resp)
			}
		}(i)
	}
	wg.Wait()
	l, _ := b.Limits()
	if float64(l.Burst) != l.Rate || b.sets != 20 {
		t.Fatalf("final %+v after %d sets: rate and burst from different PATCHes", l, b.sets)
	}
}
