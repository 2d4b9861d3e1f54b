package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/testredis"
)

// observed is a Store whose log is kept.
func observed(t *testing.T, rc config.Redis) (*Store, *fakeDisp, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	d := &fakeDisp{}
	d.setDemand(3, 5)
	s, err := New(rc, d, Hooks{}, zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Start(100, 10)
	t.Cleanup(s.Close)
	return s, d, logs
}

// downLogs are the outage entries of logs ("unreachable", at error level).
func downLogs(logs *observer.ObservedLogs) []observer.LoggedEntry {
	return logs.FilterMessageSnippet("shared limiter store unreachable").All()
}

// waitErrors waits until the store counted n failed calls.
func waitErrors(t *testing.T, s *Store, n float64) {
	t.Helper()
	eventually(t, 5*time.Second, "failed calls counted", func() bool { return testutil.ToFloat64(s.errs) >= n })
}

// TLS with a private CA (redis.tls.ca_cert) and a client certificate
// (redis.tls.cert, redis.tls.key) against redis-server --tls-port with
// tls-auth-clients yes: the store works. With another CA the store stays
// down, logged once, the error naming redis.tls.ca_cert; without a client
// certificate the error names redis.tls.cert.
func TestTLSPrivateCA(t *testing.T) {
	ca := testredis.NewCA(t, "test-ca")
	r := testredis.StartTLS(t, ca, "yes")
	cert, key := ca.Issue("proxyd")
	rc := haConfig("tls")
	rc.URL = r.TLSURL()
	rc.TLS = config.RedisTLS{CACert: ca.CAFile, Cert: cert, Key: key}
	s, d, _ := observed(t, rc)
	eventually(t, 5*time.Second, "up over TLS", func() bool { return s.Status().Up && d.total() > 0 })

	t.Run("wrong CA", func(t *testing.T) {
		other := testredis.NewCA(t, "other-ca")
		rc := rc
		rc.TLS.CACert = other.CAFile
		s, _, logs := observed(t, rc)
		waitErrors(t, s, 20)
		if s.Status().Up {
			t.Fatal("up with a CA that did not sign the server's certificate")
		}
		down := downLogs(logs)
		if len(down) != 1 {
			t.Fatalf("outage logged %d times over 20 failed calls, want once", len(down))
		}
		if msg := down[0].ContextMap()["error"]; !strings.Contains(msg.(string), "redis.tls.ca_cert ("+other.CAFile+")") {
			t.Fatalf("the error does not name redis.tls.ca_cert: %v", msg)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		rc := rc
		rc.TLS.Cert, rc.TLS.Key = "", ""
		s, _, logs := observed(t, rc)
		waitErrors(t, s, 5)
		down := downLogs(logs)
		if len(down) != 1 || !strings.Contains(down[0].ContextMap()["error"].(string), "redis.tls.cert") {
			t.Fatalf("want one outage entry naming redis.tls.cert, got %v", down)
		}
	})
}

// aclCommands are the commands proxyd needs (docs/shared-quota.md,
// "ACL"), on keys ~{prefix}:*.
var aclCommands = []string{"+evalsha", "+eval", "+time", "+exists", "+hget", "+hset", "+hsetnx", "+hincrby", "+hgetall", "+hdel", "+pexpire"}

// An ACL user with only the documented commands, on the documented key
// pattern, runs the store (redis.username, redis.password); a user
// without them fails with an error that says what to check; the password
// is never logged.
func TestACLLeastPrivilege(t *testing.T) {
	r := testredis.Start(t)
	rules := append([]any{"ACL", "SETUSER", "proxyd", "on", ">pw-secret-1", "resetkeys", "~{acl}:*", "-@all"}, toAny(aclCommands)...)
	r.MustDo(rules...)
	rc := haConfig("acl")
	rc.URL = "redis://" + r.Addr() + "/0"
	rc.Username, rc.Password = "proxyd", "pw-secret-1"
	s, d, logs := observed(t, rc)
	eventually(t, 5*time.Second, "up as the least-privileged user", func() bool { return s.Status().Up && d.total() > 0 })
	if err := s.SetLimits(t.Context(), 50, 5); err != nil {
		t.Fatalf("SetLimits as the least-privileged user: %v", err)
	}
	if n := len(downLogs(logs)); n != 0 {
		t.Fatalf("the least-privileged user failed: %v", downLogs(logs)[0].ContextMap())
	}

	t.Run("shared concurrency", func(t *testing.T) {
		// The shared caps' part of the lease script (slots.go) needs no
		// other command or key.
		d := dispatch.New(dispatch.Config{Limits: dispatch.Limits{Concurrency: 2, SharedConcurrency: true, QueueSize: 10, MaxWait: time.Minute, MaxTunnels: 1}}, dispatch.Deps{})
		defer d.Close()
		s, err := New(rc, d, Hooks{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Start(0, 1)
		defer s.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		p, err := d.Acquire(ctx, dispatch.Request{Urgency: 3})
		if err != nil {
			t.Fatal(err)
		}
		p.Release()
		if !s.Status().Up {
			t.Fatal("the store is down for the least-privileged user with shared_concurrency")
		}
		if v, err := r.Do("HGET", "{acl}:slots:global", "born"); err != nil || v == nil {
			t.Fatalf("no slots hash written by the least-privileged user: %v %v", v, err)
		}
	})
	t.Run("a command missing", func(t *testing.T) {
		r.MustDo("ACL", "SETUSER", "weak", "on", ">pw-secret-2", "~{acl}:*", "-@all", "+evalsha", "+eval", "+hello", "+ping")
		rc := rc
		rc.URL = "redis://weak:pw-secret-2@" + r.Addr() + "/0"
		rc.Username, rc.Password = "", ""
		s, _, logs := observed(t, rc)
		waitErrors(t, s, 3)
		down := downLogs(logs)
		if len(down) != 1 {
			t.Fatalf("outage logged %d times, want once", len(down))
		}
		msg := down[0].ContextMap()["error"].(string)
		if !strings.Contains(msg, "lacks a command or key proxyd needs") || !strings.Contains(msg, "can't run this command") {
			t.Fatalf("unclear error for a user without the commands: %s", msg)
		}
		t.Logf("error: %s", msg)
	})
	t.Run("wrong password", func(t *testing.T) {
		rc := rc
		rc.Password = "pw-secret-wrong"
		s, _, logs := observed(t, rc)
		waitErrors(t, s, 3)
		down := downLogs(logs)
		if len(down) != 1 || !strings.Contains(down[0].ContextMap()["error"].(string), "redis.password") {
			t.Fatalf("want one entry naming redis.password, got %v", down)
		}
	})
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "pw-secret") || strings.Contains(e.Message, "pw-secret") {
				t.Fatalf("a password in the log: %s %v", e.Message, e.ContextMap())
			}
		}
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// On Redis Cluster the client also reads the slot map: CLUSTER SLOTS
// besides aclCommands (COMMAND, for key positions, is optional).
func TestACLCluster(t *testing.T) {
	c := testredis.StartCluster(t)
	for _, n := range c.Nodes {
		n.MustDo(append([]any{"ACL", "SETUSER", "proxyd", "on", ">pw", "resetkeys", "~{acl}:*", "-@all", "+cluster|slots"}, toAny(aclCommands)...)...)
	}
	rc := haConfig("acl")
	rc.Cluster.Addrs = c.Addrs()
	rc.Username, rc.Password = "proxyd", "pw"
	s, d, logs := observed(t, rc)
	eventually(t, 5*time.Second, "up on the cluster as the least-privileged user", func() bool { return s.Status().Up && d.total() > 0 })
	if n := len(downLogs(logs)); n != 0 {
		t.Fatalf("the least-privileged user failed on the cluster: %v", downLogs(logs)[0].ContextMap())
	}
}
