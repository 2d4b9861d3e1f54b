package testredis

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of three masters without replicas, created
// with redis-cli --cluster create.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts three cluster-enabled redis-servers, joins them
// with redis-cli --cluster create and waits until every node says
// cluster_state:ok. It skips the test, naming the program, when
// redis-server or redis-cli is not installed.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	srv := lookPath(t, "redis-server")
	cli := lookPath(t, "redis-cli")
	dir := t.TempDir()
	c := &Cluster{t: t}
	for range 3 {
		c.Nodes = append(c.Nodes, start(t, srv, nil, func(port int) []string {
			return append(plainArgs(port), "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
				"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"), "--dir", dir)
		}))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, n := range c.Nodes {
		if !waitUntil(10*time.Second, func() bool {
			v, err := n.Do("CLUSTER", "INFO")
			return err == nil && strings.Contains(fmt.Sprint(v), "cluster_state:ok")
		}) {
			t.Fatalf("cluster node %s not ok within 10 s", n.Addr())
		}
	}
	return c
}

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr())
	}
	return a
}

// KeySlot is the slot of key (CLUSTER KEYSLOT).
func (c *Cluster) KeySlot(key string) int {
	c.t.Helper()
	n, _ := c.Nodes[0].MustDo("CLUSTER", "KEYSLOT", key).(int64)
	return int(n)
}

// Owner is the node that serves slot, as node 0 sees it.
func (c *Cluster) Owner(slot int) *Server {
	c.t.Helper()
	v := c.Nodes[0].MustDo("CLUSTER", "SLOTS")
	for _, r := range v.([]any) {
		r := r.([]any)
		lo, hi := r[0].(int64), r[1].(int64)
		if int64(slot) >= lo && int64(slot) <= hi {
			port := r[2].([]any)[1].(int64)
			for _, n := range c.Nodes {
				if int64(n.Port()) == port {
					return n
				}
			}
		}
	}
	c.t.Fatalf("no node serves slot %d", slot)
	return nil
}

// ID is a node's cluster ID.
func (s *Server) ID() string {
	s.t.Helper()
	return fmt.Sprint(s.MustDo("CLUSTER", "MYID"))
}

// Reshard moves slot from one node to another the way
// redis-cli --cluster reshard moves each slot (it has no option to name
// one slot): IMPORTING on the target, MIGRATING on the source, MIGRATE
// of the slot's keys, then SETSLOT NODE on every node.
func (c *Cluster) Reshard(slot int, from, to *Server) {
	c.t.Helper()
	fromID, toID := from.ID(), to.ID()
	to.MustDo("CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	from.MustDo("CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	for {
		keys, _ := from.MustDo("CLUSTER", "GETKEYSINSLOT", slot, 10).([]any)
		if len(keys) == 0 {
			break
		}
		// One key at a time: the slot is half moved for a while, where
		// multi-key calls get TRYAGAIN and calls on moved keys ASK.
		from.MustDo("MIGRATE", "127.0.0.1", to.Port(), "", 0, 5000, "KEYS", keys[0])
	}
	for _, n := range []*Server{to, from} {
		n.MustDo("CLUSTER", "SETSLOT", slot, "NODE", toID)
	}
	for _, n := range c.Nodes {
		if n != to && n != from {
			n.MustDo("CLUSTER", "SETSLOT", slot, "NODE", toID)
		}
	}
}
