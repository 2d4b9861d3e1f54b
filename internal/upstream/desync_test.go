//go:build unix

package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Tests that the pool never hands a response to a request that did not
// cause it (issue 26): bytes that arrive on an idle connection, while no
// request is outstanding on it, close that connection.

// unsolicited is a whole response that no request asked for.
const unsolicited = "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nresp-to-UNSOLICITED"

// taggedReply answers a request for path with a body naming it, so that a
// client can tell whose response it got.
func taggedReply(path string) string {
	body := "resp-to-" + path
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// idlePconns returns the connections in f's pool now.
func idlePconns(f *Forwarder) []*pconn {
	f.pool.mu.Lock()
	defer f.pool.mu.Unlock()
	var out []*pconn
	for _, l := range f.pool.idle {
		out = append(out, l...)
	}
	return out
}

// waitReadable waits until pc's socket holds a byte or its end, for at
// most d, and reports whether it does: the runtime's poller wakes the wait
// when the kernel has something (the bytes travel through the kernel;
// nothing else signals their arrival). The test must not use the pool
// meanwhile.
func waitReadable(pc *pconn, d time.Duration) bool {
	pc.conn.SetReadDeadline(time.Now().Add(d))
	defer pc.conn.SetReadDeadline(time.Time{})
	var b [1]byte
	err := pc.peek.raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK // else wait for readability
	})
	return err == nil
}

// waitIdleUnread waits until f's pool holds an idle connection whose
// socket has bytes waiting (the state the desync needs), and fails the
// test after 5 s.
func waitIdleUnread(t testing.TB, f *Forwarder) {
	t.Helper()
	pcs := idlePconns(f)
	if len(pcs) != 1 {
		t.Fatalf("%d idle connections, want the one that gets the stray bytes", len(pcs))
	}
	if !waitReadable(pcs[0], 5*time.Second) || pcs[0].peek.idle() != connUnread {
		t.Fatal("the idle connection did not receive the upstream's unsolicited bytes")
	}
}

// TestPoolUnsolicitedResponse reproduces the desync: the upstream answers
// a request, then writes a whole response that nobody asked for on the
// idle keep-alive connection (or the late "body" of a HEAD or a 204,
// which is itself a response). The next request must get its own
// response, on a new connection.
func TestPoolUnsolicitedResponse(t *testing.T) {
	cases := []struct {
		name, method, path string
		// first is the answer to the first request; late is what the
		// upstream writes after it, once the client has its response.
		first, late string
	}{
		{"unsolicited response", "GET", "/poison", taggedReply("/poison"), unsolicited},
		{"HEAD with a late body", "HEAD", "/head",
			fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(unsolicited)), unsolicited},
		{"204 with a late body", "GET", "/204", "HTTP/1.1 204 No Content\r\n\r\n", unsolicited},
		{"304 with a late body", "GET", "/304", "HTTP/1.1 304 Not Modified\r\n\r\n", unsolicited},
		{"half a response", "GET", "/half", taggedReply("/half"), "HTTP/1.1 200 OK\r\nContent-"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			goLate := make(chan struct{})
			wrote := make(chan struct{})
			addr, _ := rawUpstream(t, func(n int, c net.Conn, br *bufio.Reader) {
				for i := 0; ; i++ {
					req, err := readRequest(br)
					if err != nil {
						return
					}
					reply := taggedReply(req.URL.Path)
					if n == 1 && i == 0 {
						reply = tt.first
					}
					if _, err := io.WriteString(c, reply); err != nil {
						return
					}
					if n == 1 && i == 0 {
						<-goLate
						io.WriteString(c, tt.late)
						close(wrote)
					}
				}
			})
			f, dials := poolForwarder(t, Config{})
			resp := roundTripPool(t, f, request(t, context.Background(), tt.method, "http://"+addr+tt.path, nil))
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n := idleConns(t, f); n != 1 {
				t.Fatalf("%d idle connections after the first response, want 1", n)
			}
			close(goLate)
			within(t, wrote, 5*time.Second, "the late bytes")
			waitIdleUnread(t, f)

			for _, path := range []string{"/two", "/three"} {
				if got, want := fetch(t, f, "http://"+addr+path), "resp-to-"+path; got != want {
					t.Fatalf("GET %s got %q, want %q: another request's response", path, got, want)
				}
			}
			if d := dials.Load(); d != 2 {
				t.Errorf("%d dials, want 2 (the tainted connection replaced once)", d)
			}
			if u := f.UnsolicitedResponses(); u != 1 {
				t.Errorf("UnsolicitedResponses() = %d, want 1", u)
			}
		})
	}
}

// TestPoolIdleClosedByUpstream: an idle connection the upstream closed is
// found before a request is written on it, so even a request that may not
// be sent twice goes out once, on a new connection.
func TestPoolIdleClosedByUpstream(t *testing.T) {
	addr, ev := rawUpstream(t, func(n int, c net.Conn, br *bufio.Reader) {
		req, err := readRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, taggedReply(req.URL.Path)) // keep-alive, then hang up
		if n > 1 {
			io.Copy(io.Discard, br)
		}
	})
	f, dials := poolForwarder(t, Config{})
	if got := fetch(t, f, "http://"+addr+"/one"); got != "resp-to-/one" {
		t.Fatalf("first body %q", got)
	}
	within(t, ev.closed, 5*time.Second, "the upstream closing the idle connection")
	resp, err := f.roundTripH1(request(t, context.Background(), "DELETE", "http://"+addr+"/two", nil), 5*time.Second)
	if err != nil {
		t.Fatalf("DELETE after the idle connection closed: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "resp-to-/two" {
		t.Fatalf("DELETE got %q", b)
	}
	if d := dials.Load(); d != 2 {
		t.Errorf("%d dials, want 2", d)
	}
	if u := f.UnsolicitedResponses(); u != 0 {
		t.Errorf("UnsolicitedResponses() = %d, want 0: a close is not a response", u)
	}
}

// BenchmarkIdleState is the price of the reuse check: one non-blocking
// MSG_PEEK on the socket of every pooled connection taken from the pool.
func BenchmarkIdleState(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if peer := <-accepted; peer != nil {
		defer peer.Close()
	}
	p := newPeeker(c)
	b.ReportAllocs()
	for b.Loop() {
		if p.idle() != connIdle {
			b.Fatal("not idle")
		}
	}
}
