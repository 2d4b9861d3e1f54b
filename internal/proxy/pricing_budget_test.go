package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// Bodies read to price requests are held until their exchange ends, within
// one budget for the process (proxy.Deps.PricingMemory; cost.go): a
// request whose body does not fit is priced cost.default and its body
// streams, byte for byte, as one larger than cost.max_body does; the bytes
// come back when the exchange ends. Without the budget a queue of priced
// requests could hold queue_size × cost.max_body bytes.
func TestPricingMemoryBound(t *testing.T) {
	t.Parallel()
	def, maxBody := int64(777), config.ByteSize(4096)
	body := chatBody(1000, 300, 10, false)
	started, release := make(chan struct{}, 1), make(chan struct{})
	handle := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		hashBody(w, r)
	}
	e, _, url := costEnv(t, handle, &config.Cost{Default: &def, MaxBody: &maxBody}, func(s *setup) {
		one := 1
		s.cfg.Hosts[0].Concurrency = &one
		s.pricingMemory = int64(len(body)) + 100 // one body, not two
	})
	byBody := int64(len(body)/4 + 300)

	// The first is priced by its body, which it holds while the upstream
	// holds it.
	first := e.req(http.MethodPost, url("llm.test", "/slow"), strings.NewReader(body))
	firstDone := e.goDo(first)
	select {
	case <-started:
	case res := <-firstDone:
		t.Fatalf("the first request was answered before the upstream held it: %v", res)
	}
	// The second does not fit beside it: priced cost.default, waiting for
	// the rule's one slot, its body not read.
	second := e.req(http.MethodPost, url("llm.test", "/second"), strings.NewReader(body))
	secondDone := e.goDo(second)
	e.stats("the second request waiting for the slot", func(s dispatch.Stats) bool {
		return len(s.Hosts) > 0 && s.Hosts[0].Waiting == 1
	})
	close(release)
	for _, c := range []struct {
		name string
		r    *http.Request
		done <-chan result
		want int64
	}{{"first", first, firstDone, byBody}, {"second", second, secondDone, def}} {
		res := recv(t, c.done, c.name)
		wantStatus(t, res, http.StatusOK)
		if res.body != hashOf(body) {
			t.Errorf("%s: upstream got %q, want the body as sent %q", c.name, res.body, hashOf(body))
		}
		if got := e.record(idOf(c.r)).CostEstimate; got != c.want {
			t.Errorf("%s: priced %d, want %d", c.name, got, c.want)
		}
	}
	// Both ended: the budget is whole again.
	third := e.req(http.MethodPost, url("llm.test", "/third"), strings.NewReader(body))
	res := e.do(third)
	wantStatus(t, res, http.StatusOK)
	if got := e.record(idOf(third)).CostEstimate; got != byBody {
		t.Errorf("third, alone: priced %d, want %d (by its body: the others' bytes came back)", got, byBody)
	}
}
