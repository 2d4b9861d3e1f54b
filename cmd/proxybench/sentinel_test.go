package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/internal/testredis"
)

func TestOutagesOf(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name    string
		samples []storeSample
		want    []outage
	}{
		{"always up", []storeSample{{at(0), true}, {at(5), true}}, nil},
		{"one outage", []storeSample{{at(0), true}, {at(5), false}, {at(10), false}, {at(15), true}, {at(20), true}},
			[]outage{{at(5), at(15)}}},
		{"two outages", []storeSample{{at(0), false}, {at(5), true}, {at(10), false}, {at(15), true}},
			[]outage{{at(0), at(5)}, {at(10), at(15)}}},
		{"still down at the end", []storeSample{{at(0), true}, {at(5), false}, {at(10), false}},
			[]outage{{down: at(5)}}},
	} {
		got := outagesOf(tc.samples)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if !got[i].down.Equal(tc.want[i].down) || !got[i].up.Equal(tc.want[i].up) {
				t.Errorf("%s: outage %d %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

func TestLostOf(t *testing.T) {
	// 100 arrivals: 60 2xx, 25 max_wait 503s and 5 429s are answers; 4
	// errors, 3 unanswered at the end (hung), 2 502s and 1 never sent
	// are lost.
	c := &loadgen.ClassResult{Sent: 99, Overflow: 1, OK: 60, Errors: 4, Canceled: 3,
		Status: map[int]int64{200: 60, 503: 25, 429: 5, 502: 2}}
	if got := lostOf(c); got != 10 {
		t.Errorf("lost %d, want 10", got)
	}
	c = &loadgen.ClassResult{Sent: 10, OK: 7, Status: map[int]int64{200: 7, 503: 3}}
	if got := lostOf(c); got != 0 {
		t.Errorf("lost %d, want 0", got)
	}
}

func TestFailoverBound(t *testing.T) {
	for _, tc := range []struct {
		rate           float64
		burst, n       int
		w              time.Duration
		wantB, wantLag float64
	}{
		{200, 10, 3, time.Second, 220, 10},
		{200, 10, 3, 100 * time.Millisecond, 40, 10},
		// burst below the replicas: each local burst is at least 1.
		{100, 2, 3, time.Second, 105, 5},
	} {
		b, lag := failoverBound(tc.rate, tc.burst, tc.n, tc.w)
		if b != tc.wantB || lag != tc.wantLag {
			t.Errorf("failoverBound(%g, %d, %d, %v) = %g, %g; want %g, %g", tc.rate, tc.burst, tc.n, tc.w, b, lag, tc.wantB, tc.wantLag)
		}
	}
}

func TestSentinelBins(t *testing.T) {
	have := func(names ...string) func(string) (string, bool) {
		return func(n string) (string, bool) {
			for _, x := range names {
				if x == n {
					return "/usr/bin/" + n, true
				}
			}
			return "", false
		}
	}
	if srv, sen, err := sentinelBins(have("redis-server", "redis-sentinel")); err != nil || srv != "/usr/bin/redis-server" || sen != "/usr/bin/redis-sentinel" {
		t.Errorf("both installed: %q %q %v", srv, sen, err)
	}
	// The row is skipped with a note naming the program.
	_, _, err := sentinelBins(have("redis-server"))
	if !errors.Is(err, errNoSentinel) || !strings.Contains(err.Error(), "redis-sentinel") {
		t.Errorf("no redis-sentinel: %v", err)
	}
	if _, _, err := sentinelBins(have("redis-sentinel")); !errors.Is(err, errNoRedis) {
		t.Errorf("no redis-server: %v", err)
	}
}

// The harness's Sentinel set on real servers: LaunchSentinels with the
// harness's process attributes, then killMaster sees the promotion and
// the sentinels naming the replica, in that order, after the kill.
func TestKillMaster(t *testing.T) {
	srv, sen, err := sentinelBins(findPeer)
	if err != nil {
		// errNoRedis or errNoSentinel: the program that is missing.
		t.Skipf("redis-server and redis-sentinel needed: %v", err)
	}
	set, err := testredis.LaunchSentinels(testredis.SentinelOptions{Server: srv, Sentinel: sen, Dir: t.TempDir(),
		Prepare: func(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} }})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if addr, err := set.MasterAddr(0); err != nil || addr != set.Master.Addr() {
		t.Fatalf("master before the kill: %q %v, want %s", addr, err, set.Master.Addr())
	}
	ft, err := killMaster(context.Background(), set, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("promoted %v after the kill, named by a sentinel %v after that, by all %v after", ft.promoted.Sub(ft.killed), ft.announced.Sub(ft.promoted), ft.allNamed.Sub(ft.promoted))
	if ft.promoted.Before(ft.killed) || ft.announced.Before(ft.promoted) || ft.allNamed.Before(ft.announced) {
		t.Errorf("killed %v, promoted %v, named %v, by all %v: out of order", ft.killed, ft.promoted, ft.announced, ft.allNamed)
	}
	for i := range set.Sentinels {
		if addr, err := set.MasterAddr(i); err != nil || addr != set.Replica.Addr() {
			t.Errorf("sentinel %d names %q (%v), want the replica %s", i, addr, err, set.Replica.Addr())
		}
	}
	if role, err := set.Replica.Do("ROLE"); err != nil {
		t.Error(err)
	} else if l, ok := role.([]any); !ok || len(l) == 0 || l[0] != "master" {
		t.Errorf("the replica's ROLE after the failover: %v", role)
	}
}

func TestSwitchTimes(t *testing.T) {
	out := `redis: 2026/12/06 10:21:03 sentinel.go:123: sentinel: new master="proxyd-test" addr="127.0.0.1:1"
{"level":"error","ts":"2026-12-06T10:21:02.123Z","msg":"shared limiter store unreachable; redis.on_error applies","on_error":"local"}
{"level":"warn","ts":"2026-12-06T10:21:02.200Z","msg":"something else"}
{"level":"error","ts":"2026-12-06T10:21:05.007+0000","msg":"shared limiter store unreachable; redis.on_error applies"}
{"level":"error","ts":"2026-12-06T10:21:0`
	got := switchTimes(out)
	want := []time.Time{time.Date(2026, 12, 6, 10, 21, 2, 123e6, time.UTC), time.Date(2026, 12, 6, 10, 21, 5, 7e6, time.UTC)}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if !got[i].Equal(want[i]) {
			t.Errorf("switch %d at %v, want %v", i, got[i], want[i])
		}
	}
}
