package dispatch

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
)

// quotaRun drives a dispatcher with quotas on a fake clock: arrivals at
// given offsets from t0, then the clock runs to the horizon; each
// admission's time is its enqueue time plus its wait.
type quotaRun struct {
	t      *testing.T
	clk    *clock.Fake
	d      *Dispatcher
	dest   string
	urg    int
	ticket []*Ticket
	enq    []time.Time
	done   map[int]time.Time // admission times of the permits released so far
}

func newQuotaRun(t *testing.T, global []Quota, hosts ...HostLimit) *quotaRun {
	t.Helper()
	l := unlimited()
	l.QueueSize = 10_000_000
	l.MaxWait = 1000 * time.Hour
	l.Quotas = global
	clk := clock.NewFake(t0)
	return &quotaRun{t: t, clk: clk, d: New(Config{Limits: l, Hosts: hosts}, Deps{Clock: clk})}
}

// arrive sets the clock to t0+at and enqueues n requests.
func (r *quotaRun) arrive(at time.Duration, n int) {
	r.t.Helper()
	r.clk.Set(t0.Add(at))
	for range n {
		tk, err := r.d.Enqueue(Request{Urgency: r.urg, Dest: r.dest})
		if err != nil {
			r.t.Fatal(err)
		}
		r.ticket = append(r.ticket, tk)
		r.enq = append(r.enq, r.clk.Now())
	}
}

