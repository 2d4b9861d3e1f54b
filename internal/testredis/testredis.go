// Package testredis runs real Redis servers for tests, on free loopback
// ports, with nothing saved to disk: one redis-server (Start), with TLS
// (StartTLS, tls.go), a master with a replica and three sentinels
// (StartSentinels, sentinel.go) and a Redis Cluster of three masters
// (StartCluster, cluster.go). Every process ends with the test.
// LaunchSentinels starts the Sentinel set outside a test, for
// cmd/proxybench's failover row; its caller stops it.
package testredis

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server (or redis-sentinel) process; Kill and
// Restart it to test a store outage (Restart keeps the port, and starts
// empty).
type Server struct {
	t    testing.TB // nil when launched outside a test (LaunchSentinels)
	bin  string
	port int
	args func(port int) []string // the command line after the program
	dir  string                  // working directory: a replica's full sync writes dump.rdb there
	tls  *tls.Config             // for the readiness ping and Client; nil: plain TCP
	mu   sync.Mutex
	cmd  *exec.Cmd
	rdb  *redis.Client
	// answered is when the last start's first PING was answered.
	answered time.Time

	// prepare, if not nil, sees each command before it starts.
	prepare func(*exec.Cmd)
}

// Start runs redis-server until the test ends; it skips the test, naming
// the program, when redis-server is not installed.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return start(t, lookPath(t, "redis-server"), nil, func(port int) []string {
		return append(plainArgs(port), extra...)
	})
}

// lookPath finds a program or skips the test, naming it.
func lookPath(t testing.TB, prog string) string {
	t.Helper()
	bin, err := exec.LookPath(prog)
	if err != nil {
		pkg := prog
		if prog == "redis-cli" {
			pkg = "redis-tools"
		}
		t.Skipf("%s not installed (Debian: apt-get install %s); .ci/run installs it", prog, pkg)
	}
	return bin
}

// plainArgs is an in-memory redis-server on port.
func plainArgs(port int) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--loglevel", "warning"}
}

// FreePort returns a loopback port nothing listens on (a listener's,
// closed).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func start(t testing.TB, bin string, tc *tls.Config, args func(port int) []string) *Server {
	t.Helper()
	s, err := launch(bin, t.TempDir(), tc, nil, args)
	if err != nil {
		t.Fatal(err)
	}
	s.t = t
	t.Cleanup(s.close)
	return s
}

// launch runs bin on a free port, working in dir, outside any test:
// the caller stops it with close. prepare, if not nil, sees each command
// before it starts.
func launch(bin, dir string, tc *tls.Config, prepare func(*exec.Cmd), args func(port int) []string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, port: port, args: args, tls: tc, dir: dir, prepare: prepare}
	if err := s.run(); err != nil {
		return nil, err
	}
	return s, nil
}

// close stops the server and its client.
func (s *Server) close() {
	s.Kill()
	s.mu.Lock()
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	s.mu.Unlock()
}

// Addr is host:port; URL the redis:// URL of database 0.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
func (s *Server) URL() string  { return "redis://" + s.Addr() + "/0" }

// Port is the server's port.
func (s *Server) Port() int { return s.port }

func (s *Server) start() {
	s.t.Helper()
	if err := s.run(); err != nil {
		s.t.Fatal(err)
	}
}

// run starts the process and waits until it answers PING.
func (s *Server) run() error {
	cmd := exec.Command(s.bin, s.args(s.port)...)
	cmd.Dir = s.dir
	if s.prepare != nil {
		s.prepare(cmd)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", s.bin, err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	// Every millisecond: Answered tells when the server began to answer.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for s.ping() != nil {
		if time.Now().After(deadline) {
			err := s.ping()
			s.Kill()
			return fmt.Errorf("%s on %s did not answer PING within 10 s (%v); its output:\n%s", s.bin, s.Addr(), err, out.String())
		}
		<-tick.C
	}
	s.mu.Lock()
	s.answered = time.Now()
	s.mu.Unlock()
	return nil
}

// Answered is when the server last began to answer PING (polled every
// millisecond from its start).
func (s *Server) Answered() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answered
}

func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return err
	}
	if s.tls != nil {
		cfg := s.tls.Clone()
		cfg.ServerName = "127.0.0.1"
		tc := tls.Client(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return err
		}
		c = tc
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

// Kill stops the server at once (SIGKILL) and waits for it.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart starts the server again on the same port (empty). Only for a
// test's servers (not LaunchSentinels').
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Do runs one command on the server (as the default user) and returns
// its reply.
func (s *Server) Do(args ...any) (any, error) {
	s.mu.Lock()
	if s.rdb == nil {
		s.rdb = redis.NewClient(&redis.Options{Addr: s.Addr(), TLSConfig: s.tls, MaxRetries: -1, DisableIdentity: true,
			DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, PoolSize: 2})
	}
	rdb := s.rdb
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rdb.Do(ctx, args...).Result()
}

// MustDo is Do that fails the test on an error. Only for a test's
// servers (not LaunchSentinels').
func (s *Server) MustDo(args ...any) any {
	s.t.Helper()
	v, err := s.Do(args...)
	if err != nil {
		s.t.Fatalf("%s %v: %v", s.Addr(), args, err)
	}
	return v
}

// waitUntil polls cond every 20 ms for up to d; false when it never held.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}
