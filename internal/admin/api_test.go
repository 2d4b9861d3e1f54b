package admin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend is the Backend of every test here, as the app wires it: it
// applies what change leaves when change returns nil, under its lock. With
// a dispatcher (newFakeBackend) its Stats are the dispatcher's; without
// one (newSpecBackend) they are fixed and fully populated.
type fakeBackend struct {
	mu    sync.Mutex
	l     config.Limits
	hosts []config.HostRule
	d     *dispatch.Dispatcher // nil: fixed Stats
	clock *clock.Fake          // the dispatcher's and the server's
	sets  int
	// dirty records that a change returned an error after modifying the
	// limits or host rules it was given.
	dirty bool
}

var _ Backend = (*fakeBackend)(nil)

func newFakeBackend() *fakeBackend {
	l := config.Default().Limits
	clk := clock.NewFake(time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC))
	return &fakeBackend{l: l, hosts: []config.HostRule{}, clock: clk, d: dispatch.New(dispatch.Config{Limits: toDispatch(l)}, dispatch.Deps{Clock: clk})}
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
		if !sameLimits(l, b.l) || !slices.EqualFunc(hosts, b.hosts, sameRule) {
			b.dirty = true
		}
		return err
	}
	b.l, b.hosts = l, hosts
	b.sets++
	if b.d != nil {
		b.d.SetLimits(toDispatch(l))
	}
	return nil
}

