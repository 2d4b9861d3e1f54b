package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Class is one kind of request in a run.
type Class struct {
	Name   string
	Header http.Header // added to every request of the class; may be nil
	// Workers is the closed-loop concurrency of this class.
	Workers int
	// Rate is the open-loop arrival rate of this class, per second.
	Rate float64
	// Client sends this class's requests, when set: a class with its own
	// connection pool does not pick up a connection that another class
	// left idle, as separate client processes would not. Nil: the run's.
	Client *http.Client
}

// Options configure one run. URL is required, and at least one class.
type Options struct {
	// URL is requested with GET by every request.
	URL string
	// Client sends the requests. Nil: a client over NewTransport(nil, 1024).
	Client *http.Client
	// Classes of requests sent at once.
	Classes []Class
	// Duration of the run: a closed loop starts no request after it; an
	// open loop schedules arrivals within it.
	Duration time.Duration
	// Timeout of each request. Zero: 30s.
	Timeout time.Duration
	// Grace is how long an open loop waits, after its last arrival, for
	// the requests still outstanding before it cancels them (counted as
	// Canceled). Zero: cancel at once.
	Grace time.Duration
	// MaxOutstanding caps an open loop's outstanding requests; an arrival
	// beyond it is not sent and counts as Overflow. Zero: 50,000.
	MaxOutstanding int
	// ServerTiming names a Server-Timing metric (e.g. "queue", which
	// proxyd sends) whose dur of each 2xx answer is recorded in
	// ClassResult.ServerTiming. Empty: none.
	ServerTiming string
}

// ClassResult is what one class saw.
type ClassResult struct {
	Name string
	// Sent requests, Completed (a status came back), OK (2xx).
	Sent, Completed, OK int64
	// Status counts answers by status code.
	Status map[int]int64
	// Errors are requests that got no status (connection refused, reset,
	// timeout), other than those canceled at the end of an open loop.
	Errors int64
	// FirstError is the first error seen, for the report.
	FirstError string
	// Canceled were still outstanding at the end of an open loop.
	Canceled int64
	// Overflow arrivals were not sent: MaxOutstanding were outstanding.
	Overflow int64
	// Latency of 2xx answers: from the scheduled time (open loop) or the
	// send (closed loop) to the end of the body.
	Latency Histogram
	// ServerTiming is the Options.ServerTiming metric of 2xx answers that
	// carried it: the server's own account of part of the latency.
	ServerTiming Histogram
}

// Result is what a run saw.
type Result struct {
	Classes []ClassResult
	// Elapsed is the span from the first send to the last answer (closed
	// loop) or to the end of the schedule (open loop).
	Elapsed time.Duration
	// Lag (open loop) is how late each request left against its schedule:
	// a high p99 means the generator itself could not keep up.
	Lag Histogram
}

// OKRate is the 2xx answers per second over Elapsed, every class together.
func (r *Result) OKRate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	var ok int64
	for i := range r.Classes {
		ok += r.Classes[i].OK
	}
	return float64(ok) / r.Elapsed.Seconds()
}

// Class returns the result of the class named name, or nil.
func (r *Result) Class(name string) *ClassResult {
	for i := range r.Classes {
		if r.Classes[i].Name == name {
			return &r.Classes[i]
		}
	}
	return nil
}

// NewTransport is a keep-alive HTTP/1.1 transport, through proxy when it is
// not nil, that keeps up to idle connections per host.
func NewTransport(proxy *url.URL, idle int) *http.Transport {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        0, // no global cap
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	if proxy != nil {
		t.Proxy = http.ProxyURL(proxy)
	}
	return t
}

// classState accumulates one class's results; mu guards everything but
// the atomic counters.
type classState struct {
	cls                     Class
	sent, completed, ok     atomic.Int64
	errs, canceled, overflw atomic.Int64
	mu                      struct {
		sync.Mutex
		status   map[int]int64
		firstErr string
		lat      Histogram
		timing   Histogram
	}
}

func newStates(classes []Class) []*classState {
	st := make([]*classState, len(classes))
	for i, c := range classes {
		st[i] = &classState{cls: c}
		st[i].mu.status = make(map[int]int64)
	}
	return st
}

// client is the class's own client, or c.
func (s *classState) client(c *http.Client) *http.Client {
	if s.cls.Client != nil {
		return s.cls.Client
	}
	return c
}

func (s *classState) result() ClassResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ClassResult{
		Name:       s.cls.Name,
		Sent:       s.sent.Load(),
		Completed:  s.completed.Load(),
		OK:         s.ok.Load(),
		Status:     make(map[int]int64, len(s.mu.status)),
		Errors:     s.errs.Load(),
		FirstError: s.mu.firstErr,
		Canceled:   s.canceled.Load(),
		Overflow:   s.overflw.Load(),
	}
	for k, v := range s.mu.status {
		r.Status[k] = v
	}
	r.Latency.Merge(&s.mu.lat)
	r.ServerTiming.Merge(&s.mu.timing)
	return r
}

func (o *Options) defaults() (*http.Client, time.Duration, error) {
	if o.URL == "" {
		return nil, 0, errors.New("loadgen: URL is required")
	}
	if len(o.Classes) == 0 {
		return nil, 0, errors.New("loadgen: at least one class is required")
	}
	c := o.Client
	if c == nil {
		c = &http.Client{Transport: NewTransport(nil, 1024)}
	}
	t := o.Timeout
	if t <= 0 {
		t = 30 * time.Second
	}
	return c, t, nil
}

