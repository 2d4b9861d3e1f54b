package proxy_test

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

// full returns a setup with one concurrency slot and room for queueSize
// waiting requests.
func full(queueSize int) func(*setup) {
	return func(s *setup) {
		s.cfg.Limits.Concurrency = 1
		s.cfg.Limits.QueueSize = queueSize
	}
}

func TestQueueFull(t *testing.T) {
	t.Parallel()
	for _, status := range []int{503, 429} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, full(1), func(s *setup) { s.cfg.Limits.RejectStatus = status })
			o := e.newOrigin(nil)
			holdID, held := o.hold("")
			waiting := e.req(http.MethodGet, o.URL+"/waiting", nil, "X-Priority", "3")
			wres := e.goDo(waiting)
			e.waitDepth(1)

			// As urgent as the waiting one, or less: refused at once.
			for _, u := range []string{"3", "7"} {
				r := e.req(http.MethodGet, o.URL+"/refused"+u, nil, "X-Priority", u)
				wantAnswer(t, e.do(r), status, proxyStatus("connection_limit_reached", "queue full"), true)
				if rec := e.wantRecord(idOf(r), outcome.Rejected, status); strconv.Itoa(rec.Priority) != u {
					t.Errorf("Record priority %d, want %s", rec.Priority, u)
				}
			}
			if s := e.disp.Stats(); s.Depth != 1 {
				t.Errorf("depth %d after refusals, want 1", s.Depth)
			}
			o.release()
			wantStatus(t, recv(t, held, "the held response"), 200)
			wantStatus(t, recv(t, wres, "the waiting response"), 200)
			e.wantRecord(holdID, outcome.Forwarded, 200)
			e.wantRecord(idOf(waiting), outcome.Forwarded, 200)
			o.never("/refused3")
			o.never("/refused7")
		})
	}
}

// A more urgent request evicts the newest of the least urgent waiting ones
// when the queue is full; the evicted one is answered "shed".
func TestShed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, full(2))
	o := e.newOrigin(nil)
	holdID, held := o.hold("")
	older := e.req(http.MethodGet, o.URL+"/older", nil, "X-Priority", "5")
	olderRes := e.goDo(older)
	e.waitDepth(1)
	newer := e.req(http.MethodGet, o.URL+"/newer", nil, "X-Priority", "5")
	newerRes := e.goDo(newer)
	e.waitDepth(2)

	urgent := e.req(http.MethodGet, o.URL+"/urgent", nil, "X-Priority", "1")
	urgentRes := e.goDo(urgent)
	// The newest of the least urgent goes.
	wantAnswer(t, recv(t, newerRes, "the shed response"), 503, proxyStatus("connection_limit_reached", "shed"), true)
	e.wantRecord(idOf(newer), outcome.Shed, 503)
	s := e.stats("the urgent request queued", func(s dispatch.Stats) bool { return s.ByPriority[1] == 1 })
	if s.Depth != 2 || s.ByPriority[5] != 1 {
		t.Errorf("depth %d by priority %v, want the urgent and the older one", s.Depth, s.ByPriority)
	}
	notYet(t, olderRes, "the older response")

	o.release()
	wantStatus(t, recv(t, held, "the held response"), 200)
	wantStatus(t, recv(t, urgentRes, "the urgent response"), 200)
	wantStatus(t, recv(t, olderRes, "the older response"), 200)
	o.never("/newer")
	e.wantRecord(holdID, outcome.Forwarded, 200)
	e.wantRecord(idOf(urgent), outcome.Forwarded, 200)
	e.wantRecord(idOf(older), outcome.Forwarded, 200)
}

// A request that waits past limits.max_wait is answered "queue timeout"
// and never sent.
func TestQueueTimeoutMaxWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, full(10), func(s *setup) { s.cfg.Limits.MaxWait = 50 * time.Millisecond })
	o := e.newOrigin(nil)
	o.hold("")
	r := e.req(http.MethodGet, o.URL+"/late", nil, "X-Priority", "2")
	wantAnswer(t, e.do(r), 503, proxyStatus("connection_limit_reached", "queue timeout"), true)
	rec := e.wantRecord(idOf(r), outcome.QueueTimeout, 503)
	if rec.Priority != 2 {
		t.Errorf("Record priority %d, want 2", rec.Priority)
	}
	e.stats("an empty queue", func(s dispatch.Stats) bool { return s.Depth == 0 })
	o.never("/late")
}

