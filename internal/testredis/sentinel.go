package testredis

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name the sentinels of StartSentinels
// monitor.
const SentinelMaster = "proxyd-test"

// Sentinels is a master, its replica and three sentinels (quorum 2) that
// see a master down after SentinelOptions.DownAfter (200 ms in a test).
type Sentinels struct {
	Master    *Server
	Replica   *Server
	Sentinels []*Server
}

// StartSentinels starts the set and waits until every sentinel knows the
// replica and the two other sentinels (so that a failover can happen).
// It skips the test, naming the program, when redis-server or
// redis-sentinel is not installed. Everything stops with the test.
func StartSentinels(t testing.TB) *Sentinels {
	t.Helper()
	set, err := LaunchSentinels(SentinelOptions{Server: lookPath(t, "redis-server"), Sentinel: lookPath(t, "redis-sentinel"), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	return set
}

// SentinelOptions shape LaunchSentinels.
type SentinelOptions struct {
	// Server and Sentinel are the paths of redis-server and
	// redis-sentinel (required).
	Server, Sentinel string
	// Dir holds the processes' working directories and the sentinels'
	// files (required; the caller removes it).
	Dir string
	// DownAfter is the sentinels' down-after-milliseconds: how long the
	// master goes unanswered before a sentinel sees it down. Zero: 200 ms.
	DownAfter time.Duration
	// Prepare, if not nil, sees each command before it starts (a
	// harness sets its process attributes there).
	Prepare func(*exec.Cmd)
}

// LaunchSentinels is StartSentinels outside a test (cmd/proxybench): it
// returns an error instead of failing a test, having stopped what it
// started, and the caller stops the set with Close. Restart and MustDo
// are not for its servers.
func LaunchSentinels(o SentinelOptions) (set *Sentinels, err error) {
	if o.DownAfter == 0 {
		o.DownAfter = 200 * time.Millisecond
	}
	set = &Sentinels{}
	defer func() {
		if err != nil {
			set.Close()
			set = nil
		}
	}()
	sub := func(name string) (string, error) {
		d := filepath.Join(o.Dir, name)
		return d, os.MkdirAll(d, 0o755)
	}
	dir, err := sub("master")
	if err != nil {
		return set, err
	}
	if set.Master, err = launch(o.Server, dir, nil, o.Prepare, plainArgs); err != nil {
		return set, err
	}
	if dir, err = sub("replica"); err != nil {
		return set, err
	}
	if set.Replica, err = launch(o.Server, dir, nil, o.Prepare, func(port int) []string {
		return append(plainArgs(port), "--replicaof", "127.0.0.1", strconv.Itoa(set.Master.Port()))
	}); err != nil {
		return set, err
	}
	if !waitUntil(10*time.Second, func() bool {
		info, err := set.Replica.Do("INFO", "replication")
		return err == nil && strings.Contains(fmt.Sprint(info), "master_link_status:up")
	}) {
		return set, errors.New("the replica did not sync with the master within 10 s")
	}
	for i := range 3 {
		if dir, err = sub(fmt.Sprintf("sentinel-%d", i)); err != nil {
			return set, err
		}
		conf := filepath.Join(dir, "sentinel.conf")
		var werr error
		s, err := launch(o.Sentinel, dir, nil, o.Prepare, func(port int) []string {
			// Sentinel rewrites its file: write it anew at each start.
			data := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\nloglevel warning\n"+
				"sentinel monitor %s 127.0.0.1 %d 2\n"+
				"sentinel down-after-milliseconds %s %d\n"+
				"sentinel failover-timeout %s 2000\n"+
				"sentinel parallel-syncs %s 1\n",
				port, SentinelMaster, set.Master.Port(), SentinelMaster, o.DownAfter.Milliseconds(), SentinelMaster, SentinelMaster)
			werr = os.WriteFile(conf, []byte(data), 0o600)
			return []string{conf}
		})
		if err = cmp.Or(werr, err); err != nil {
			if s != nil {
				s.close()
			}
			return set, err
		}
		set.Sentinels = append(set.Sentinels, s)
	}
	for _, s := range set.Sentinels {
		if !waitUntil(15*time.Second, func() bool {
			m, err := s.Do("SENTINEL", "MASTER", SentinelMaster)
			if err != nil {
				return false
			}
			f := fields(m)
			return f["num-slaves"] == "1" && f["num-other-sentinels"] == "2"
		}) {
			m, err := s.Do("SENTINEL", "MASTER", SentinelMaster)
			return set, fmt.Errorf("sentinel %s does not see the replica and the two other sentinels within 15 s: %v %v", s.Addr(), m, err)
		}
	}
	return set, nil
}

// Close stops every process of the set (SIGKILL) and closes the clients.
func (s *Sentinels) Close() {
	for _, x := range append([]*Server{s.Master, s.Replica}, s.Sentinels...) {
		if x != nil {
			x.close()
		}
	}
}

// Addrs are the sentinels' host:port.
func (s *Sentinels) Addrs() []string {
	var a []string
	for _, x := range s.Sentinels {
		a = append(a, x.Addr())
	}
	return a
}

// MasterAddr is the master's host:port as sentinel i reports it.
func (s *Sentinels) MasterAddr(i int) (string, error) {
	v, err := s.Sentinels[i].Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
	if err != nil {
		return "", err
	}
	l, ok := v.([]any)
	if !ok || len(l) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %v", v)
	}
	return net.JoinHostPort(fmt.Sprint(l[0]), fmt.Sprint(l[1])), nil
}

// fields reads a reply that is a map or a flat list of name, value.
func fields(v any) map[string]string {
	out := map[string]string{}
	switch m := v.(type) {
	case map[any]any:
		for k, x := range m {
			out[fmt.Sprint(k)] = fmt.Sprint(x)
		}
	case []any:
		for i := 0; i+1 < len(m); i += 2 {
			out[fmt.Sprint(m[i])] = fmt.Sprint(m[i+1])
		}
	}
	return out
}
