//go:build linux

package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// stuckAddr returns an address whose connects hang: a socket listening with
// a backlog of 0 that never accepts, its queue filled, drops further SYNs.
// It skips the test when the kernel does not behave so (a full accept
// queue that makes connect hang is Linux behaviour, not a contract).
func stuckAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr // the queue is full
			}
			t.Skipf("kernel behaviour absent: filling the accept queue failed (%v); TestClassify covers the classification", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("kernel behaviour absent: a full accept queue does not make connect hang here; TestClassify covers the classification")
	return ""
}

func TestConnectTimeout(t *testing.T) {
	addr := stuckAddr(t)

	t.Run("dial timeout, RoundTrip", func(t *testing.T) {
		f := newForwarder(t, Config{DialTimeout: 200 * time.Millisecond})
		_, err := f.RoundTrip(get(t, context.Background(), "http://"+addr+"/"), time.Minute)
		wantClass(t, err, ErrConnectTimeout)
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%q does not wrap the dial timeout", err)
		}
	})
	t.Run("header timeout before a connection", func(t *testing.T) {
		f := newForwarder(t, Config{DialTimeout: time.Minute})
		start := time.Now()
		_, err := f.RoundTrip(get(t, context.Background(), "http://"+addr+"/"), 200*time.Millisecond)
		wantClass(t, err, ErrConnectTimeout)
		if errors.Is(err, context.Canceled) {
			t.Errorf("%q looks like a cancellation", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("dial timeout, Dial", func(t *testing.T) {
		f := newForwarder(t, Config{DialTimeout: 200 * time.Millisecond})
		c, err := f.Dial(context.Background(), addr)
		if c != nil {
			c.Close()
		}
		wantClass(t, err, ErrConnectTimeout)
	})
}
