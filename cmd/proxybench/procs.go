package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the harness started. Each child leads its own
// process group (Setpgid), so stopping it signals that group only: the
// child and the workers it forked (nginx), never anything else. Children
// also get SIGKILL if the harness dies (Pdeathsig).
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // valid once done is closed
}

// procs is every child started and not yet stopped, so that an interrupt
// or the harness's own deadline can stop them all.
var procs struct {
	sync.Mutex
	live map[*proc]bool
}

// startProc starts argv with extra environment variables.
func startProc(name string, argv []string, env ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, out: &tailBuffer{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	procs.Lock()
	if procs.live == nil {
		procs.live = make(map[*proc]bool)
	}
	procs.live[p] = true
	procs.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid is the child's process id, also its process group id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child's process group, then SIGKILL after 5s.
func (p *proc) stop() {
	procs.Lock()
	delete(procs.live, p)
	procs.Unlock()
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	// Workers that outlived their leader (none expected) go too.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
}

// stopAll stops every child still running.
func stopAll() {
	procs.Lock()
	live := make([]*proc, 0, len(procs.live))
	for p := range procs.live {
		live = append(live, p)
	}
	procs.Unlock()
	var wg sync.WaitGroup
	for _, p := range live {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// failure describes why a child is not usable, with the end of its output.
func (p *proc) failure(err error) error {
	out := strings.TrimSpace(p.out.String())
	if out != "" {
		return fmt.Errorf("%s: %w\n--- last output of %s ---\n%s", p.name, err, p.name, out)
	}
	return fmt.Errorf("%s: %w", p.name, err)
}

// waitTCP waits until addr accepts connections, the child exits, or
// timeout passes.
func (p *proc) waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return p.failure(fmt.Errorf("exited before listening on %s: %v", addr, p.err))
		}
		if time.Now().After(deadline) {
			p.stop()
			return p.failure(fmt.Errorf("not listening on %s after %v", addr, timeout))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHTTP waits until GET url answers 200.
func (p *proc) waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer c.CloseIdleConnections()
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if p.exited() {
			return p.failure(fmt.Errorf("exited before %s answered: %v", url, p.err))
		}
		if time.Now().After(deadline) {
			p.stop()
			return p.failure(fmt.Errorf("%s not ready after %v: %v", url, timeout, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// freePort asks the kernel for a free port on 127.0.0.1. The port is free
// when this returns; a child told to listen on it takes it a moment later.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// settle lets the host calm down between runs: the harness collects its
// garbage, and sockets closed by the previous run finish closing.
func settle(ctx context.Context) error {
	runtime.GC()
	return sleepCtx(ctx, 2*time.Second)
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
