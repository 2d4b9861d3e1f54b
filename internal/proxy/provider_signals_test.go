package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/dispatch"
)

// The providers' own rate-limit headers (docs/shaping.md, "Provider
// rate-limit headers"), as issue 23 measured them: an origin announcing an
// exhausted dimension pauses its destination until that dimension's
// reset, the next request to it waits in the queue until then, and a
// request to another destination goes at once. Over plain HTTP and inside
// an intercepted HTTPS tunnel.
//
// The harness runs on the real clock, so the pause is checked where the
// dispatcher states it (Stats().Paused: until the stated reset, measured
// from when the response came back) and the waiting request is checked to
// reach the origin no earlier than that.
func TestProviderSignalsPause(t *testing.T) {
	t.Parallel()
	type answer struct {
		status int
		hdr    http.Header
		// reset is when the headers say the pause ends: relative (the
		// pause is then measured from the response), or absolute.
		rel time.Duration
		abs time.Time
	}
	cases := []struct {
		name   string
		answer func(now time.Time) answer
	}{
		{"openai remaining-requests 0, reset 2s", func(time.Time) answer {
			return answer{status: 200, rel: 2 * time.Second, hdr: http.Header{
				"X-Ratelimit-Limit-Requests": {"60"}, "X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"2s"},
				"X-Ratelimit-Limit-Tokens": {"150000"}, "X-Ratelimit-Remaining-Tokens": {"149000"}, "X-Ratelimit-Reset-Tokens": {"6m0s"},
			}}
		}},
		{"openai remaining-tokens 0, reset 1.5s", func(time.Time) answer {
			return answer{status: 200, rel: 1500 * time.Millisecond, hdr: http.Header{
				"X-Ratelimit-Remaining-Requests": {"59"}, "X-Ratelimit-Reset-Requests": {"1s"},
				"X-Ratelimit-Remaining-Tokens": {"0"}, "X-Ratelimit-Reset-Tokens": {"1.5s"},
			}}
		}},
		{"anthropic requests-remaining 0, RFC 3339 reset +2s", func(now time.Time) answer {
			reset := now.Add(2 * time.Second).UTC()
			return answer{status: 200, abs: reset, hdr: http.Header{
				"Anthropic-Ratelimit-Requests-Limit": {"50"}, "Anthropic-Ratelimit-Requests-Remaining": {"0"},
				"Anthropic-Ratelimit-Requests-Reset":   {reset.Format(time.RFC3339Nano)},
				"Anthropic-Ratelimit-Tokens-Remaining": {"80000"},
				"Anthropic-Ratelimit-Tokens-Reset":     {now.Add(time.Minute).UTC().Format(time.RFC3339)},
			}}
		}},
		{"429 with only retry-after-ms 1500", func(time.Time) answer {
			return answer{status: 429, rel: 1500 * time.Millisecond, hdr: http.Header{"Retry-After-Ms": {"1500"}}}
		}},
	}
	for _, tc := range cases {
		for _, tunnel := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/intercepted=%v", tc.name, tunnel), func(t *testing.T) {
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
					stated  answer
					arrived = make(map[string]time.Time)
				)
				handle := func(w http.ResponseWriter, r *http.Request) {
					now := time.Now()
					mu.Lock()
					arrived[r.URL.Path] = now
					mu.Unlock()
					if r.URL.Path != "/limited" {
						_, _ = io.WriteString(w, "ok")
						return
					}
					a := tc.answer(now)
					mu.Lock()
					stated = a
					mu.Unlock()
					for k, v := range a.hdr {
						w.Header()[k] = v
					}
					w.WriteHeader(a.status)
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
				dest := func(o *origin) string { u, _ := url.Parse(o.URL); return u.Host }

				sent := time.Now()
				res := roundTrip(client, e.req(http.MethodGet, limited.URL+"/limited", nil))
				back := time.Now()
				if res.err != nil {
					t.Fatal(res.err)
				}
				mu.Lock()
				a := stated
				mu.Unlock()
				wantStatus(t, res, a.status)

				// The destination is paused until the stated reset.
				s := e.stats("the destination paused", func(s dispatch.Stats) bool { return len(s.Paused) == 1 })
				p := s.Paused[0]
				if p.Dest != dest(limited) {
					t.Fatalf("paused %q, want %q", p.Dest, dest(limited))
				}
				if a.abs.IsZero() {
					if p.Until.Before(sent.Add(a.rel)) || p.Until.After(back.Add(a.rel)) {
						t.Fatalf("paused until response+%v, want %v after the response (within %v)", p.Until.Sub(back), a.rel, back.Sub(sent))
					}
				} else if !p.Until.Equal(a.abs) {
					t.Fatalf("paused until %v, want the stated reset %v", p.Until, a.abs)
				}

				// The next request to it waits; another destination does not.
				next := make(chan result, 1)
				nextReq := e.req(http.MethodGet, limited.URL+"/next", nil)
				go func() { next <- roundTrip(client, nextReq) }()
				e.waitDepth(1)
				wantStatus(t, roundTrip(client, e.req(http.MethodGet, other.URL+"/other", nil)), 200)
				notYet(t, next, "the request to the paused destination")
				if s := e.disp.Stats(); s.Depth != 1 {
					t.Fatalf("queue depth %d while the destination is paused, want 1", s.Depth)
				}
				other.got("/other")
				limited.never("/next")

				// It goes once the reset has passed, not before.
				wantStatus(t, recv(t, next, "the request after the reset"), 200)
				mu.Lock()
				at := arrived["/next"]
				mu.Unlock()
				if at.Before(p.Until) {
					t.Fatalf("the next request reached the origin %v before the reset", p.Until.Sub(at))
				}
				if r := e.record(idOf(nextReq)); r.QueueWait <= 0 {
					t.Errorf("Record of the waiting request: queue wait %v", r.QueueWait)
				}
				if tunnel && !strings.HasPrefix(limited.URL, "https://") {
					t.Fatalf("origin %s is not TLS", limited.URL)
				}
			})
		}
	}
}
