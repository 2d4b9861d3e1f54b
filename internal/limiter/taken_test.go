package limiter

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"
)

// TakeN of n tokens: step by step against a model bucket (rate refill up
// to burst, n at a time, refunds of n), with keep, the reported wait, n
// above burst (never) and n < 1 (nothing taken); and over every window
// the tokens taken less those refunded stay within rate × t + burst.
func TestBucketTakeN(t *testing.T) {
	for _, cfg := range []struct {
		rate  float64
		burst int
	}{{1, 1}, {10, 3}, {2.5, 4}, {1000, 50}} {
		t.Run(fmt.Sprintf("rate=%v/burst=%d", cfg.rate, cfg.burst), func(t *testing.T) {
			rng := rand.New(rand.NewSource(int64(cfg.burst) * 7))
			b := NewBucket(cfg.rate, cfg.burst)
			model := float64(cfg.burst)
			var now time.Duration
			type event struct {
				at time.Duration
				n  int
			}
			var events []event
			var held []Token
			for step := 0; step < 3000; step++ {
				switch op := rng.Intn(10); {
				case op < 3:
					d := time.Duration(rng.Int63n(int64(2 * time.Second / time.Duration(cfg.rate))))
					now += d
					model = min(float64(cfg.burst), model+d.Seconds()*cfg.rate)
				case op < 7:
					n, keep := 1+rng.Intn(cfg.burst+1), rng.Intn(3)
					tok, ok, wait := b.TakeN(t0.Add(now), n, keep)
					k := float64(max(0, min(keep, cfg.burst-n)))
					need := float64(n) + k
					if n > cfg.burst {
						if ok || wait != time.Duration(math.MaxInt64) {
							t.Fatalf("step %d: %d tokens above burst %d: ok=%v wait %v, want never", step, n, cfg.burst, ok, wait)
						}
						break
					}
					if math.Abs(model-need) > 1e-6 && ok != (model >= need) {
						t.Fatalf("step %d: TakeN(%d, keep %d) ok=%v, model has %v", step, n, keep, ok, model)
					}
					if !ok {
						want := time.Duration((need - model) / cfg.rate * 1e9)
						if wait < want-time.Microsecond || wait > want+time.Microsecond {
							t.Fatalf("step %d: wait %v, model %v", step, wait, want)
						}
						if d := b.CheckN(t0.Add(now), n, keep); d != wait {
							t.Fatalf("step %d: CheckN %v, TakeN's wait %v", step, d, wait)
						}
						break
					}
					model -= float64(n)
					held = append(held, tok)
					events = append(events, event{now, n})
				default:
					if len(held) == 0 {
						break
					}
					i := rng.Intn(len(held))
					b.Refund(held[i], t0.Add(now))
					model = min(float64(cfg.burst), model+float64(held[i].n))
					events = append(events, event{now, -held[i].n})
					held = append(held[:i], held[i+1:]...)
				}
				if got := b.Tokens(t0.Add(now)); math.Abs(got-model) > 1e-6 {
					t.Fatalf("step %d: %v tokens, model %v", step, got, model)
				}
			}
			for s := range events {
				net := 0
				for e := s; e < len(events); e++ {
					net += events[e].n
					if limit := cfg.rate*(events[e].at-events[s].at).Seconds() + float64(cfg.burst); float64(net) > limit+1e-6 {
						t.Fatalf("window [%v, %v]: %d tokens net, limit %.3f", events[s].at, events[e].at, net, limit)
					}
				}
			}
		})
	}
	t.Run("n below 1 takes nothing", func(t *testing.T) {
		b := NewBucket(1, 1)
		if tok, ok, _ := b.TakeN(t0, 0, 0); !ok || tok.n != 0 || b.Tokens(t0) != 1 {
			t.Fatalf("TakeN(0): ok=%v, %v tokens left", ok, b.Tokens(t0))
		}
	})
}