// admitted returns the admission times so far, sorted, releasing every
// permit (a quota counts admissions, not requests in flight).
func (r *quotaRun) admitted() []time.Time {
	var out []time.Time
	for i, tk := range r.ticket {
		p, err := tk.Poll()
		switch {
		case err == nil:
			at := r.enq[i].Add(p.Waited())
			out = append(out, at)
			if r.done == nil {
				r.done = make(map[int]time.Time)
			}
			r.done[i] = at
			p.Release()
		case errors.Is(err, ErrReleased):
			out = append(out, r.done[i])
		case errors.Is(err, ErrPending):
		default:
			r.t.Fatalf("request %d: %v", i, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// checkWindows fails if any interval [t, t+per) holds more than limit of
// the sorted admission times: the tightest is one that starts at an
// admission, so a[i+limit] must be per or more after a[i].
func checkWindows(t *testing.T, a []time.Time, q Quota) {
	t.Helper()
	for i := 0; i+q.Limit < len(a); i++ {
		if d := a[i+q.Limit].Sub(a[i]); d < q.Per {
			t.Fatalf("%v: %d admissions within %v (from %v to %v)", q, q.Limit+1, d, a[i].Sub(t0), a[i+q.Limit].Sub(t0))
		}
	}
}

// countIn counts admissions in [from, to) (offsets from t0).
func countIn(a []time.Time, from, to time.Duration) int {
	n := 0
	for _, x := range a {
		if !x.Before(t0.Add(from)) && x.Before(t0.Add(to)) {
			n++
		}
	}
	return n
}

// A quota is never exceeded in any window of its length, whatever the
// arrivals (bursts on both sides of a window edge, idle then a flood,
// steady 2× overload), and at 2× overload at least 98% of it is used in
// every window. For 1s, 1m, 1h and 24h windows, global and per rule.
func TestQuotaWindowBound(t *testing.T) {
	quotas := []Quota{
		{Limit: 5, Per: time.Second},
		{Limit: 100, Per: time.Second},
		{Limit: 500, Per: time.Minute},
		{Limit: 5000, Per: time.Hour},
		{Limit: 10000, Per: 24 * time.Hour},
	}
	for _, q := range quotas {
		q.Unit = "requests"
		W, N := q.Per, q.Limit
		scenarios := []struct {
			name   string
			run    func(r *quotaRun)
			steady bool
		}{
			{"bursts at window edges", func(r *quotaRun) {
				// Idle, then bursts just before and just after where a
				// fixed window would reset, again and again.
				for k := 1; k <= 4; k++ {
					edge := time.Duration(k) * W
					r.arrive(edge-time.Millisecond, 2*N)
					r.arrive(edge, N)
					r.arrive(edge+time.Millisecond, N)
					r.arrive(edge+W/2, N/2+1)
				}
			}, false},
			{"idle then flood", func(r *quotaRun) {
				r.arrive(0, N/3+1)
				r.arrive(3*W, 4*N)
				r.arrive(3*W+W/2+W/7, N)
			}, false},
			{"steady 2x overload", func(r *quotaRun) {
				step := W / time.Duration(2*N)
				for i := 0; i < 2*N*4; i++ {
					r.arrive(time.Duration(i)*step, 1)
				}
			}, true},
		}
		for _, sc := range scenarios {
			for _, perRule := range []bool{false, true} {
				name := fmt.Sprintf("%d per %v/%s/global", N, W, sc.name)
				if perRule {
					name = fmt.Sprintf("%d per %v/%s/rule", N, W, sc.name)
				}
				t.Run(name, func(t *testing.T) {
					var r *quotaRun
					if perRule {
						h := hostLimit(t, "api.example.com", 0, 1, 0)
						h.Quotas = []Quota{q}
						r = newQuotaRun(t, nil, h)
						r.dest = "api.example.com:443"
					} else {
						r = newQuotaRun(t, []Quota{q})
					}
					sc.run(r)
					r.clk.Set(t0.Add(8 * W))
					a := r.admitted()
					checkWindows(t, a, q)
					if len(a) == 0 {
						t.Fatal("nothing admitted")
					}
					if sc.steady {
						// Offered 2N per W for 4W: every window past the
						// first is the quota's, at least 98% of it.
						for k := 1; k < 4; k++ {
							from := time.Duration(k) * W
							if n := countIn(a, from, from+W); n*100 < 98*N {
								t.Errorf("[%v, %v): %d admitted, want >= 98%% of %d", from, from+W, n, N)
							}
						}
					}
				})
			}
		}
	}
}

// With several quotas the tightest governs: 500/1m and 10000/24h, offered
// 1000 a minute, admit 500 a minute for 20 minutes, then nothing until
// the day's first admissions leave its window.
func TestQuotaTightestGoverns(t *testing.T) {
	perMin := Quota{Limit: 500, Per: time.Minute, Unit: "requests"}
	perDay := Quota{Limit: 10000, Per: 24 * time.Hour, Unit: "requests"}
	r := newQuotaRun(t, []Quota{perMin, perDay})
	step := time.Minute / 1000
	for i := 0; i < 40*1000; i++ {
		r.arrive(time.Duration(i)*step, 1)
	}
	a := r.admitted()
	checkWindows(t, a, perMin)
	checkWindows(t, a, perDay)
	for m := 0; m < 20; m++ {
		from := time.Duration(m) * time.Minute
		if n := countIn(a, from, from+time.Minute); n < 490 || n > 500 {
			t.Errorf("minute %d: %d admitted, want 490 to 500 (the per-minute quota governs)", m, n)
		}
	}
	if len(a) != 10000 || countIn(a, 21*time.Minute, 40*time.Minute) != 0 {
		t.Errorf("%d admitted in 40 minutes (%d after the 21st), want 10000 and none: the daily quota governs", len(a), countIn(a, 21*time.Minute, 40*time.Minute))
	}
	s := r.d.Stats()
	if len(s.Quotas) != 2 || s.Quotas[0].Used != 0 || s.Quotas[1].Used != 10000 || s.Quotas[1].Quota != perDay {
		t.Errorf("Stats().Quotas = %+v, want 0 used of the minute's, 10000 of the day's", s.Quotas)
	}
	// A day after the first admissions, they leave the day's window (each
	// at most 24h/windowGroups, 84 s, late) and the minute's quota
	// governs again.
	r.clk.Set(t0.Add(24*time.Hour + 3*time.Minute))
	a = r.admitted()
	if n := countIn(a, 24*time.Hour, 24*time.Hour+3*time.Minute); n < 500 || n > 1500 {
		t.Errorf("%d admitted in the day's next 3 minutes, want 500 to 1500: the minute's quota governs again", n)
	}
	checkWindows(t, a, perMin)
	checkWindows(t, a, perDay)
}

// Under a quota the most urgent waiting request goes first: units freed
// by the window go to urgent requests that arrived after bulk ones.
func TestQuotaPriorityOrder(t *testing.T) {
	for _, perRule := range []bool{false, true} {
		q := Quota{Limit: 10, Per: time.Second, Unit: "requests"}
		var r *quotaRun
		if perRule {
			h := hostLimit(t, "api.example.com", 0, 1, 0)
			h.Quotas = []Quota{q}
			r = newQuotaRun(t, nil, h)
			r.dest = "api.example.com:443"
		} else {
			r = newQuotaRun(t, []Quota{q})
		}
		r.urg = 7
		r.arrive(0, 30) // 10 go, 20 wait
		r.urg = 0
		r.arrive(500*time.Millisecond, 5)
		if a := r.admitted(); len(a) != 10 {
			t.Fatalf("rule %v: %d admitted at once, want 10", perRule, len(a))
		}
		r.clk.Set(t0.Add(time.Second))
		for i, tk := range r.ticket[30:] {
			if _, err := tk.Poll(); err != nil && !errors.Is(err, ErrReleased) {
				t.Errorf("rule %v: urgent request %d: %v, want admitted first when the window moves", perRule, i, err)
			}
		}
		// The bulk leaves the urgent ones' headroom (quota.go) until the
		// window runs out.
		if a := r.admitted(); len(a) != 15 {
			t.Errorf("rule %v: %d admitted after 1s, want 15 (10, then 5 urgent)", perRule, len(a))
		}
		r.clk.Set(t0.Add(2*time.Second - time.Millisecond))
		if a := r.admitted(); len(a) < 19 {
			t.Errorf("rule %v: %d admitted by the end of the second window, want 19 or more", perRule, len(a))
		}
	}
}

// A request held by its rule's quota never holds back other destinations;
// it sleeps until the window has room, and a refunded unit (a caller that
// left) is counted back at once.
func TestQuotaRuleNoHeadOfLineBlockingAndRefund(t *testing.T) {
	h := hostLimit(t, "api.example.com", 0, 1, 0)
	h.Quotas = []Quota{{Limit: 5, Per: time.Second, Unit: "requests"}}
	r := newQuotaRun(t, nil, h)
	r.dest = "api.example.com:443"
	r.arrive(0, 6)
	for i, tk := range r.ticket {
		if _, err := tk.Poll(); (err == nil) != (i < 5) {
			t.Fatalf("request %d: %v; want the first 5 admitted, the 6th waiting", i, err)
		}
	}
	other, err := r.d.Enqueue(Request{Dest: "other.example:443"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := other.Poll(); err != nil {
		t.Fatalf("other destination: %v, want admitted at once", err)
	} else {
		p.Release()
	}
	dm := r.d.Dump()
	ld, _ := dm.Lane(HTTP, "api.example.com:443")
	if ld.State != "sleeping" || !ld.WakeAt.Equal(t0.Add(time.Second)) {
		t.Errorf("held lane %+v, want sleeping until t0+1s", ld)
	}
	if q := dm.Rules[0].Quotas; len(q) != 1 || q[0].Used != 5 {
		t.Errorf("rule quotas %+v, want 5 used", q)
	}
	// A granted permit given back (its caller left) frees its unit.
	tk, err := r.d.Enqueue(Request{Dest: "api.example.com:443"})
	if err != nil {
		t.Fatal(err)
	}
	r.clk.Set(t0.Add(999 * time.Millisecond))
	if _, err := tk.Poll(); !errors.Is(err, ErrPending) {
		t.Fatalf("7th request: %v, want waiting", err)
	}
	r.ticket[0].Cancel() // granted, not yet released: a refund
	if _, err := tk.Poll(); !errors.Is(err, ErrPending) {
		t.Fatalf("after a refund the 6th request goes first, the 7th still waits: %v", err)
	}
	if _, err := r.ticket[5].Poll(); err != nil {
		t.Errorf("6th request after a refund: %v, want admitted", err)
	}
	tk.Cancel()
}

// BenchmarkAdmitQuotas compares admission (Enqueue, grant, Release) with
// no quota, with a global 1m and 24h quota, and with those plus a rule's
// 1h quota, side by side: what quotas add per admission. The quotas are
// large enough never to bind, so every admission takes their units and
// each log grows to windowGroups entries.
func BenchmarkAdmitQuotas(b *testing.B) {
	big := 1 << 40 >> 10 // never binding
	for _, tc := range []struct {
		name   string
		global []Quota
		rule   []Quota
	}{
		{"none", nil, nil},
		{"global-1m-24h", []Quota{{Limit: big, Per: time.Minute, Unit: "requests"}, {Limit: big, Per: 24 * time.Hour, Unit: "requests"}}, nil},
		{"global-and-rule-1h", []Quota{{Limit: big, Per: time.Minute, Unit: "requests"}, {Limit: big, Per: 24 * time.Hour, Unit: "requests"}}, []Quota{{Limit: big, Per: time.Hour, Unit: "requests"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := config.ParseHostPattern("api.example.com")
			if err != nil {
				b.Fatal(err)
			}
			h := HostLimit{Match: p, Burst: 1, Quotas: tc.rule}
			clk := clock.NewFake(t0)
			l := unlimited()
			l.Quotas = tc.global
			d := New(Config{Limits: l, Hosts: []HostLimit{h}}, Deps{Clock: clk})
			defer d.Close()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%64 == 0 {
					clk.Advance(time.Second) // admissions spread over the windows
				}
				tk, err := d.Enqueue(Request{Dest: "api.example.com:443"})
				if err != nil {
					b.Fatal(err)
				}
				p, err := tk.Poll()
				if err != nil {
					b.Fatal(err)
				}
				p.Release()
			}
		})
	}
}

// Quotas are live: a reload keeps what a quota with the same window and
// unit counted (a lower limit counts what was already admitted), a raised
// limit admits waiting requests at once, a removed quota frees them, and
// a rule's quota follows its rule.
func TestQuotaReconfigure(t *testing.T) {
	q := Quota{Limit: 10, Per: time.Minute, Unit: "requests"}
	r := newQuotaRun(t, []Quota{q})
	r.arrive(0, 15)
	if a := r.admitted(); len(a) != 10 {
		t.Fatalf("%d admitted, want 10", len(a))
	}
	reconf := func(global []Quota, hosts ...HostLimit) {
		l := unlimited()
		l.QueueSize, l.MaxWait, l.Quotas = 10_000_000, 1000*time.Hour, global
		r.d.Reconfigure(Config{Limits: l, Hosts: hosts})
	}
	// The same window, a lower limit: the 10 counted stay counted.
	reconf([]Quota{{Limit: 8, Per: time.Minute, Unit: "requests"}})
	r.clk.Set(t0.Add(30 * time.Second))
	if a := r.admitted(); len(a) != 10 {
		t.Errorf("after lowering the limit: %d admitted, want still 10", len(a))
	}
	if s := r.d.Stats(); len(s.Quotas) != 1 || s.Quotas[0].Used != 10 || s.Quotas[0].Quota.Limit != 8 {
		t.Errorf("Stats().Quotas = %+v, want 10 used of 8", s.Quotas)
	}
	// Raised: waiting requests go at once, up to the new limit.
	reconf([]Quota{{Limit: 13, Per: time.Minute, Unit: "requests"}})
	if a := r.admitted(); len(a) != 13 {
		t.Errorf("after raising the limit to 13: %d admitted, want 13", len(a))
	}
	// Moved to the destination's rule (a new quota starts empty): the
	// global one gone, the rule's admits the rest.
	h := hostLimit(t, "api.example.com", 0, 1, 0)
	h.Quotas = []Quota{{Limit: 1, Per: time.Hour, Unit: "requests"}}
	r.dest = "api.example.com:443"
	r.arrive(30*time.Second, 3) // wait behind the global quota
	reconf(nil, h)
	if a := r.admitted(); len(a) != 15+1 {
		t.Errorf("global quota removed, rule quota 1/1h: %d admitted, want 16 (the 2 global waiters and 1 of the rule's 3)", len(a))
	}
}

// A request refused while a quota has no room is told to come back when
// it will (Retry-After), not in a second: global and per rule.
func TestQuotaRetryAfter(t *testing.T) {
	for _, perRule := range []bool{false, true} {
		q := Quota{Limit: 1, Per: time.Hour, Unit: "requests"}
		var r *quotaRun
		if perRule {
			h := hostLimit(t, "api.example.com", 0, 1, 0)
			h.Quotas = []Quota{q}
			r = newQuotaRun(t, nil, h)
			r.dest = "api.example.com:443"
		} else {
			r = newQuotaRun(t, []Quota{q})
		}
		r.arrive(0, 1)
		tk, err := r.d.Enqueue(Request{Dest: r.dest, Deadline: t0.Add(10 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		r.clk.Set(t0.Add(10 * time.Second))
		_, err = tk.Poll()
		var rej *RejectError
		if !errors.As(err, &rej) || !errors.Is(err, ErrQueueTimeout) {
			t.Fatalf("rule %v: %v, want a queue timeout", perRule, err)
		}
		if want := time.Hour - 10*time.Second; rej.RetryAfter < want {
			t.Errorf("rule %v: Retry-After %v, want at least %v (when the quota has room)", perRule, rej.RetryAfter, want)
		}
	}
}