func sameRule(a, b config.HostRule) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func (b *fakeBackend) Stats() dispatch.Stats {
	if b.d != nil {
		return b.d.Stats()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := dispatch.Stats{Depth: 3, InFlight: 2, Tunnels: 1, OldestWait: 1500 * time.Millisecond, Limits: toDispatch(b.l)}
	s.ByPriority[0], s.ByPriority[6] = 1, 2
	s.Waiting[dispatch.Tunnel] = 1
	for _, q := range b.l.Quotas {
		s.Quotas = append(s.Quotas, dispatch.QuotaStats{Quota: dispatch.Quota{Limit: q.Limit, Per: q.Per, Unit: q.UnitOrDefault()}, Used: 1})
	}
	return s
}

func newTestServer(t *testing.T, token string) (*httptest.Server, *fakeBackend) {
	t.Helper()
	b := newFakeBackend()
	s := New(Config{Token: token}, Deps{Backend: b, Clock: b.clock, Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
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
	want := `{"rate":100,"burst":10,"concurrency":64,"queue_size":10000,"max_wait":"30s","quotas":[],"hosts":[]}` + "\n"
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
	put := `{"rate":5,"burst":2,"concurrency":1,"queue_size":10,"max_wait":"1m","quotas":[],"hosts":[{"match":"*.example.com","rate":1,"concurrency":2}]}`
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
		{"host match a metrics label", "PATCH", `{"hosts":[{"match":"a.com"},{"match":"other"}]}`, 400, `hosts[1].match: "other" is reserved`},
		{"put partial", "PUT", `{"rate":5}`, 400, "burst: required"},
		{"absurd rate", "PATCH", `{"rate":1e12}`, 400, "rate: must be <="},
		{"absurd queue", "PATCH", `{"queue_size":1000000000000}`, 400, "queue_size: must be <="},
		{"absurd max_wait", "PATCH", `{"max_wait":"8760h"}`, 400, "max_wait: must be <="},
		{"fractional burst", "PATCH", `{"burst":1.5}`, 400, "burst: wrong type"},
		{"too large", "PATCH", `{"rate":1,"x":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger than"},
		// Not a JSON object: no "no change" for null.
		{"null body", "PATCH", `null`, 400, "body: wrong type: got JSON null, want a JSON object"},
		{"string body", "PATCH", `"rate"`, 400, "body: wrong type: got JSON string, want a JSON object"},
		{"number body", "PUT", `5`, 400, "body: wrong type: got JSON number, want a JSON object"},
		{"trailing brace", "PATCH", `{"rate":1}}`, 400, "body: invalid JSON"},
		// Exact names, each once.
		{"name case", "PATCH", `{"Rate":50}`, 400, "Rate: unknown field (names are case-sensitive)"},
		{"name case queue_size", "PATCH", `{"QUEUE_SIZE":5}`, 400, "QUEUE_SIZE: unknown field (names are case-sensitive)"},
		{"given twice", "PATCH", `{"rate":1,"rate":2}`, 400, "rate: given twice"},
		{"given twice, once null", "PATCH", `{"rate":null,"rate":2}`, 400, "rate: given twice"},
		{"hosts given twice", "PATCH", `{"hosts":[],"hosts":[{"match":"a.com"}]}`, 400, "hosts: given twice"},
		{"host name case", "PATCH", `{"hosts":[{"Match":"a.com"}]}`, 400, "hosts[0].Match: unknown field (names are case-sensitive)"},
		{"host field twice", "PATCH", `{"hosts":[{"match":"a.com"},{"match":"b.com","rate":1,"rate":2}]}`, 400, "hosts[1].rate: given twice"},
		{"host not an object (null)", "PATCH", `{"hosts":[null]}`, 400, "hosts[0]: wrong type: got JSON null, want an object"},
		// Numbers that do not fit.
		{"rate out of range", "PATCH", `{"rate":1e400}`, 400, "rate: out of range: got JSON number 1e400"},
		{"burst out of range", "PATCH", `{"burst":99999999999999999999}`, 400, "burst: out of range: got JSON number 99999999999999999999"},
		{"negative out of range", "PATCH", `{"queue_size":-99999999999999999999}`, 400, "queue_size: out of range"},
		{"host rate out of range", "PATCH", `{"hosts":[{"match":"a.com","rate":-1e999}]}`, 400, "hosts[0].rate: out of range"},
		{"host concurrency out of range", "PATCH", `{"hosts":[{"match":"a.com","concurrency":99999999999999999999}]}`, 400, "hosts[0].concurrency: out of range"},
		// Host rules have the global upper bounds.
		{"absurd host rate", "PATCH", `{"hosts":[{"match":"a.com","rate":1e300}]}`, 400, "hosts[0].rate: must be <= 1e+09"},
		{"absurd host burst", "PATCH", `{"hosts":[{"match":"a.com","burst":2000000000}]}`, 400, "hosts[0].burst: must be <= 1000000000, got 2000000000"},
		{"absurd host concurrency", "PUT", `{"rate":1,"burst":1,"concurrency":1,"queue_size":1,"max_wait":"1s","hosts":[{"match":"a.com","concurrency":2000000000}]}`, 400, "hosts[0].concurrency: must be <= 1000000 (omit it for unlimited), got 2000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := call(t, tc.method, srv.URL+"/api/v1/limits", "", tc.body)
			var e map[string]string
			if code != tc.status || h.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e["error"], tc.errWant) {
				t.Fatalf("%d %s, want %d with error containing %q", code, body, tc.status, tc.errWant)
			}
			if l, _ := b.Limits(); !sameLimits(l, config.Default().Limits) {
				t.Fatalf("limits changed: %+v", l)
			}
		})
	}
	if b.sets != 0 {
		t.Fatalf("SetLimits called %d times", b.sets)
	}
	// The change function leaves the backend's copies alone when it fails.
	if b.dirty {
		t.Fatal("a failed change modified the limits it was given")
	}
}

// TestEveryProblemListed: a 400 lists every problem, the fields that
// could not be read first, then those a PUT lacks, then the invalid values
// (global, then host rules).
func TestEveryProblemListed(t *testing.T) {
	srv, b := newTestServer(t, "")
	for _, tc := range []struct {
		name, method, body, want string
	}{
		{"global and host values", "PATCH", `{"rate":-1,"hosts":[{"match":""}]}`,
			"rate: must be >= 0, got -1; hosts[0].match: must not be empty"},
		{"read and values", "PATCH", `{"rate":-1,"max_wait":"soon","Burst":3,"queue_size":0,"hosts":[5,{"match":"*.","rps":1,"rate":-2}]}`,
			`max_wait: not a duration: "soon" (want e.g. "30s"); Burst: unknown field (names are case-sensitive); hosts[0]: wrong type: got JSON number 5, want an object; hosts[1].rps: unknown field; ` +
				`rate: must be >= 0, got -1; queue_size: must be >= 1, got 0; hosts[1].match: invalid pattern "*.": nothing after "*."; hosts[1].rate: must be >= 0 (0 or omitted = unlimited), got -2`},
		{"wrong types", "PATCH", `{"rate":"fast","burst":1.5,"concurrency":true}`,
			"rate: wrong type: got JSON string, want a number; burst: wrong type: got JSON number 1.5, want an integer; concurrency: wrong type: got JSON boolean, want an integer"},
		{"put missing and invalid", "PUT", `{"rate":-1,"burst":1,"concurrency":1,"max_wait":null}`,
			"queue_size: required by PUT (use PATCH to change some fields); max_wait: required by PUT (use PATCH to change some fields); quotas: required by PUT (use PATCH to change some fields); hosts: required by PUT (use PATCH to change some fields); rate: must be >= 0, got -1"},
		{"at most ten", "PATCH", `{"hosts":[` + strings.TrimSuffix(strings.Repeat(`{"match":""},`, 15), ",") + `]}`,
			strings.Repeat("hosts[N].match: must not be empty; ", 10) + "and 5 more problems"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := call(t, tc.method, srv.URL+"/api/v1/limits", "", tc.body)
			var e map[string]string
			if code != 400 || json.Unmarshal([]byte(body), &e) != nil {
				t.Fatalf("%d %s", code, body)
			}
			got := regexp.MustCompile(`hosts\[1[0-4]\]|hosts\[[2-9]\]`).ReplaceAllString(e["error"], "hosts[N]")
			if tc.name == "at most ten" {
				got = strings.ReplaceAll(strings.ReplaceAll(got, "hosts[0]", "hosts[N]"), "hosts[1]", "hosts[N]")
			}
			if got != tc.want {
				t.Fatalf("error\n got %q\nwant %q", e["error"], tc.want)
			}
		})
	}
	if l, hosts := b.Limits(); !sameLimits(l, config.Default().Limits) || len(hosts) != 0 || b.sets != 0 || b.dirty {
		t.Fatalf("limits changed: %+v %+v (%d sets)", l, hosts, b.sets)
	}
}

// TestErrorsQuoteBoundedInput: whatever the size of a field, a 400 echoes
// at most a few hundred bytes of it.
func TestErrorsQuoteBoundedInput(t *testing.T) {
	srv, _ := newTestServer(t, "")
	long := strings.Repeat("a", 60_000)
	digits := strings.Repeat("9", 60_000)
	name := strings.Repeat(strings.Repeat("a", 60)+".", 4) + "com" // a valid host name over maxQuote bytes
	for _, tc := range []struct {
		name, body, want string
	}{
		{"max_wait", `{"max_wait":"` + long + `"}`, `max_wait: not a duration: "aaa`},
		{"unknown field", `{"` + long + `":1}`, "unknown field"},
		{"host field", `{"hosts":[{"match":"a.com","` + long + `":1}]}`, "hosts[0].aaa"},
		{"match", `{"hosts":[{"match":"` + long + `"}]}`, `(60000 bytes): host name longer than 253 bytes`},
		{"match twice", `{"hosts":[{"match":"` + name + `"},{"match":"` + name + `"}]}`, `hosts[1].match: "aaa`},
		{"match port", `{"hosts":[{"match":"a.com:` + digits + `"}]}`, "hosts[0].match: invalid pattern"},
		{"burst digits", `{"burst":` + digits + `}`, "burst: out of range"},
		{"rate digits", `{"rate":` + digits + `}`, "rate: out of range"},
		{"fraction", `{"burst":1.` + digits + `}`, "burst: wrong type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := call(t, "PATCH", srv.URL+"/api/v1/limits", "", tc.body)
			var e map[string]string
			if code != 400 || json.Unmarshal([]byte(body), &e) != nil {
				t.Fatalf("%d %.300s", code, body)
			}
			msg := e["error"]
			if len(msg) > 1024 || strings.Contains(msg, long[:maxQuote+1]) || strings.Contains(msg, digits[:maxQuote+1]) {
				t.Fatalf("error of %d bytes quotes too much: %.300s…", len(msg), msg)
			}
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "bytes)") {
				t.Fatalf("error %q, want it to contain %q and the cut input's length", msg, tc.want)
			}
		})
	}
}

