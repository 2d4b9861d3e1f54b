package proxy_test

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

func ptr[T any](v T) *T { return &v }

// Urgency from the request's own headers (docs/configuration.md,
// "Priority"), headers trusted.
func TestPriorityFromHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOrigin(nil)
	tests := []struct {
		name string
		hdr  []string
		want int // urgency; -1: a 400
	}{
		{"none: the default", nil, 3},
		{"X-Priority 0", []string{"X-Priority", "0"}, 0},
		{"X-Priority 7", []string{"X-Priority", "7"}, 7},
		{"X-Priority with leading zero", []string{"X-Priority", "05"}, 5},
		{"x-priority in lower case", []string{"x-priority", "2"}, 2},
		{"Priority u=1, i", []string{"Priority", "u=1, i"}, 1},
		{"Priority u=6", []string{"Priority", "u=6"}, 6},
		{"Priority u=9 is ignored", []string{"Priority", "u=9"}, 3},
		{"Priority u=-1 is ignored", []string{"Priority", "u=-1"}, 3},
		{"Priority without u", []string{"Priority", "i"}, 3},
		{"Priority not a dictionary", []string{"Priority", "u=1,,"}, 3},
		{"X-Priority wins over Priority", []string{"X-Priority", "6", "Priority", "u=1"}, 6},
		{"X-Priority banana", []string{"X-Priority", "banana"}, -1},
		{"X-Priority 9", []string{"X-Priority", "9"}, -1},
		{"X-Priority -1", []string{"X-Priority", "-1"}, -1},
		{"X-Priority empty", []string{"X-Priority", ""}, -1},
		{"X-Priority twice", []string{"X-Priority", "1", "X-Priority", "2"}, -1},
		{"X-Priority bad, Priority good", []string{"X-Priority", "banana", "Priority", "u=1"}, -1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/p" + strconv.Itoa(i)
			r := e.req(http.MethodGet, o.URL+path, nil, tt.hdr...)
			res := e.do(r)
			if tt.want < 0 {
				wantAnswer(t, res, 400, proxyStatus("http_request_error", "")+"*", false)
				// Record.Priority is priority.default when never resolved.
				if rec := e.wantRecord(idOf(r), outcome.Denied, 400); rec.Priority != 3 {
					t.Errorf("Record priority %d for an invalid header, want the default 3", rec.Priority)
				}
				o.never(path)
				return
			}
			wantStatus(t, res, 200)
			if rec := e.wantRecord(idOf(r), outcome.Forwarded, 200); rec.Priority != tt.want {
				t.Errorf("urgency %d, want %d", rec.Priority, tt.want)
			}
			up := o.got(path).Header
			if v, ok := up["X-Priority"]; ok {
				t.Errorf("X-Priority %q forwarded", v)
			}
			// The standard header is forwarded as sent.
			var sent []string
			for j := 0; j+1 < len(tt.hdr); j += 2 {
				if tt.hdr[j] == "Priority" {
					sent = append(sent, tt.hdr[j+1])
				}
			}
			if got := up.Values("Priority"); !slices.Equal(got, sent) {
				t.Errorf("upstream got Priority %q, want %q", got, sent)
			}
		})
	}
}

// With trust_headers false the custom header is removed unread (no 400)
// and the Priority header is ignored, yet forwarded.
func TestPriorityUntrusted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) {
		s.cfg.Priority.TrustHeaders = false
		s.cfg.Priority.Default = 5
		s.cfg.Priority.Rules = []config.PriorityRule{{PathPrefix: "/ruled", Priority: ptr(2)}}
	})
	o := e.newOrigin(nil)
	tests := []struct {
		name, path string
		hdr        []string
		want       int
	}{
		{"X-Priority ignored", "/a", []string{"X-Priority", "0"}, 5},
		{"X-Priority banana not validated", "/b", []string{"X-Priority", "banana"}, 5},
		{"Priority ignored", "/c", []string{"Priority", "u=1"}, 5},
		{"rules still apply", "/ruled", []string{"X-Priority", "0", "Priority", "u=0"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.req(http.MethodGet, o.URL+tt.path, nil, tt.hdr...)
			wantStatus(t, e.do(r), 200)
			if rec := e.wantRecord(idOf(r), outcome.Forwarded, 200); rec.Priority != tt.want {
				t.Errorf("urgency %d, want %d", rec.Priority, tt.want)
			}
			up := o.got(tt.path).Header
			if v, ok := up["X-Priority"]; ok {
				t.Errorf("X-Priority %q forwarded with trust_headers false", v)
			}
			for j := 0; j+1 < len(tt.hdr); j += 2 {
				if tt.hdr[j] == "Priority" && up.Get("Priority") != tt.hdr[j+1] {
					t.Errorf("upstream got Priority %q, want %q", up.Get("Priority"), tt.hdr[j+1])
				}
			}
		})
	}
}