// The caller's budget (X-Proxy-Timeout) running out while it waits is a
// queue timeout too, with max_wait far away.
func TestQueueTimeoutBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, full(10))
	o := e.newOrigin(nil)
	o.hold("")
	for _, budget := range []string{"100ms", "0.1"} {
		r := e.req(http.MethodGet, o.URL+"/budget", nil, "X-Proxy-Timeout", budget)
		wantAnswer(t, e.do(r), 503, proxyStatus("connection_limit_reached", "queue timeout"), true)
		e.wantRecord(idOf(r), outcome.QueueTimeout, 503)
	}
	e.stats("an empty queue", func(s dispatch.Stats) bool { return s.Depth == 0 })
	o.never("/budget")
}

// After Drain, a new request is answered "draining"; one already waiting
// keeps its place and is still forwarded.
func TestDraining(t *testing.T) {
	t.Parallel()
	e := newEnv(t, full(10))
	o := e.newOrigin(nil)
	holdID, held := o.hold("")
	waiting := e.req(http.MethodGet, o.URL+"/waiting", nil)
	wres := e.goDo(waiting)
	e.waitDepth(1)

	e.disp.Drain()
	r := e.req(http.MethodGet, o.URL+"/new", nil)
	wantAnswer(t, e.do(r), 503, proxyStatus("proxy_internal_response", "draining"), true)
	e.wantRecord(idOf(r), outcome.Draining, 503)
	o.never("/new")

	o.release()
	wantStatus(t, recv(t, held, "the held response"), 200)
	wantStatus(t, recv(t, wres, "the waiting response"), 200)
	e.wantRecord(holdID, outcome.Forwarded, 200)
	e.wantRecord(idOf(waiting), outcome.Forwarded, 200)
}

// Close answers what still waits "draining".
func TestCloseAnswersWaitingDraining(t *testing.T) {
	t.Parallel()
	e := newEnv(t, full(10))
	o := e.newOrigin(nil)
	o.hold("")
	r := e.req(http.MethodGet, o.URL+"/waiting", nil, "X-Priority", "6")
	res := e.goDo(r)
	e.waitDepth(1)
	e.disp.Close()
	got := recv(t, res, "the waiting response")
	wantStatus(t, got, 503)
	if ps := got.resp.Header.Get("Proxy-Status"); ps != proxyStatus("proxy_internal_response", "draining") {
		t.Errorf("Proxy-Status %q", ps)
	}
	if rec := e.wantRecord(idOf(r), outcome.Draining, 503); rec.Priority != 6 {
		t.Errorf("Record priority %d, want 6", rec.Priority)
	}
	o.never("/waiting")
}

// A timeout header that is not a positive duration is a bad header.
func TestBadTimeoutHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(nil)
	for _, v := range []string{"abc", "0", "-1s", "0s", "1e3", "5 s"} {
		r := e.req(http.MethodGet, o.URL+"/t", nil, "X-Proxy-Timeout", v)
		wantAnswer(t, e.do(r), 400, proxyStatus("http_request_error", "")+"*", false)
		e.wantRecord(idOf(r), outcome.Denied, 400)
	}
	r := e.req(http.MethodGet, o.URL+"/t", nil, "X-Proxy-Timeout", "1s", "X-Proxy-Timeout", "2s")
	wantAnswer(t, e.do(r), 400, proxyStatus("http_request_error", "")+"*", false)
	o.never("/t")

	// Good ones are accepted and not forwarded.
	for _, v := range []string{"2.5s", "500ms", "3", "0.25"} {
		r := e.req(http.MethodGet, o.URL+"/ok"+v, nil, "X-Proxy-Timeout", v)
		wantStatus(t, e.do(r), 200)
		if got := o.got("/ok" + v).Header.Get("X-Proxy-Timeout"); got != "" {
			t.Errorf("X-Proxy-Timeout %q forwarded", got)
		}
	}
}

