package dispatch

import (
	"math"
	"time"

	"github.com/proxyd/proxyd/internal/limiter"
)

// tokenSource is where a bucket's tokens come from: the global bucket's
// and each hosts rule's. Two implement it: localTokens, this process's
// own limiter.Bucket, and leasePool, the tokens a shared store leased to
// this replica (lease.go, docs/shared-quota.md). SetLeased swaps one for
// the other; admission (runLocked) and refunds (finish) never ask which
// one they hold. Not safe for concurrent use: the dispatcher's lock
// guards it.
type tokenSource interface {
	// take takes n tokens at now if keep more stay after them, and
	// returns what refund needs to give them back. When it cannot, it
	// takes nothing and returns when to ask again; the zero time means
	// not by itself (a leased pool waits for the store's next grant).
	take(now time.Time, n, keep int) (t taken, ok bool, retry time.Time)
	// check is take without taking: whether n tokens are there at now,
	// and if not when to ask again (as take).
	check(now time.Time, n int) (ok bool, retry time.Time)
	// refund gives back tokens that take returned.
	refund(t taken, now time.Time)
}

// taken is a take's receipt, for a refund; it is kept small (two of
// them live in every Permit). The zero value (nothing taken: an unlimited
// bucket, a free request) refunds nothing.
type taken struct {
	src tokenSource // where the tokens go back to; nil: nowhere
	n   int32       // tokens taken
	lv  int8        // a quota's: the urgency the units were taken at
	// expires, for leased tokens, is the soonest expiry among them (Unix
	// nanoseconds): a refund never outlives its lease.
	expires int64
}

// giveBack refunds t to its source.
func (t taken) giveBack(now time.Time) {
	if t.src != nil {
		t.src.refund(t, now)
	}
}

// tokensPerRequest is what one admission costs in tokens. Takes are of n
// tokens throughout, so that pricing requests by cost only changes this.
const tokensPerRequest = 1

// localTokens is a tokenSource backed by this process's own bucket.
type localTokens struct{ b *limiter.Bucket }

var (
	_ tokenSource = localTokens{}
	_ tokenSource = (*leasePool)(nil)
)

func (s localTokens) take(now time.Time, n, keep int) (taken, bool, time.Time) {
	tok, ok, wait := s.b.TakeN(now, n, keep)
	if !ok {
		return taken{}, false, retryAt(now, wait)
	}
	if tok == (limiter.Token{}) {
		return taken{}, true, time.Time{} // unlimited: nothing to give back
	}
	return taken{src: s, n: int32(n)}, true, time.Time{}
}

func (s localTokens) check(now time.Time, n int) (bool, time.Time) {
	wait := s.b.CheckN(now, n, 0)
	if wait == 0 {
		return true, time.Time{}
	}
	return false, retryAt(now, wait)
}

func (s localTokens) refund(t taken, now time.Time) { s.b.RefundN(int(t.n), now) }

// retryAt is now+wait, or the zero time when wait is never (a take of
// more than burst: only a limit change helps, and it runs admission).
func retryAt(now time.Time, wait time.Duration) time.Time {
	if wait >= time.Duration(math.MaxInt64) {
		return time.Time{}
	}
	return now.Add(wait)
}

// take spends n leased tokens, those that expire first. keep is the local
// bucket's headroom for urgent arrivals (Config.Reserve) and does not
// apply: the store already serves replicas by urgency. Without n tokens it
// takes nothing and waits for the next grant (zero retry).
func (p *leasePool) take(now time.Time, n, _ int) (taken, bool, time.Time) {
	if ok, _ := p.check(now, n); !ok {
		return taken{}, false, time.Time{}
	}
	t := taken{src: p, n: int32(n)}
	if n > 0 {
		t.expires = p.batches[0].expires.UnixNano()
	}
	for n > 0 {
		b := &p.batches[0]
		k := min(n, b.n)
		b.n -= k
		n -= k
		if b.n == 0 {
			p.batches = append(p.batches[:0], p.batches[1:]...)
		}
	}
	return t, true, time.Time{}
}

// check reports whether n tokens are leased and valid at now; if not, only
// a grant brings more (zero retry).
func (p *leasePool) check(now time.Time, n int) (bool, time.Time) {
	p.dropExpired(now)
	if n <= 1 {
		return n <= 0 || len(p.batches) > 0, time.Time{}
	}
	return p.sum() >= n, time.Time{}
}

// refund gives tokens taken with take back, unless their lease has ended.
func (p *leasePool) refund(t taken, now time.Time) {
	if expires := time.Unix(0, t.expires); t.n > 0 && expires.After(now) {
		p.grant(int(t.n), expires)
	}
}
