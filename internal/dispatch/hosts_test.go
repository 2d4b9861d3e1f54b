package dispatch

import (
	"fmt"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
)

func hostLimit(t *testing.T, match string, rate float64, burst, conc int) HostLimit {
	t.Helper()
	p, err := config.ParseHostPattern(match)
	if err != nil {
		t.Fatal(err)
	}
	return HostLimit{Match: p, Rate: rate, Burst: burst, Concurrency: conc}
}

func (h *harness) addTo(name string, urgency int, dest string) {
	h.t.Helper()
	if err := h.enqueue(name, Request{Urgency: urgency, Dest: dest}); err != nil {
		h.t.Fatalf("enqueue %s: %v", name, err)
	}
}

func newHostsHarness(t *testing.T, l Limits, hosts ...HostLimit) *harness {
	t.Helper()
	clk := newHarness(t, l, 0).clk
	h := &harness{t: t, clk: clk, d: New(Config{Limits: l, Hosts: hosts}, Deps{Clock: clk}), tickets: map[string]*Ticket{}}
	return h
}

// A destination at its concurrency cap never holds back another
// destination, and the most urgent eligible request goes first.
func TestHostConcurrencyNoHeadOfLineBlocking(t *testing.T) {
	l := unlimited()
	l.Concurrency = 3
	h := newHostsHarness(t, l, hostLimit(t, "slow.example:443", 0, 1, 1))
	h.addTo("s1", 0, "slow.example:443") // takes slow's only slot
	h.addTo("s2", 0, "slow.example:443") // most urgent, but slow is full
	h.addTo("f1", 5, "fast.example:443")
	h.addTo("f2", 6, "fast.example:443")
	h.granted("s1", "f1", "f2")
	h.addTo("f3", 7, "fast.example:443") // global cap 3 reached
	h.granted("s1", "f1", "f2")
	h.release("f1")
	h.granted("s1", "f2", "f3") // s2 is still blocked by its host, f3 goes
	h.release("s1")
	h.granted("f2", "f3", "s2")
	if s := h.d.Stats(); len(s.Hosts) != 1 || s.Hosts[0].InFlight != 1 || s.Hosts[0].Match != "slow.example:443" {
		t.Fatalf("host stats %+v", s.Hosts)
	}
}

func TestHostRateAndWildcard(t *testing.T) {
	h := newHostsHarness(t, unlimited(), hostLimit(t, "*.example.com", 2, 1, 0))
	// Two subdomains share the wildcard's bucket of 2/s; the apex does not
	// match and is unlimited.
	h.addTo("a1", 3, "a.example.com:443")
	h.addTo("b1", 3, "b.example.com:80")
	h.addTo("a2", 3, "a.example.com:443")
	h.addTo("apex", 7, "example.com:443")
	h.granted("a1", "apex")
	h.clk.Advance(500 * time.Millisecond)
	h.granted("a1", "apex", "b1") // FIFO across the rule's destinations
	h.clk.Advance(499 * time.Millisecond)
	h.granted("a1", "apex", "b1")
	h.clk.Advance(time.Millisecond)
	h.granted("a1", "apex", "b1", "a2")
	if s := h.d.Stats(); s.Lanes != 0 {
		t.Fatalf("%d lanes left with nothing waiting", s.Lanes)
	}
}

func TestPauseHoldsOnlyItsDestination(t *testing.T) {
	l := unlimited()
	l.MaxWait = 10 * time.Second
	h := newHostsHarness(t, l)
	h.d.Pause("api.example:443", t0.Add(3*time.Second))
	h.d.Pause("api.example:443", t0.Add(time.Second)) // never shortens
	h.addTo("p1", 0, "api.example:443")
	h.addTo("p2", 1, "api.example:443")
	h.addTo("o1", 7, "other.example:443")
	h.granted("o1")
	if s := h.d.Stats(); len(s.Paused) != 1 || s.Paused[0].Dest != "api.example:443" || !s.Paused[0].Until.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("paused %+v", s.Paused)
	}
	h.clk.Advance(3*time.Second - time.Nanosecond)
	h.granted("o1")
	h.clk.Advance(time.Nanosecond)
	h.granted("o1", "p1", "p2") // in their order
	if s := h.d.Stats(); len(s.Paused) != 0 {
		t.Fatalf("pause not forgotten: %+v", s.Paused)
	}
	// Paused requests still expire by max wait.
	h.d.Pause("api.example:443", t0.Add(time.Hour))
	h.addTo("p3", 0, "api.example:443")
	h.clk.Advance(10 * time.Second)
	h.rejected("p3", ErrQueueTimeout)
}

