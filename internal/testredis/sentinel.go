package testredis

import (
	"fmt"
	"net"
	"os"
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
// see a master down after 200 ms.
type Sentinels struct {
	t         testing.TB
	Master    *Server
	Replica   *Server
	Sentinels []*Server
}

// StartSentinels starts the set and waits until every sentinel knows the
// replica and the two other sentinels (so that a failover can happen).
// It skips the test, naming the program, when redis-server or
// redis-sentinel is not installed.
func StartSentinels(t testing.TB) *Sentinels {
	t.Helper()
	srv := lookPath(t, "redis-server")
	sen := lookPath(t, "redis-sentinel")
	master := Start(t)
	replica := start(t, srv, nil, func(port int) []string {
		return append(plainArgs(port), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	})
	if !waitUntil(10*time.Second, func() bool {
		info, err := replica.Do("INFO", "replication")
		return err == nil && strings.Contains(fmt.Sprint(info), "master_link_status:up")
	}) {
		t.Fatal("the replica did not sync with the master within 10 s")
	}
	set := &Sentinels{t: t, Master: master, Replica: replica}
	dir := t.TempDir()
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		set.Sentinels = append(set.Sentinels, start(t, sen, nil, func(port int) []string {
			// Sentinel rewrites its file: write it anew at each start.
			data := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\nloglevel warning\n"+
				"sentinel monitor %s 127.0.0.1 %d 2\n"+
				"sentinel down-after-milliseconds %s 200\n"+
				"sentinel failover-timeout %s 2000\n"+
				"sentinel parallel-syncs %s 1\n",
				port, SentinelMaster, master.Port(), SentinelMaster, SentinelMaster, SentinelMaster)
			if err := os.WriteFile(conf, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{conf}
		}))
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
			t.Fatalf("sentinel %s does not see the replica and the two other sentinels within 15 s: %v %v", s.Addr(), m, err)
		}
	}
	return set
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
