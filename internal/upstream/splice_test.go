package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/testnet"
)

// echoServer echoes each connection, passes the client's half-close on,
// and reports what each connection saw end: "eof" or the error.
func echoServer(t testing.TB) (addr string, ends <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, err := io.Copy(c, c)
				if err == nil {
					c.(*net.TCPConn).CloseWrite()
					ch <- "eof"
					return
				}
				ch <- err.Error()
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), ch
}

// tcpPair returns both ends of a loopback TCP connection: the client's and
// the proxy's (as a hijacked connection would be).
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

type spliceResult struct {
	up, down int64
	err      error
}

func startSplice(ctx context.Context, client net.Conn, clientR io.Reader, upstream net.Conn) <-chan spliceResult {
	ch := make(chan spliceResult, 1)
	go func() {
		up, down, err := Splice(ctx, client, clientR, upstream)
		ch <- spliceResult{up, down, err}
	}()
	return ch
}

func startSpliceTimeout(ctx context.Context, client net.Conn, clientR io.Reader, upstream net.Conn, halfClose time.Duration) <-chan spliceResult {
	ch := make(chan spliceResult, 1)
	go func() {
		up, down, err := splice(ctx, client, clientR, upstream, halfClose)
		ch <- spliceResult{up, down, err}
	}()
	return ch
}

