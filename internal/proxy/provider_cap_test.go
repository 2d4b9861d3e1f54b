package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/dispatch"
)

// Never more optimistic than the provider (docs/shaping.md, "Provider
// rate-limit headers"): a response stating 3 requests left until +2 s lets
// three more requests to that destination go at once; the 4th waits in
// the queue until the reset while another destination is served. Over
// plain HTTP and inside an intercepted HTTPS tunnel. The origin states the
// remaining count once, on the first response, as a provider whose later
// answers are still in flight would: only the cap holds the 4th back.
func TestProviderRemainingCaps(t *testing.T) {
	t.Parallel()
	for _, tunnel := range []bool{false, true} {
		t.Run(fmt.Sprintf("intercepted=%v", tunnel), func(t *testing.T) {
			t.Parallel()
			var (
				e      *env
				client *http.Client
			)
			if tunnel {
				e = newEnv(t, intercepting("127.0.0.1"))
				client = e.interceptClient(false)
			} else {
				e = newEnv(t)
				client = e.client
			}
			var (
				mu      sync.Mutex
				arrived = make(map[string]time.Time)
			)
			handle := func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				arrived[r.URL.Path] = time.Now()
				mu.Unlock()
				if r.URL.Path == "/first" {
					w.Header().Set("X-Ratelimit-Limit-Requests", "60")
					w.Header().Set("X-Ratelimit-Remaining-Requests", "3")
					w.Header().Set("X-Ratelimit-Reset-Requests", "2s")
				}
				_, _ = io.WriteString(w, "ok")
			}
			newOrigin := e.newOrigin
			if tunnel {
				newOrigin = e.newTLSOrigin
			}
			limited, other := newOrigin(handle), newOrigin(handle)
			if tunnel {
				e.trustOrigin(limited)
				e.trustOrigin(other)
			}
			u, _ := url.Parse(limited.URL)
			dest := u.Host
			at := func(path string) time.Time {
				mu.Lock()
				defer mu.Unlock()
				return arrived[path]
			}

			sent := time.Now()
			wantStatus(t, roundTrip(client, e.req(http.MethodGet, limited.URL+"/first", nil)), 200)
			back := time.Now()
			s := e.stats("the destination capped", func(s dispatch.Stats) bool { return len(s.Caps) == 1 })
			c := s.Caps[0]
			if c.Dest != dest || c.Unit != dispatch.CapRequests || c.Stated != 3 || c.Remaining != 3 || c.Limit != 60 {
				t.Fatalf("cap %+v, want %s: 3 requests left of 60", c, dest)
			}
			if c.Until.Before(sent.Add(2*time.Second)) || c.Until.After(back.Add(2*time.Second)) {
				t.Fatalf("cap until response+%v, want 2s", c.Until.Sub(back))
			}
			if len(s.Paused) != 0 {
				t.Fatalf("paused %+v: 3 left is no pause", s.Paused)
			}

			// Three more go at once, together.
			var three []*http.Request
			var chans []<-chan result
			for i := range 3 {
				r := e.req(http.MethodGet, fmt.Sprintf("%s/r%d", limited.URL, i), nil)
				ch := make(chan result, 1)
				go func() { ch <- roundTrip(client, r) }()
				three, chans = append(three, r), append(chans, ch)
			}
			for i, ch := range chans {
				wantStatus(t, recv(t, ch, "one of the three"), 200)
				if a := at(fmt.Sprintf("/r%d", i)); !a.Before(c.Until) {
					t.Fatalf("request %d reached the origin %v after the reset", i, a.Sub(c.Until))
				}
				if w := e.record(idOf(three[i])).QueueWait; w >= c.Until.Sub(back) {
					t.Fatalf("request %d waited %v", i, w)
				}
			}

			// The 4th waits in the queue; another destination does not.
			fourth := e.req(http.MethodGet, limited.URL+"/r3", nil)
			next := make(chan result, 1)
			go func() { next <- roundTrip(client, fourth) }()
			e.waitDepth(1)
			if s := e.disp.Stats(); len(s.Caps) != 1 || s.Caps[0].Remaining != 0 {
				t.Fatalf("caps %+v while the 4th waits, want 0 left", s.Caps)
			}
			wantStatus(t, roundTrip(client, e.req(http.MethodGet, other.URL+"/other", nil)), 200)
			notYet(t, next, "the 4th request")
			if s := e.disp.Stats(); s.Depth != 1 {
				t.Fatalf("queue depth %d while the cap is exhausted, want 1", s.Depth)
			}
			other.got("/other")
			limited.never("/r3")

			// It goes at the reset, not before.
			wantStatus(t, recv(t, next, "the 4th request after the reset"), 200)
			if a := at("/r3"); a.Before(c.Until) {
				t.Fatalf("the 4th request reached the origin %v before the reset", c.Until.Sub(a))
			}
			if r := e.record(idOf(fourth)); r.QueueWait <= 0 {
				t.Errorf("Record of the 4th request: queue wait %v", r.QueueWait)
			}
		})
	}
}
