package proxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/egress"
	"github.com/proxyd/proxyd/internal/upstream"
)

// maxReplayBody is the largest request body buffered so that a retry can
// send it again; a larger (or unknown-length) body is never retried.
const maxReplayBody = 64 << 10

// retryPolicy is upstream.retry compiled.
type retryPolicy struct {
	attempts       int
	connectFailure bool
	statuses       map[int]bool
	base, max      time.Duration
}

func compileRetry(r config.Retry) retryPolicy {
	p := retryPolicy{attempts: r.Attempts, statuses: map[int]bool{}, base: r.BackoffBase, max: r.BackoffMax}
	for _, on := range r.On {
		if on == config.RetryConnectFailure {
			p.connectFailure = true
			continue
		}
		if code, err := strconv.Atoi(on); err == nil {
			p.statuses[code] = true
		}
	}
	return p
}

// idempotent reports whether a method may be retried (RFC 9110 §9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// retryable reports whether an attempt's outcome is one retry.on names.
// Proxy-side failures count as the status they are answered with: a
// connect failure (refused, DNS, dial timeout) as "connect-failure", a
// response timeout as "504", any other upstream failure as "502".
func (p *retryPolicy) retryable(resp *http.Response, err error) bool {
	if err == nil {
		return p.statuses[resp.StatusCode]
	}
	if _, denied := errors.AsType[*egress.Denial](err); denied {
		return false // the policy answers the same every time
	}
	switch {
	case errors.Is(err, upstream.ErrConnRefused), errors.Is(err, upstream.ErrDNS), errors.Is(err, upstream.ErrConnectTimeout):
		return p.connectFailure
	case errors.Is(err, upstream.ErrResponseTimeout):
		return p.statuses[http.StatusGatewayTimeout]
	case errors.Is(err, upstream.ErrUpstream):
		return p.statuses[http.StatusBadGateway]
	}
	return false
}

// backoff is the wait before retry number n (0-based): full jitter,
// uniformly in [0, min(max, base·2ⁿ)]. An upstream's Retry-After or
// rate-limit reset pauses the destination, which holds the retry in the
// queue until then: so the longer of the two wins.
func (p *retryPolicy) backoff(n int, rnd func(int64) int64) time.Duration {
	ceil := p.base
	for i := 0; i < n && ceil < p.max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, p.max)
	return time.Duration(rnd(int64(ceil) + 1))
}

// retryBudget caps retries at a fraction of the requests seen in the last
// 10 s, with a floor of 3, so that a failing upstream does not get a
// retry storm. Safe for concurrent use.
type retryBudget struct {
	clock clock.Clock
	mu    sync.Mutex
	// one slot per second of the window; slot i counts second epoch+i.
	sec      [10]int64
	requests [10]int64
	retries  [10]int64
}

const budgetFloor = 3

func (b *retryBudget) slotLocked(now time.Time) int {
	s := now.Unix()
	i := int(s % 10)
	if b.sec[i] != s {
		b.sec[i], b.requests[i], b.retries[i] = s, 0, 0
	}
	return i
}

func (b *retryBudget) sumsLocked(now time.Time) (req, ret int64) {
	s := now.Unix()
	for i := range b.sec {
		if s-b.sec[i] < 10 {
			req += b.requests[i]
			ret += b.retries[i]
		}
	}
	return req, ret
}

// request counts a new request (its first attempt).
func (b *retryBudget) request() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests[b.slotLocked(b.clock.Now())]++
}

// allow takes one retry from the budget, or reports false.
func (b *retryBudget) allow(fraction float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	i := b.slotLocked(now)
	req, ret := b.sumsLocked(now)
	if float64(ret+1) > max(budgetFloor, fraction*float64(req)) {
		return false
	}
	b.retries[i]++
	return true
}

// replayBody is the exchange's body buffered so that it can be sent
// again (replayBody below): the body read whole to price it (cost.go), or
// read now after the part read to price it.
func (x *exchange) replayBody() (body []byte, ok bool, err error) {
	if x.prefixAll && len(x.prefix) <= maxReplayBody {
		return x.prefix, true, nil
	}
	return replayBody(x.in, x.inBody())
}

// replayBody buffers a small request body (of r, read from body) so that
// it can be sent again; ok is false when it cannot be (too large or of
// unknown length).
func replayBody(r *http.Request, body io.Reader) ([]byte, bool, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, true, nil
	}
	if r.ContentLength < 0 || r.ContentLength > maxReplayBody {
		return nil, false, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, r.ContentLength))
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

func jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n)
}