// A custom priority.header replaces X-Priority, which is then an ordinary
// header.
func TestPriorityCustomHeaderName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) { s.cfg.Priority.Header = "X-Urgency" })
	o := e.newOrigin(nil)
	r := e.req(http.MethodGet, o.URL+"/u", nil, "X-Urgency", "1", "X-Priority", "banana")
	wantStatus(t, e.do(r), 200)
	if rec := e.record(idOf(r)); rec.Priority != 1 {
		t.Errorf("urgency %d, want 1", rec.Priority)
	}
	up := o.got("/u").Header
	if up.Get("X-Urgency") != "" || up.Get("X-Priority") != "banana" {
		t.Errorf("upstream got X-Urgency %q X-Priority %q; want the custom one removed, X-Priority kept",
			up.Get("X-Urgency"), up.Get("X-Priority"))
	}
	r = e.req(http.MethodGet, o.URL+"/bad", nil, "X-Urgency", "8")
	wantAnswer(t, e.do(r), 400, proxyStatus("http_request_error", "")+"*", false)
}

// priority.rules: every given field must match; the first match wins; the
// request's own headers come first.
func TestPriorityRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) {
		s.cfg.Priority.Rules = []config.PriorityRule{
			{PathPrefix: "/first", Priority: ptr(1)},
			{PathPrefix: "/first", Priority: ptr(6)}, // shadowed
			{Host: "localhost", Priority: ptr(5)},
			{Method: "DELETE", Priority: ptr(4)},
			{Header: &config.HeaderMatch{Name: "X-Tenant", Value: "batch"}, Priority: ptr(7)},
			{ClientCIDR: "10.0.0.0/8", PathPrefix: "/cidr", Priority: ptr(6)},
			{ClientCIDR: "127.0.0.0/8", PathPrefix: "/cidr", Priority: ptr(0)},
			{Host: "127.0.0.1", PathPrefix: "/both", Method: "POST", Priority: ptr(2)},
		}
	})
	o := e.newOrigin(nil)
	byIP := o.URL
	tests := []struct {
		name, method, target string
		hdr                  []string
		want                 int
	}{
		{"no rule matches: default", "GET", byIP + "/other", nil, 3},
		{"path prefix, first match wins", "GET", byIP + "/first/x", nil, 1},
		{"host", "GET", localhost(o) + "/other", nil, 5},
		{"host is matched before a later method rule", "DELETE", localhost(o) + "/other", nil, 5},
		{"method", "DELETE", byIP + "/other", nil, 4},
		{"header", "GET", byIP + "/other", []string{"X-Tenant", "batch"}, 7},
		{"header value must match", "GET", byIP + "/other", []string{"X-Tenant", "web"}, 3},
		{"client cidr", "GET", byIP + "/cidr", nil, 0},
		{"all fields of a rule", "POST", byIP + "/both", nil, 2},
		{"all fields of a rule: method differs", "GET", byIP + "/both", nil, 3},
		{"X-Priority before rules", "GET", byIP + "/first", []string{"X-Priority", "4"}, 4},
		{"Priority before rules", "GET", byIP + "/first", []string{"Priority", "u=6"}, 6},
		{"invalid Priority falls through to rules", "GET", byIP + "/first", []string{"Priority", "u=9"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.req(tt.method, tt.target, nil, tt.hdr...)
			wantStatus(t, e.do(r), 200)
			if rec := e.wantRecord(idOf(r), outcome.Forwarded, 200); rec.Priority != tt.want {
				t.Errorf("urgency %d, want %d", rec.Priority, tt.want)
			}
		})
	}
}

// localhost is the origin's URL by name instead of by address.
func localhost(o *origin) string {
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	return "http://localhost:" + port
}

// The most urgent waiting request goes first, whatever the arrival order.
func TestPriorityOrderingOverSockets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) { s.cfg.Limits.Concurrency = 1 })
	o := e.newOrigin(nil)
	holdID, held := o.hold("")

	var ids []string
	var results []<-chan result
	for i, u := range []string{"5", "1", "3"} {
		r := e.req(http.MethodGet, o.URL+"/u"+u, nil, "X-Priority", u)
		ids = append(ids, idOf(r))
		results = append(results, e.goDo(r))
		// Each is queued before the next is sent: that is the arrival order.
		e.waitDepth(i + 1)
	}
	s := e.disp.Stats()
	if s.ByPriority[5] != 1 || s.ByPriority[1] != 1 || s.ByPriority[3] != 1 || s.InFlight != 1 {
		t.Fatalf("queue by priority %v, in flight %d", s.ByPriority, s.InFlight)
	}
	o.release()
	wantStatus(t, recv(t, held, "the held response"), 200)
	for i, ch := range results {
		wantStatus(t, recv(t, ch, "response "+ids[i]), 200)
	}
	if got, want := o.paths(), []string{"/hold", "/u1", "/u3", "/u5"}; !slices.Equal(got, want) {
		t.Errorf("upstream order %v, want %v", got, want)
	}
	e.wantRecord(holdID, outcome.Forwarded, 200)
	for _, id := range ids {
		if rec := e.wantRecord(id, outcome.Forwarded, 200); rec.QueueWait <= 0 {
			t.Errorf("%s queue wait %v, want > 0", id, rec.QueueWait)
		}
	}
	e.stats("empty queue", func(s dispatch.Stats) bool { return s.Depth == 0 && s.InFlight == 0 })
}