// do sends one request of class s and records it; from is when its
// latency starts. stopped tells whether a failure is the run's own
// cancellation.
func do(ctx context.Context, c *http.Client, url string, s *classState, from time.Time, timeout time.Duration, lat *Histogram, stopped func() bool, timing string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		s.fail(err)
		return
	}
	for k, v := range s.cls.Header {
		req.Header[k] = v
	}
	s.sent.Add(1)
	resp, err := c.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		if stopped() {
			s.canceled.Add(1)
			return
		}
		if resp != nil { // the body broke off: the status still came
			s.completed.Add(1)
			s.count(resp.StatusCode)
		}
		s.fail(err)
		return
	}
	d := time.Since(from)
	s.completed.Add(1)
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if ok {
		s.ok.Add(1)
	}
	var st time.Duration
	hasST := false
	if ok && timing != "" {
		st, hasST = ServerTimingDur(resp.Header.Values("Server-Timing"), timing)
	}
	s.mu.Lock()
	s.mu.status[resp.StatusCode]++
	if ok {
		if lat != nil {
			lat.Record(d)
		} else {
			s.mu.lat.Record(d)
		}
		if hasST {
			s.mu.timing.Record(st)
		}
	}
	s.mu.Unlock()
}

func (s *classState) count(status int) {
	s.mu.Lock()
	s.mu.status[status]++
	s.mu.Unlock()
}

func (s *classState) fail(err error) {
	s.errs.Add(1)
	s.mu.Lock()
	if s.mu.firstErr == "" {
		s.mu.firstErr = err.Error()
	}
	s.mu.Unlock()
}

// RunClosed runs a closed loop: each class's Workers send one request after
// another until Duration has passed (or ctx is done).
func RunClosed(ctx context.Context, o Options) (*Result, error) {
	client, timeout, err := o.defaults()
	if err != nil {
		return nil, err
	}
	states := newStates(o.Classes)
	start := time.Now()
	deadline := start.Add(o.Duration)
	stopped := func() bool { return ctx.Err() != nil }
	var wg sync.WaitGroup
	for _, s := range states {
		if s.cls.Workers <= 0 {
			return nil, fmt.Errorf("loadgen: class %q: Workers must be > 0 in a closed loop", s.cls.Name)
		}
		for range s.cls.Workers {
			wg.Go(func() {
				// Each worker records into its own histogram; merged
				// once at the end, so the hot loop takes no lock for it.
				var lat Histogram
				for ctx.Err() == nil {
					now := time.Now()
					if !now.Before(deadline) {
						break
					}
					do(ctx, s.client(client), o.URL, s, now, timeout, &lat, stopped, o.ServerTiming)
				}
				s.mu.Lock()
				s.mu.lat.Merge(&lat)
				s.mu.Unlock()
			})
		}
	}
	wg.Wait()
	r := &Result{Elapsed: time.Since(start)}
	for _, s := range states {
		r.Classes = append(r.Classes, s.result())
	}
	return r, ctx.Err()
}

// RunOpen runs an open loop: each class's requests leave at Rate per
// second on a fixed schedule for Duration, each on its own goroutine,
// whatever happened to the ones before. Latency counts from the scheduled
// time. After the last arrival it waits Grace for outstanding requests,
// then cancels them.
func RunOpen(ctx context.Context, o Options) (*Result, error) {
	client, timeout, err := o.defaults()
	if err != nil {
		return nil, err
	}
	maxOut := o.MaxOutstanding
	if maxOut <= 0 {
		maxOut = 50000
	}
	states := newStates(o.Classes)
	start := time.Now().Add(10 * time.Millisecond) // let the pacer settle
	sched := make([]Schedule, len(o.Classes))
	for i, c := range o.Classes {
		sched[i] = Schedule{Start: start, Rate: c.Rate, Duration: o.Duration}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stop atomic.Bool
	stopped := func() bool { return stop.Load() || ctx.Err() != nil }

	sem := make(chan struct{}, maxOut)
	var wg sync.WaitGroup
	var lag Histogram
	p := newPacer(sched)
	var due []arrival
	for ctx.Err() == nil {
		var next time.Time
		var more bool
		due, next, more = p.step(time.Now(), due[:0])
		now := time.Now()
		for _, a := range due {
			s := states[a.class]
			lag.Record(now.Sub(a.due))
			select {
			case sem <- struct{}{}:
				wg.Go(func() {
					defer func() { <-sem }()
					do(runCtx, s.client(client), o.URL, s, a.due, timeout, nil, stopped, o.ServerTiming)
				})
			default:
				s.overflw.Add(1)
			}
		}
		if !more {
			break
		}
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
	elapsed := time.Since(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(o.Grace)
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	stop.Store(true)
	cancel()
	<-done
	r := &Result{Elapsed: min(elapsed, o.Duration)}
	r.Lag.Merge(&lag)
	for _, s := range states {
		r.Classes = append(r.Classes, s.result())
	}
	return r, ctx.Err()
}

// ServerTimingDur finds metric name in Server-Timing header values
// ("queue;dur=0.42, upstream;dur=1.3", durations in milliseconds, as in the
// W3C Server Timing spec) and returns its dur.
func ServerTimingDur(values []string, name string) (time.Duration, bool) {
	for _, v := range values {
		for m := range strings.SplitSeq(v, ",") {
			parts := strings.Split(m, ";")
			if strings.TrimSpace(parts[0]) != name {
				continue
			}
			for _, p := range parts[1:] {
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if !ok || k != "dur" {
					continue
				}
				f, err := strconv.ParseFloat(strings.Trim(val, `"`), 64)
				if err != nil || f < 0 {
					return 0, false
				}
				return time.Duration(f * float64(time.Millisecond)), true
			}
		}
	}
	return 0, false
}
