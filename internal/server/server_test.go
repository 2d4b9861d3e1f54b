package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyd/proxyd/internal/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logBuffer collects a server's log output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fileLoader is what cmd/proxyd gives Deps.Load: the file read again and
// config.Load, listening on free loopback ports. sum is the SHA-256 of the
// file as it is now.
func fileLoader(t *testing.T, path string) (load func() (config.Config, error), sum []byte) {
	t.Helper()
	load = func() (config.Config, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return config.Config{}, err
		}
		return config.Load(config.Sources{File: path, Data: data, Env: []string{"PROXYD_LISTEN=127.0.0.1:0", "PROXYD_ADMIN_LISTEN=127.0.0.1:0"}})
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return load, s[:]
}

// waitFor polls cond until it reports done and fails the test if that takes
// longer than within, naming what it waited for and the state cond last saw.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (done bool, seen any)) {
	t.Helper()
	var seen any
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); <-tick.C {
		var done bool
		if done, seen = cond(); done {
			return
		}
	}
	t.Fatalf("%s not reached within %v; last saw %+v", what, within, seen)
}

// An edit made after the file was loaded but before the watch began is
// applied: the watcher starts from the loaded bytes, not from the file as
// it finds it.
func TestConfigWatchStartsFromLoadedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, path, "limits:\n  rate: 5\n")
	load, sum := fileLoader(t, path)
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "limits:\n  rate: 7\n") // the edit in between
	var logs logBuffer
	a, err := New(cfg, Deps{LogOutput: &logs, Load: load, ConfigFile: path, ConfigSum: sum})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, 2*time.Second, "rate 7", func() (bool, any) {
		l, _ := a.Limits()
		return l.Rate == 7, l.Rate
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// priority.reserve reaches the dispatcher at start and on every reload.
func TestReserveAppliedAtStartAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, path, "priority:\n  reserve: 3\n")
	load, sum := fileLoader(t, path)
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	a, err := New(cfg, Deps{LogOutput: &logs, Load: load, ConfigFile: path, ConfigSum: sum})
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Stats().Reserve; r != 3 {
		t.Fatalf("reserve at start = %d, want 3", r)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	writeFile(t, path, "priority:\n  reserve: 0\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "reserve 0 after the reload", func() (bool, any) {
		r := a.Stats().Reserve
		return r == 0, r
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// New's errors tell a configuration at fault (*ConfigError: the command
// exits 2) from a failure to serve (an address in use: exit 1).
func TestNewErrors(t *testing.T) {
	base := config.Default()
	base.Listen, base.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"

	bad := base
	bad.Auth.Htpasswd = filepath.Join(t.TempDir(), "missing.htpasswd")
	_, err := New(bad, Deps{})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "missing.htpasswd") {
		t.Errorf("New with a missing auth.htpasswd: %v, want a *ConfigError naming the file", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inUse := base
	inUse.Listen = ln.Addr().String()
	_, err = New(inUse, Deps{})
	if err == nil || errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "listen: ") {
		t.Errorf("New on an address in use: %v, want a listen error that is not a *ConfigError", err)
	}
}

// A reload whose configuration does not load changes nothing and says so;
// Run ends with its context and the drain, and a reload after it is
// ignored.
func TestReloadFailureKeepsConfiguration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, path, "limits:\n  rate: 5\n")
	load, _ := fileLoader(t, path)
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.ShutdownTimeout = time.Second
	var logs logBuffer
	s, err := New(cfg, Deps{LogOutput: &logs, Load: load})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	writeFile(t, path, "limits:\n  rate: -1\n")
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "limits.rate: must be >= 0, got -1") {
		t.Errorf("Reload of an invalid file: %v, want the key and the reason", err)
	}
	if l, _ := s.Limits(); l.Rate != 5 {
		t.Errorf("rate after a failed reload = %v, want 5", l.Rate)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	writeFile(t, path, "limits:\n  rate: 9\n")
	if err := s.Reload(); err != nil {
		t.Errorf("Reload after the drain: %v, want it ignored", err)
	}
	if l, _ := s.Limits(); l.Rate != 5 {
		t.Errorf("rate after a reload during the drain = %v, want 5", l.Rate)
	}
	for _, msg := range []string{`"reload failed; keeping the current configuration"`, `"stopped"`} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("log lacks %s:\n%s", msg, logs.String())
		}
	}
}
