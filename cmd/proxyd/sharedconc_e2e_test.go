package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/testredis"
)

// Shared concurrency caps end to end (docs/shared-quota.md, "Shared
// concurrency caps"): three proxyd replicas, limits.concurrency: 10 with
// limits.shared_concurrency, a slow upstream that counts what it has in
// flight.
//
//  1. Each replica is offered 20 concurrent clients for 3 s, the upstream
//     holding each request 50 ms: never more than 10 in flight at the
//     upstream, and the fleet uses the cap.
//  2. The third replica, a separate process, takes all 10 slots with
//     requests the upstream holds, and is SIGKILLed. Its slots stay
//     leased to it in the store until redis.slot_lease (2 s here) after its
//     last call, then serve the two others: none of their requests reaches
//     the upstream before, all do within the lease time (plus one call).
func TestSharedConcurrencyE2E(t *testing.T) {
	r := testredis.Start(t)
	up := newSlowUpstream(t, 50*time.Millisecond)
	const capacity, lease = 10, 2 * time.Second
	cfg := writeConfig(t, fmt.Sprintf(`limits:
  store: redis
  rate: 0
  concurrency: %d
  shared_concurrency: true
  max_wait: 10s
  queue_size: 1000
redis:
  url: %s
  key_prefix: e2econc
  slot_lease: %v
`, capacity, r.URL(), lease))
	ps := []*proc{startProxyd(t, "--config", cfg), startProxyd(t, "--config", cfg)}
	killable := startProxydProcess(t, "--config", cfg)
	ps = append(ps, killable.proc)
	for _, p := range ps {
		waitStore(t, p, true)
	}

	// 1. The cap across the fleet.
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	start := time.Now()
	for i, p := range ps {
		c := p.client()
		defer c.CloseIdleConnections()
		for range 20 {
			wg.Go(func() {
				for time.Since(start) < 3*time.Second {
					s := upGet(c, up.srv.URL+"/", strconv.Itoa(i), false)
					mu.Lock()
					statuses[s]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	took := time.Since(start)
	peak, served := up.stats()
	t.Logf("3 replicas, 60 clients: peak %d in flight at the upstream (fleet-wide cap %d), %d served in %v (%.0f/s; the cap allows %.0f/s); answers %v",
		peak, capacity, served, took.Round(time.Millisecond), float64(served)/took.Seconds(), float64(capacity)/up.hold.Seconds(), statuses)
	if peak > capacity {
		t.Errorf("%d requests in flight at the upstream, above the fleet-wide cap %d", peak, capacity)
	}
	if peak < capacity-1 {
		t.Errorf("at most %d in flight at the upstream: the fleet did not use its cap of %d", peak, capacity)
	}
	if statuses[200] == 0 || len(statuses) != 1 {
		t.Errorf("answers %v, want 200 only", statuses)
	}

	// 2. A replica SIGKILLed while it holds every slot.
	var held sync.WaitGroup
	for range capacity {
		held.Go(func() { upGet(killable.client(), up.srv.URL+"/", "dead", true) })
	}
	waitFor(t, 5*time.Second, "the killable replica holding every slot", func() (bool, any) {
		n := up.inFlight("dead")
		return n == capacity, n
	})
	if err := killable.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = killable.cmd.Wait()
	held.Wait() // its clients' requests fail with it
	waitFor(t, 5*time.Second, "the upstream seeing the dead replica's requests end", func() (bool, any) {
		n := up.inFlight("dead")
		return n == 0, n
	})
	for i, p := range ps[:2] {
		for range capacity / 2 {
			held.Go(func() {
				if s := upGet(p.client(), up.srv.URL+"/", "survivor"+strconv.Itoa(i), true); s != 200 {
					t.Errorf("a request through a surviving replica: %d", s)
				}
			})
		}
	}
	waitFor(t, lease+5*time.Second, "the survivors using every slot", func() (bool, any) {
		n := up.inFlight("survivor0") + up.inFlight("survivor1")
		return n == capacity, n
	})
	first, last := up.arrivals("survivor", killed)
	t.Logf("after the SIGKILL: the survivors' first request reached the upstream %v later, the %dth %v later (redis.slot_lease %v)",
		first.Round(time.Millisecond), capacity, last.Round(time.Millisecond), lease)
	if first < lease-300*time.Millisecond {
		t.Errorf("a survivor's request reached the upstream %v after the kill, before the dead replica's lease (%v) ended: its slots were not held", first, lease)
	}
	if last > lease+time.Second {
		t.Errorf("the dead replica's slots came back only %v after the kill (lease %v)", last, lease)
	}
	up.releaseAll()
	held.Wait()
	if peak, _ := up.stats(); peak > capacity {
		t.Errorf("%d in flight at the upstream at some point, above the cap %d", peak, capacity)
	}
}

// slowUpstream holds each request hold (or, with X-Hold: release, until
// releaseAll), counting what it has in flight, in all and by the
// X-Replica header, and when each request arrived.
type slowUpstream struct {
	srv     *httptest.Server
	hold    time.Duration
	release chan struct{}
	once    sync.Once

	mu      sync.Mutex
	now     int
	peak    int
	served  int
	by      map[string]int
	arrived map[string][]time.Time
}

func newSlowUpstream(t *testing.T, hold time.Duration) *slowUpstream {
	u := &slowUpstream{hold: hold, release: make(chan struct{}), by: map[string]int{}, arrived: map[string][]time.Time{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := r.Header.Get("X-Replica")
		u.mu.Lock()
		u.now++
		u.peak = max(u.peak, u.now)
		u.by[who]++
		u.arrived[who] = append(u.arrived[who], time.Now())
		u.mu.Unlock()
		defer func() {
			u.mu.Lock()
			u.now--
			u.by[who]--
			u.served++
			u.mu.Unlock()
		}()
		wait := time.After(hold)
		if r.Header.Get("X-Hold") == "release" {
			wait = nil
		}
		select {
		case <-wait:
		case <-u.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		u.releaseAll()
		u.srv.Close()
	})
	return u
}

func (u *slowUpstream) releaseAll() { u.once.Do(func() { close(u.release) }) }

func (u *slowUpstream) stats() (peak, served int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.peak, u.served
}

func (u *slowUpstream) inFlight(who string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.by[who]
}

// arrivals is how long after since the first and the last request whose
// X-Replica starts with prefix arrived.
func (u *slowUpstream) arrivals(prefix string, since time.Time) (first, last time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	first = time.Duration(1<<63 - 1)
	for who, at := range u.arrived {
		if !strings.HasPrefix(who, prefix) {
			continue
		}
		for _, a := range at {
			first, last = min(first, a.Sub(since)), max(last, a.Sub(since))
		}
	}
	return first, last
}

// upGet sends one GET through c marked with who (X-Replica), held by the
// upstream until releaseAll when hold, and returns its status (0 when it
// failed).
func upGet(c *http.Client, u, who string, hold bool) int {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("X-Replica", who)
	if hold {
		req.Header.Set("X-Hold", "release")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// killableProxyd is proxyd in a process of its own (this test binary,
// run by TestMain: runProxydProcess), so that a test can SIGKILL it.
type killableProxyd struct {
	*proc
	cmd *exec.Cmd
}

// helperEnv names the variables that make this test binary run proxyd.
const (
	helperEnv     = "SHAREDCONC_PROXYD_PROCESS"
	helperArgsEnv = "SHAREDCONC_PROXYD_ARGS"
)

// startProxydProcess runs proxyd with args in a process of its own,
// allowed to reach loopback upstreams; it is killed when the test ends.
func startProxydProcess(t *testing.T, args ...string) *killableProxyd {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperArgsEnv+"="+strings.Join(args, "\n"))
	p := &proc{log: &logBuffer{}, stdout: &logBuffer{}}
	cmd.Stderr, cmd.Stdout = p.log, p.stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := p.log.waitLine(t, "proxyd serving")
	p.proxy, p.admin = line["listen"].(string), line["admin_listen"].(string)
	return &killableProxyd{proc: p, cmd: cmd}
}

// runProxydProcess serves proxyd instead of running the tests when
// startProxydProcess started this binary (TestMain asks it first); it
// reports whether it did (it exits then, so it never returns true).
func runProxydProcess() bool {
	if os.Getenv(helperEnv) != "1" {
		return false
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(strings.Split(os.Getenv(helperArgsEnv), "\n"), loopbackAllow, os.Stdout, os.Stderr, sig))
	return true
}
