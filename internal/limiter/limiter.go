// Package limiter holds the permits a request needs before it is sent: rate
// tokens (Bucket, a golang.org/x/time/rate limiter with time passed in) and
// counted slots (Slots, for concurrency and tunnels).
//
// Nothing here blocks or reads a clock: the dispatcher asks "can I take a
// permit now?" under its own lock and, when the answer is no, learns when
// to ask again (Bucket) or waits for a Release (Slots). That keeps every
// token computation testable with plain time values, and lets a permit be
// given back when the caller it was granted to has gone.
//
// Neither type is safe for concurrent use: the dispatcher's lock guards
// them.
package limiter

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// Bucket is a token bucket. A rate of 0 means unlimited (every Take
// succeeds).
//
// The refill arithmetic is x/time/rate's. A refund, though, cannot be left
// to rate.Reservation.CancelAt: it restores nothing once the reservation's
// time has passed, which on a real clock is always by the time a caller is
// found to have left. So Bucket keeps the tokens given back as a credit on
// top of the limiter, and treats the two as one bucket: the limiter's
// tokens plus the credit never exceed burst (the credit is trimmed as the
// limiter refills), a Take needs their sum to reach 1, and a refund adds 1
// to the sum up to burst. Over any window of length t, tokens taken minus
// tokens refunded is therefore at most rate×t + burst
// (TestBucketNeverExceedsRate).
type Bucket struct {
	lim    *rate.Limiter
	limit  float64
	burst  int
	credit float64 // refunded tokens; lim's tokens + credit <= burst
}

// NewBucket returns a full bucket refilled at r tokens per second holding
// at most burst tokens; r == 0 means unlimited.
func NewBucket(r float64, burst int) *Bucket {
	b := &Bucket{lim: rate.NewLimiter(toLimit(r), burst), limit: r, burst: burst}
	return b
}

func toLimit(r float64) rate.Limit {
	if r <= 0 || math.IsInf(r, 1) {
		return rate.Inf
	}
	return rate.Limit(r)
}

// Unlimited reports whether the bucket lets everything through.
func (b *Bucket) Unlimited() bool { return b.limit <= 0 }

// Rate and Burst return the current settings.
func (b *Bucket) Rate() float64 { return b.limit }

// Burst returns the bucket size.
func (b *Bucket) Burst() int { return b.burst }

// Token is what a Take took; give it back with Refund. Its zero value
// (what an unlimited bucket hands out) refunds nothing.
type Token struct{ n int }

// tokensAt trims the credit to what the bucket can hold at now and returns
// the limiter's tokens and the credit. The limiter's tokens may be below
// zero by at most the credit (a Take that the credit helped pay for).
func (b *Bucket) tokensAt(now time.Time) (have, credit float64) {
	have = b.lim.TokensAt(now)
	if b.credit > 0 {
		b.credit = min(b.credit, max(0, float64(b.burst)-have))
	}
	return have, b.credit
}

// Take takes one token at now. When none is available it takes nothing and
// returns how long until one will be (math.MaxInt64 when never: burst 0).
func (b *Bucket) Take(now time.Time) (tok Token, ok bool, wait time.Duration) {
	return b.TakeN(now, 1, 0)
}

// TakeLeaving takes one token at now only if keep more stay in the bucket
// after it (TakeN of one token).
func (b *Bucket) TakeLeaving(now time.Time, keep int) (tok Token, ok bool, wait time.Duration) {
	return b.TakeN(now, 1, keep)
}

// TakeN takes n tokens at now only if keep more stay in the bucket after
// them: the dispatcher's headroom for more urgent arrivals. keep is capped
// at burst-n, so n tokens are always reachable when n <= burst. When the
// tokens cannot be taken it takes nothing and returns how long until they
// can be (math.MaxInt64 when never: n above burst). n < 1 takes nothing
// and succeeds.
func (b *Bucket) TakeN(now time.Time, n, keep int) (tok Token, ok bool, wait time.Duration) {
	wait = b.CheckN(now, n, keep)
	if wait > 0 || b.Unlimited() || n < 1 {
		return Token{}, wait == 0, wait
	}
	if b.credit >= float64(n) {
		b.credit -= float64(n)
	} else {
		// The limiter pays, going below zero by at most what the credit
		// holds; their sum stays >= 0.
		b.lim.ReserveN(now, n)
	}
	return Token{n: n}, true, 0
}

// CheckN reports how long until TakeN(now, n, keep) would succeed: 0 when
// it would now, math.MaxInt64 when never. It takes nothing.
func (b *Bucket) CheckN(now time.Time, n, keep int) time.Duration {
	if b.Unlimited() || n < 1 {
		return 0
	}
	if n > b.burst {
		return time.Duration(math.MaxInt64)
	}
	k := float64(max(0, min(keep, b.burst-n)))
	have, credit := b.tokensAt(now)
	short := float64(n) + k - have - credit
	if short <= 0 {
		return 0
	}
	// Round up so that a wake-up at now+wait finds the tokens there (a
	// float shortfall at that instant only costs one more short wait).
	return max(time.Duration(math.Ceil(short/b.limit*1e9)), time.Nanosecond)
}

// Refund gives tokens taken at or before now back: the bucket holds that
// many more, up to burst, however long ago they were taken.
func (b *Bucket) Refund(tok Token, now time.Time) { b.RefundN(tok.n, now) }

// RefundN gives back n tokens that a TakeN took at or before now (a
// caller that keeps the count rather than the Token).
func (b *Bucket) RefundN(n int, now time.Time) {
	if n <= 0 || b.Unlimited() {
		return
	}
	b.credit += float64(n)
	b.tokensAt(now) // cap at burst
}

// Tokens reports the tokens available at now (+Inf when unlimited).
func (b *Bucket) Tokens(now time.Time) float64 {
	if b.Unlimited() {
		return math.Inf(1)
	}
	have, credit := b.tokensAt(now)
	return have + credit
}

// Set changes rate and burst at now; tokens already earned are kept (up to
// the new burst).
func (b *Bucket) Set(now time.Time, r float64, burst int) {
	b.lim.SetLimitAt(now, toLimit(r))
	b.lim.SetBurstAt(now, burst)
	b.limit, b.burst = r, burst
	if b.Unlimited() {
		b.credit = 0
	}
	b.tokensAt(now)
}

// Slots counts permits in use against a cap; a cap of 0 means unlimited.
// Its zero value is an unlimited, empty counter.
type Slots struct {
	cap  int
	used int
}

// NewSlots returns a counter with the given cap (0 = unlimited).
func NewSlots(capacity int) Slots { return Slots{cap: capacity} }

// Available reports whether Acquire would succeed.
func (s *Slots) Available() bool { return s.cap <= 0 || s.used < s.cap }

// Acquire takes a slot if one is free.
func (s *Slots) Acquire() bool {
	if !s.Available() {
		return false
	}
	s.used++
	return true
}

// Release frees a slot.
func (s *Slots) Release() {
	if s.used <= 0 {
		panic("limiter: Slots.Release without Acquire")
	}
	s.used--
}

// InUse is the number of slots taken.
func (s *Slots) InUse() int { return s.used }

// Cap is the cap (0 = unlimited).
func (s *Slots) Cap() int { return s.cap }

// SetCap changes the cap. Slots already taken stay taken, even above a
// lowered cap; new ones wait until usage is below it.
func (s *Slots) SetCap(c int) { s.cap = c }