func TestDialSpliceEcho(t *testing.T) {
	addr, ends := echoServer(t)
	f := newForwarder(t, Config{})
	tests := []struct {
		name     string
		buffered string // bytes the server read before Hijack
		send     string
	}{
		{"plain", "", "hello, tunnel"},
		{"buffered bytes first", "ClientHello:", "rest of it"},
		{"large", "", strings.Repeat("0123456789", 100_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upConn, err := f.Dial(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			client, proxySide := tcpPair(t)
			var clientR io.Reader
			if tt.buffered != "" {
				clientR = io.MultiReader(strings.NewReader(tt.buffered), proxySide)
			}
			done := startSplice(t.Context(), proxySide, clientR, upConn)

			// Write and half-close in the background: the echo comes back
			// while we are still sending.
			go func() {
				io.WriteString(client, tt.send)
				client.CloseWrite()
			}()
			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(client) // ends only if the half-close made it round
			if err != nil {
				t.Fatal(err)
			}
			want := tt.buffered + tt.send
			if string(got) != want {
				t.Fatalf("echo: got %d bytes, want %d", len(got), len(want))
			}
			res := within(t, done, 5*time.Second, "Splice")
			if res.err != nil || res.up != int64(len(want)) || res.down != int64(len(want)) {
				t.Fatalf("Splice = %d, %d, %v; want %d both ways", res.up, res.down, res.err, len(want))
			}
			if end := within(t, ends, 5*time.Second, "echo end"); end != "eof" {
				t.Errorf("upstream saw %s, want a clean half-close", end)
			}
			assertClosed(t, proxySide)
			assertClosed(t, upConn)
		})
	}
}

// TestSpliceHalfCloseTimeout: once one direction has ended, a peer that
// neither closes nor sends no longer holds the tunnel open; one that keeps
// sending does.
func TestSpliceHalfCloseTimeout(t *testing.T) {
	const halfClose = 200 * time.Millisecond
	t.Run("client closes, upstream idles", func(t *testing.T) {
		client, proxySide := tcpPair(t)
		peer, upConn := tcpPair(t)
		done := startSpliceTimeout(t.Context(), proxySide, nil, upConn, halfClose)
		io.WriteString(client, "hello")
		client.Close()
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(peer); err != nil || string(b) != "hello" {
			t.Fatalf("upstream read %q, %v", b, err)
		}
		// The upstream keeps its end open and says nothing.
		start := time.Now()
		res := within(t, done, 5*time.Second, "Splice with an idle upstream")
		if res.err != nil || res.up != 5 || res.down != 0 {
			t.Fatalf("Splice = %d, %d, %v; want 5, 0, nil", res.up, res.down, res.err)
		}
		t.Logf("ended %v after the upstream saw EOF", time.Since(start))
		assertClosed(t, upConn)
		assertClosed(t, proxySide)
	})
	t.Run("upstream closes, client idles", func(t *testing.T) {
		client, proxySide := tcpPair(t)
		peer, upConn := tcpPair(t)
		done := startSpliceTimeout(t.Context(), proxySide, nil, upConn, halfClose)
		io.WriteString(peer, "hello")
		peer.Close()
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(client); err != nil || string(b) != "hello" {
			t.Fatalf("client read %q, %v", b, err)
		}
		res := within(t, done, 5*time.Second, "Splice with an idle client")
		if res.err != nil || res.up != 0 || res.down != 5 {
			t.Fatalf("Splice = %d, %d, %v; want 0, 5, nil", res.up, res.down, res.err)
		}
	})
	t.Run("a busy direction outlives the timeout", func(t *testing.T) {
		client, proxySide := tcpPair(t)
		peer, upConn := tcpPair(t)
		// The client's buffered bytes go first, and through a reader that
		// is not the connection itself.
		done := startSpliceTimeout(t.Context(), proxySide, io.MultiReader(strings.NewReader("GET"), proxySide), upConn, halfClose)
		client.CloseWrite() // request done
		const chunks = 12   // 12 × 50ms: three times the timeout
		go func() {
			defer peer.Close()
			io.ReadAll(peer)
			tick := time.NewTicker(halfClose / 4)
			defer tick.Stop()
			for range chunks {
				<-tick.C
				if _, err := io.WriteString(peer, "chunk"); err != nil {
					return
				}
			}
		}()
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(client)
		if err != nil || len(b) != chunks*len("chunk") {
			t.Fatalf("client read %d bytes, %v; want %d", len(b), err, chunks*len("chunk"))
		}
		res := within(t, done, 5*time.Second, "Splice")
		if res.err != nil || res.up != 3 || res.down != int64(len(b)) {
			t.Fatalf("Splice = %d, %d, %v", res.up, res.down, res.err)
		}
	})
}

func TestSpliceContextCancel(t *testing.T) {
	addr, ends := echoServer(t)
	f := newForwarder(t, Config{})
	upConn, err := f.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	client, proxySide := tcpPair(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := startSplice(ctx, proxySide, nil, upConn)

	io.WriteString(client, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	cancel()
	res := within(t, done, 5*time.Second, "Splice after cancel")
	if !errors.Is(res.err, context.Canceled) || res.up != 4 || res.down != 4 {
		t.Fatalf("Splice = %d, %d, %v; want 4, 4, context.Canceled", res.up, res.down, res.err)
	}
	// Both sides were closed: the client reads the end, the upstream too.
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(buf); n != 0 || err == nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
		t.Errorf("client read after cancel: %d, %v", n, err)
	}
	within(t, ends, 5*time.Second, "upstream end")
	assertClosed(t, proxySide)
	assertClosed(t, upConn)
}

func TestSpliceUpstreamFails(t *testing.T) {
	// The upstream resets the connection: Splice reports it and closes the
	// client's side too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c.(*net.TCPConn)
	}()
	f := newForwarder(t, Config{})
	upConn, err := f.Dial(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	client, proxySide := tcpPair(t)
	done := startSplice(t.Context(), proxySide, nil, upConn)

	io.WriteString(client, "x")
	io.ReadFull(peer, make([]byte, 1))
	peer.SetLinger(0) // RST instead of FIN
	peer.Close()

	res := within(t, done, 5*time.Second, "Splice after reset")
	if res.err == nil || errors.Is(res.err, context.Canceled) {
		t.Fatalf("Splice err = %v, want the reset", res.err)
	}
	t.Logf("%v", res.err)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(client); isTimeout(err) {
		t.Error("client side left open")
	}
	assertClosed(t, proxySide)
}

func TestDialErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		addr string
		want error // nil: context.Canceled
	}{
		{"dns", context.Background(), "nonexistent.invalid:443", ErrDNS},
		{"refused", context.Background(), testnet.FreeAddr(t), ErrConnRefused},
		{"bad address", context.Background(), "no-port", ErrUpstream},
		{"caller deadline", expired, testnet.FreeAddr(t), ErrConnectTimeout},
		{"caller canceled", canceled, testnet.FreeAddr(t), nil},
	}
	f := newForwarder(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.Dial(tt.ctx, tt.addr)
			if c != nil {
				c.Close()
				t.Fatal("connected")
			}
			if tt.want == nil {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err %v, want context.Canceled", err)
				}
				return
			}
			wantClass(t, err, tt.want)
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// assertClosed checks that c was closed by us: using it fails with
// net.ErrClosed.
func assertClosed(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.SetDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("%v still open (SetDeadline: %v)", c.LocalAddr(), err)
	}
}