// TestDeclaredTooLarge: a Content-Length over the limit is answered 413
// at once, without waiting for (or reading) the body.
func TestDeclaredTooLarge(t *testing.T) {
	srv, b := newTestServer(t, "")
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Only the head: a server that read the body first would wait.
	if _, err := fmt.Fprintf(conn, "PATCH /api/v1/limits HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"rate\":5}", maxBody+1); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "body: larger than 65536 bytes") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// In-process too: a short body under a long declared length.
	s := New(Config{AllowedHosts: []string{requestHost}}, Deps{Backend: b})
	r := httptest.NewRequest("PATCH", "/api/v1/limits", strings.NewReader(`{"rate":5}`))
	r.ContentLength = maxBody + 1
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared length %d: %d %s", r.ContentLength, w.Code, w.Body)
	}
	if l, _ := b.Limits(); !sameLimits(l, config.Default().Limits) {
		t.Fatalf("limits changed: %+v", l)
	}
}

// TestRemainingSecondsUsesClock: remaining_seconds is measured on the
// server's clock.
func TestRemainingSecondsUsesClock(t *testing.T) {
	srv, b := newTestServer(t, "")
	b.d.Pause("api.example.com:443", b.clock.Now().Add(5*time.Second))
	b.clock.Advance(800 * time.Millisecond)
	code, _, body := call(t, "GET", srv.URL+"/api/v1/queue", "", "")
	var q struct {
		Paused []struct {
			Destination string  `json:"destination"`
			Until       string  `json:"until"`
			Remaining   float64 `json:"remaining_seconds"`
		} `json:"paused"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &q) != nil || len(q.Paused) != 1 {
		t.Fatalf("%d %s", code, body)
	}
	if p := q.Paused[0]; p.Destination != "api.example.com:443" || p.Until != "2026-11-22T01:30:05Z" || p.Remaining != 4.2 {
		t.Fatalf("paused %+v, want 4.2 s remaining until 01:30:05", p)
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
	// oldest_wait_seconds is the wait so far of the oldest waiting request.
	b.clock.Advance(1500 * time.Millisecond)
	code, _, body = call(t, "GET", srv.URL+"/api/v1/queue", "", "")
	if q.Oldest = nil; code != 200 || json.Unmarshal([]byte(body), &q) != nil || q.Oldest == nil || *q.Oldest != 1.5 {
		t.Fatalf("after 1.5 s: %d %s, want oldest_wait_seconds 1.5", code, body)
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
	s := New(Config{AllowedHosts: []string{requestHost}}, Deps{})
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