func TestPausesStayBounded(t *testing.T) {
	h := newHostsHarness(t, unlimited())
	for i := 0; i < 100; i++ {
		h.d.Pause(fmt.Sprintf("h%d.example:443", i), t0.Add(time.Duration(i+1)*time.Second))
	}
	h.clk.Advance(2 * time.Minute)
	dm := h.d.Dump()
	n, q := dm.Pauses, dm.PauseHeap
	if n != 0 || q != 0 {
		t.Fatalf("%d pauses, %d heap entries after all ended", n, q)
	}
}

// TestManyDestinationsMixedEligibility: 50 destinations; a quarter are at
// their rule's cap, a quarter paused. Every grant must be the most urgent
// request among the eligible ones, and no blocked one goes.
func TestManyDestinationsMixedEligibility(t *testing.T) {
	var hosts []HostLimit
	for i := 0; i < 50; i += 4 {
		hosts = append(hosts, hostLimit(t, fmt.Sprintf("d%d.example", i), 0, 1, 1))
	}
	l := unlimited()
	h := newHostsHarness(t, l, hosts...)
	// Fill every rule'd destination's only slot.
	for i := 0; i < 50; i += 4 {
		tk, err := h.d.Enqueue(Request{Urgency: 0, Dest: fmt.Sprintf("d%d.example:80", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tk.Poll(); err != nil {
			t.Fatalf("hold %d: %v", i, err)
		}
	}
	for i := 2; i < 50; i += 4 {
		h.d.Pause(fmt.Sprintf("d%d.example:80", i), t0.Add(time.Hour))
	}
	// Now allow one more request in flight at a time, so the order of
	// admission is observable.
	nl := h.d.Limits()
	held := h.d.Stats().InFlight
	nl.Concurrency = held
	h.d.SetLimits(nl)
	blocked := func(i int) bool { return i%4 == 0 || i%4 == 2 }
	eligible := 0
	for i := 0; i < 50; i++ {
		h.addTo(fmt.Sprintf("r%d", i), (i*5)%8, fmt.Sprintf("d%d.example:80", i))
		if !blocked(i) {
			eligible++
		}
	}
	var order []string
	seen := map[string]bool{}
	for step := 1; step <= eligible; step++ {
		nl.Concurrency = held + step
		h.d.SetLimits(nl)
		got := ""
		for n, tk := range h.tickets {
			if p, err := tk.Poll(); err == nil && p != nil && !seen[n] {
				if got != "" {
					t.Fatalf("step %d: two admitted (%s, %s)", step, got, n)
				}
				got = n
			}
		}
		var i int
		if _, err := fmt.Sscanf(got, "r%d", &i); err != nil || blocked(i) {
			t.Fatalf("step %d: admitted %q", step, got)
		}
		seen[got] = true
		order = append(order, got)
	}
	prev := -1
	for _, n := range order {
		u := h.tickets[n].Urgency()
		if u < prev {
			t.Fatalf("order %v: urgency went from %d to %d", order, prev, u)
		}
		prev = u
	}
	nl.Concurrency = 0
	h.d.SetLimits(nl)
	if s := h.d.Stats(); s.Depth != 50-eligible {
		t.Fatalf("depth %d, want the %d blocked", s.Depth, 50-eligible)
	}
}

func TestSetHostsLive(t *testing.T) {
	h := newHostsHarness(t, unlimited(), hostLimit(t, "api.example", 0, 1, 1))
	h.addTo("a1", 3, "api.example:443")
	h.addTo("a2", 3, "api.example:443")
	h.addTo("a3", 4, "api.example:443")
	h.granted("a1")
	// Raising the rule's cap admits the waiting ones at once, in order.
	h.d.SetHosts([]HostLimit{hostLimit(t, "api.example", 0, 1, 2)})
	h.granted("a1", "a2")
	// Removing the rule lifts its limit.
	h.d.SetHosts(nil)
	h.granted("a1", "a2", "a3")
	// The old rule's slots are released without harm.
	h.release("a1")
	h.release("a2")
}

func TestRefundReturnsHostToken(t *testing.T) {
	h := newHostsHarness(t, unlimited(), hostLimit(t, "api.example", 1, 1, 0))
	h.addTo("a", 3, "api.example:443")
	h.addTo("b", 3, "api.example:443")
	h.granted("a")
	h.tickets["a"].Cancel() // never used: its host token comes back
	h.granted("b")
}

func TestRetryKeepsItsPlace(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.add("first", 3)
	p, _ := h.tickets["first"].Poll()
	arrival, seq := p.Arrival(), p.Seq()
	h.clk.Advance(time.Second)
	h.add("later", 3)
	p.Release()
	h.granted("later")
	// The first request is retried: it re-enters with its arrival and seq
	// and goes before a newer request of the same urgency.
	if err := h.enqueue("retry", Request{Urgency: 3, Arrival: arrival, Seq: seq}); err != nil {
		t.Fatal(err)
	}
	h.add("newest", 3)
	h.release("later")
	h.granted("retry")
	// Its queue wait counts from when it re-entered.
	rp, _ := h.tickets["retry"].Poll()
	if rp.Waited() != 0 {
		t.Fatalf("retry waited %v", rp.Waited())
	}
}

// TestDestinationStateBounded: destinations without waiting requests are
// forgotten once there are many of them.
func TestDestinationStateBounded(t *testing.T) {
	h := newHostsHarness(t, unlimited())
	for i := 0; i < 5000; i++ {
		tk, err := h.d.Enqueue(Request{Dest: fmt.Sprintf("h%d.example:443", i)})
		if err != nil {
			t.Fatal(err)
		}
		p, err := tk.Poll()
		if err != nil {
			t.Fatal(err)
		}
		p.Release()
	}
	n := len(h.d.Dump().Lanes)
	if n > maxIdleLanes+1 {
		t.Fatalf("%d lanes kept for 5000 one-off destinations", n)
	}
	if s := h.d.Stats(); s.Lanes != 0 {
		t.Fatalf("Stats.Lanes %d with nothing waiting", s.Lanes)
	}
}

// TestRefundLaterReturnsHostToken: a rule's token given back after the
// instant of the grant returns too.
func TestRefundLaterReturnsHostToken(t *testing.T) {
	h := newHostsHarness(t, unlimited(), hostLimit(t, "api.example", 1, 1, 0))
	h.addTo("a", 3, "api.example:443")
	h.addTo("b", 3, "api.example:443")
	h.granted("a")
	h.clk.Advance(time.Millisecond)
	h.tickets["a"].Cancel()
	h.granted("b")
}

// TestSetAgingReordersDestinations: changing aging live re-ranks waiting
// requests across destinations, not only within each one.
func TestSetAgingReordersDestinations(t *testing.T) {
	l := unlimited()
	l.Concurrency, l.MaxWait = 1, 2*time.Hour
	h := newHarness(t, l, 0)
	h.addTo("busy", 0, "busy:80")
	for i := 0; i < 3; i++ {
		h.addTo(fmt.Sprint("a", i), 7, fmt.Sprintf("a%d:80", i))
	}
	h.clk.Advance(time.Hour)
	h.addTo("new0", 0, "b:80")
	h.d.SetAging(time.Minute) // the a* rank 7m, new0 60m: the a* go first
	for i, next := range []string{"a0", "a1", "a2", "new0"} {
		prev := "busy"
		if i > 0 {
			prev = fmt.Sprint("a", i-1)
		}
		h.release(prev)
		if _, err := h.tickets[next].Poll(); err != nil {
			t.Fatalf("after releasing %s: %s not admitted (%v)", prev, next, err)
		}
	}
	// And back to strict priority: the most urgent destination first.
	h.release("new0")
	h.addTo("x7", 7, "x:80")
	h.addTo("y0", 0, "y:80")
	h.addTo("busy2", 0, "busy:80")
	h.d.SetAging(0)
	h.release("x7")
	h.pending("busy2")
	if _, err := h.tickets["y0"].Poll(); err != nil {
		t.Fatalf("y0: %v", err)
	}
}

// TestIdleSweepKeepsLaneOfNewcomer: a newcomer to a reused idle lane
// evicts another lane's last request, which makes more than maxIdleLanes
// idle lanes and sweeps them. The newcomer's lane must survive (it is not
// idle), so that a pause of its destination still holds it.
func TestIdleSweepKeepsLaneOfNewcomer(t *testing.T) {
	l := unlimited()
	l.Concurrency, l.QueueSize = 1, 1
	h := newHarness(t, l, 0)
	h.addTo("busy", 0, "busy:80")
	h.granted("busy")
	for i := 0; i < maxIdleLanes-1; i++ { // idle lanes: busy + 1023 = 1024
		tk, err := h.d.Enqueue(Request{Urgency: 7, Dest: fmt.Sprintf("d%d:80", i)})
		if err != nil {
			t.Fatal(err)
		}
		tk.Cancel()
	}
	h.addTo("v", 7, "x:80")
	// Full: n (to the idle lane of d0) evicts v, whose lane is the 1025th
	// idle one.
	h.addTo("n", 0, "d0:80")
	h.rejected("v", ErrShed)
	// The lane kept for d0:80 is the newcomer's: it holds n, its only
	// request, and is not marked idle.
	dm := h.d.Dump()
	nl, inMap := dm.Lane(HTTP, "d0:80")
	if !inMap || nl.Waiting != 1 || nl.Idle || dm.IdleLanes < 0 {
		t.Fatalf("newcomer's lane kept: %v (%+v), idle count %d", inMap, nl, dm.IdleLanes)
	}
	if s := h.d.Stats(); s.Lanes != 1 || s.Depth != 1 {
		t.Fatalf("stats: %d lanes, depth %d; want 1, 1", s.Lanes, s.Depth)
	}
	h.d.Pause("d0:80", t0.Add(time.Minute))
	h.release("busy")
	h.pending("n")
	h.clk.Advance(time.Minute)
	h.granted("n")
}

// Stats.Admitted and HostStats.Admitted count granted permits, and a
// rule's count survives SetHosts when the rule's match stays.
func TestAdmittedCounts(t *testing.T) {
	h := newHostsHarness(t, unlimited(), hostLimit(t, "*.example.com", 0, 1, 0))
	h.addTo("a1", 3, "a.example.com:443")
	h.addTo("a2", 3, "b.example.com:443")
	h.addTo("o1", 3, "other.test:443")
	h.granted("a1", "a2", "o1")
	s := h.d.Stats()
	if s.Admitted != 3 || len(s.Hosts) != 1 || s.Hosts[0].Admitted != 2 {
		t.Fatalf("admitted %d, hosts %+v; want 3 overall, 2 under *.example.com", s.Admitted, s.Hosts)
	}
	if got := s.Hosts[0].Limit.Match.String(); got != "*.example.com" {
		t.Errorf("Limit.Match = %q", got)
	}
	h.d.SetHosts([]HostLimit{hostLimit(t, "*.example.com", 0, 1, 3), hostLimit(t, "other.test", 0, 1, 0)})
	h.addTo("a3", 3, "a.example.com:443")
	h.granted("a1", "a2", "o1", "a3")
	s = h.d.Stats()
	if s.Admitted != 4 || len(s.Hosts) != 2 || s.Hosts[0].Admitted != 3 || s.Hosts[1].Admitted != 0 {
		t.Fatalf("after SetHosts: admitted %d, hosts %+v; want 4, [3 0]", s.Admitted, s.Hosts)
	}
	if l := s.Hosts[0].Limit; l.Concurrency != 3 {
		t.Errorf("live limit %+v, want concurrency 3", l)
	}
}
