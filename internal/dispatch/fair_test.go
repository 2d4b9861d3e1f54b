package dispatch

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// fairRun drives a dispatcher at rate 10/s for 10 s on the fake clock.
// Each tick of 100 ms, client a offers arriveA requests and client b
// arriveB, all at urgency 3; it returns how many of each were admitted.
func fairRun(t *testing.T, fair bool, arriveA, arriveB int) (a, b int) {
	t.Helper()
	l := unlimited()
	l.Rate, l.Burst, l.QueueSize = 10, 1, 100000
	clk := newHarness(t, l, 0).clk
	d := New(Config{Limits: l, Fairness: fair}, Deps{Clock: clk})
	var waiting []*Ticket
	var owner []string
	for tick := range 100 {
		for _, c := range []struct {
			name string
			n    int
		}{{"a", arriveA}, {"b", arriveB}} {
			for range c.n {
				tk, err := d.Enqueue(Request{Urgency: 3, Client: c.name, Dest: fmt.Sprintf("api%d.example:443", tick%3)})
				if err != nil {
					t.Fatal(err)
				}
				waiting, owner = append(waiting, tk), append(owner, c.name)
			}
		}
		clk.Advance(100 * time.Millisecond)
		kept := waiting[:0]
		keptOwner := owner[:0]
		for i, tk := range waiting {
			p, err := tk.Poll()
			switch {
			case err == nil:
				if owner[i] == "a" {
					a++
				} else {
					b++
				}
				p.Release()
			case errors.Is(err, ErrPending):
				kept, keptOwner = append(kept, tk), append(keptOwner, owner[i])
			default:
				t.Fatalf("request refused: %v", err)
			}
		}
		waiting, owner = kept, keptOwner
	}
	for _, tk := range waiting {
		tk.Cancel()
	}
	return a, b
}

// docs/configuration.md, "Clients" (fairness: client): two clients that both keep a backlog at the same urgency are
// each admitted half the time (±10%) whatever their arrival ratio (10:1
// here); without fairness, first come first served gives the heavy one
// nearly everything.
func TestFairnessSplitsAdmissions(t *testing.T) {
	a, b := fairRun(t, true, 10, 1)
	total := a + b
	if total < 95 || total > 101 {
		t.Fatalf("%d admitted in 10 s at rate 10", total)
	}
	if share := float64(a) / float64(total); share < 0.4 || share > 0.6 {
		t.Errorf("fair: a got %d, b %d (a's share %.2f), want 50%% ± 10%%", a, b, share)
	}
	a, b = fairRun(t, false, 10, 1)
	if share := float64(b) / float64(a+b); share > 0.2 {
		t.Errorf("unfair: b got %.2f of admissions, want about its arrival share (1/11)", share)
	}
}

// A client with no backlog takes nothing from the others: b sends nothing,
// then a single request that goes at the level's virtual time, not ahead of
// all of a's backlog by saved-up credit, nor behind all of it.
func TestFairnessNoBacklogNoShare(t *testing.T) {
	a, b := fairRun(t, true, 10, 0)
	if b != 0 || a < 95 {
		t.Fatalf("a %d, b %d: a alone should get every admission", a, b)
	}
	l := unlimited()
	l.Rate, l.Burst = 10, 1
	h := newHarness(t, l, 0)
	h.d.SetFairness(true)
	for i := range 5 {
		if err := h.enqueue(fmt.Sprintf("a%d", i), Request{Urgency: 3, Client: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	h.granted("a0")
	if err := h.enqueue("b0", Request{Urgency: 3, Client: "b"}); err != nil {
		t.Fatal(err)
	}
	// b0 is tagged right after the virtual time (a0's tag): it ties a1 and
	// goes after it by sequence, then before a2…a4.
	h.clk.Advance(100 * time.Millisecond)
	h.granted("a0", "a1")
	h.clk.Advance(100 * time.Millisecond)
	h.granted("a0", "a1", "b0")
}

// queue_size per client refuses only its own client, evicting no one;
// urgency still orders the rest.
func TestClientQueueSize(t *testing.T) {
	l := unlimited()
	l.Concurrency = 1
	h := newHarness(t, l, 0)
	h.add("busy", 3)
	for i := range 2 {
		if err := h.enqueue(fmt.Sprintf("a%d", i), Request{Urgency: 5, Client: "a", ClientQueueSize: 2}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.d.Enqueue(Request{Urgency: 0, Client: "a", ClientQueueSize: 2})
	var re *RejectError
	if !errors.As(err, &re) || !errors.Is(err, ErrClientQueueFull) || re.RetryAfter < time.Second {
		t.Fatalf("a's third request: %v, want ErrClientQueueFull with Retry-After", err)
	}
	if err := h.enqueue("b0", Request{Urgency: 5, Client: "b", ClientQueueSize: 2}); err != nil {
		t.Fatalf("b refused for a's cap: %v", err)
	}
	h.pending("a0")
	h.pending("a1")
	h.release("busy")
	h.granted("a0")
	// a's waiting count went down: it may queue again.
	if err := h.enqueue("a2", Request{Urgency: 5, Client: "a", ClientQueueSize: 2}); err != nil {
		t.Fatalf("a refused after one of its requests left: %v", err)
	}
}
