package dispatch

import (
	"time"

	"github.com/proxyd/proxyd/internal/limiter"
)

// The local buckets that take over from leased tokens when the shared
// store cannot be reached (redis.on_error local; docs/shared-quota.md,
// "The bound across an outage").
//
// They start empty (SetLeased(false)): a window spanning the switch then
// holds what the shared bucket allowed before it (rate × t + burst, the
// leases included) plus what the local buckets refill after it, at most
// rate × t in all at the shares 1/replicas; nothing more. Full, they would
// add a burst per replica. And at a share below 1 the local burst is the
// same share of limits.burst (localBurst): when leases come back on, the
// fleet's local buckets together hold at most one burst (they may have
// filled while idle), beside the shared bucket's own. So a window that
// spans one outage exceeds rate × t + burst by at most one burst
// (max(burst, replicas), the local bursts being at least 1 each).

// emptyLocalBucketsLocked empties the global bucket and each hosts rule's
// that has a rate.
func (d *Dispatcher) emptyLocalBucketsLocked(now time.Time) {
	drain(d.mu.rate, now)
	for _, r := range d.mu.rules {
		if r.limit.Rate > 0 {
			drain(r.bucket, now)
		}
	}
}

// drain takes every whole token b holds at now.
func drain(b *limiter.Bucket, now time.Time) {
	if b.Unlimited() {
		return
	}
	if n := int(b.Tokens(now)); n > 0 {
		b.TakeN(now, n, 0)
	}
}

// localBurst is the local bucket's burst at share of limits.rate: the
// same share of burst, at least 1 (share outside (0, 1): burst).
func localBurst(burst int, share float64) int {
	if !(share > 0 && share < 1) || burst <= 0 {
		return burst
	}
	return max(1, int(float64(burst)*share+1e-9))
}