// The caller's budget bounds the upstream time: an upstream that answers
// too late is a 504 http_response_timeout. So do upstream.timeout, and
// upstream.max_timeout caps a budget.
func TestUpstreamTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*setup)
		hdr   []string
	}{
		{"X-Proxy-Timeout budget", nil, []string{"X-Proxy-Timeout", "200ms"}},
		{"upstream.timeout", func(s *setup) { s.cfg.Upstream.Timeout = 100 * time.Millisecond }, nil},
		{"max_timeout caps the budget", func(s *setup) {
			s.cfg.Upstream.Timeout = 100 * time.Millisecond
			s.cfg.Upstream.MaxTimeout = 150 * time.Millisecond
		}, []string{"X-Proxy-Timeout", "1h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []func(*setup)
			if tt.setup != nil {
				opts = append(opts, tt.setup)
			}
			e := newEnv(t, opts...)
			arrived := make(chan struct{}, 1)
			o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				e.block(r, nil) // never answers; returns when the proxy gives up
			})
			r := e.req(http.MethodGet, o.URL+"/slow", nil, tt.hdr...)
			wantAnswer(t, e.do(r), 504, `proxyd; error=http_response_timeout; details="no response headers within *`, false)
			recv(t, arrived, "the request at the upstream")
			rec := e.wantRecord(idOf(r), outcome.Error, 504)
			if rec.Upstream <= 0 {
				t.Errorf("Record upstream time %v", rec.Upstream)
			}
			e.stats("the slot given back", func(s dispatch.Stats) bool { return s.InFlight == 0 })
		})
	}
}

// A client that leaves while its request waits is taken out of the queue
// at once and never forwarded.
func TestClientLeavesWhileWaiting(t *testing.T) {
	t.Parallel()
	// The server's timed watch never starts here: the handler must ask for
	// the watch as soon as the request has to wait.
	e := newEnv(t, full(10), func(s *setup) { s.watchAfter = time.Hour })
	o := e.newOrigin(nil)
	holdID, held := o.hold("")

	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	host := o.Listener.Addr().String()
	if _, err := io.WriteString(c, "GET http://"+host+"/gone HTTP/1.1\r\nHost: "+host+"\r\nX-Request-Id: gone\r\nX-Priority: 4\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	e.waitDepth(1)
	c.Close()
	e.waitDepth(0)
	rec := e.wantRecord("gone", outcome.Canceled, outcome.StatusClientClosed)
	if rec.Priority != 4 {
		t.Errorf("Record priority %d, want 4", rec.Priority)
	}

	// Once the slot is free, the next request goes through and /gone never
	// does.
	o.release()
	wantStatus(t, recv(t, held, "the held response"), 200)
	next, _ := e.get(o.URL + "/next")
	wantStatus(t, next, 200)
	o.never("/gone")
	e.wantRecord(holdID, outcome.Forwarded, 200)
	if s := e.disp.Stats(); s.Depth != 0 {
		t.Errorf("depth %d", s.Depth)
	}
}

// A client that leaves while the upstream works: the upstream request is
// canceled and the slot given back.
func TestClientLeavesWhileForwarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, full(10))
	arrived := make(chan struct{})
	canceled := make(chan struct{})
	o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		e.block(r, nil)
		close(canceled)
	})
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	host := o.Listener.Addr().String()
	io.WriteString(c, "GET http://"+host+"/slow HTTP/1.1\r\nHost: "+host+"\r\nX-Request-Id: left\r\n\r\n")
	recv(t, arrived, "the request at the upstream")
	if s := e.disp.Stats(); s.InFlight != 1 {
		t.Errorf("in flight %d, want 1", s.InFlight)
	}
	c.Close()
	recv(t, canceled, "the upstream request canceled")
	e.wantRecord("left", outcome.Canceled, outcome.StatusClientClosed)
	e.stats("the slot given back", func(s dispatch.Stats) bool { return s.InFlight == 0 })
}
