package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/outcome"
)

// bigAt answers n bytes (with a Content-Length) on path, written 32 KiB at
// a time until the proxy stops taking them, and "ok" on any other path.
func bigAt(path string, n int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	}
}

// noReader sends GET target through the proxy on a raw connection, with
// request id id, and never reads the answer. It returns once the
// upstream has the request (the request holds its permit from then on).
func (e *env) noReader(o *origin, target, id string) net.Conn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	host := strings.TrimPrefix(o.URL, "http://")
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Request-Id: %s\r\n\r\n", target, host, id); err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, "the upstream to get "+target, func() bool { return len(o.seen()) > 0 })
	return c
}

// The finding (issue 26): with limits.concurrency 1, one client asks for
// a body larger than the socket buffers and never reads. With
// client_write_timeout the response is cut once it has made no progress
// for the timeout: the permit goes back, the next request is answered,
// and the cut is recorded (forwarded, with the error and the flag that
// feeds proxyd_client_write_timeouts_total), logged, and the stuck
// client's connection is reset.
func TestClientWriteTimeoutFreesPermit(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	e := newEnv(t, func(s *setup) {
		s.cfg.Limits.Concurrency = 1
		s.cfg.ClientWriteTimeout = timeout
	})
	o := e.newOrigin(bigAt("/big", 32<<20))
	stuck := e.noReader(o, o.URL+"/big", "noread")
	since := time.Now()

	second := e.goDo(e.req(http.MethodGet, o.URL+"/small", nil))
	res := recv(t, second, "the second request")
	wantStatus(t, res, http.StatusOK)
	if took := time.Since(since); took < timeout {
		t.Errorf("the stuck response was cut %v after its request reached the upstream, before the %v timeout", took, timeout)
	}

	r := e.wantRecord("noread", outcome.Forwarded, http.StatusOK)
	if !r.ClientWriteTimeout || !errors.Is(r.Err, h1.ErrWriteTimeout) || r.Cut {
		t.Errorf("Record: ClientWriteTimeout %v, Err %v, Cut %v; want a client write timeout, not an upstream cut", r.ClientWriteTimeout, r.Err, r.Cut)
	}
	if r.Bytes <= 0 || r.Bytes >= 32<<20 {
		t.Errorf("Record: %d bytes sent, want part of the body", r.Bytes)
	}
	if n := e.logs.FilterMessage("client write timeout: response cut").FilterField(zap.String("request_id", "noread")).Len(); n != 1 {
		t.Errorf("%d warnings for the cut, want 1", n)
	}
	if n := e.logs.FilterMessage("request").FilterField(zap.Bool("client_write_timeout", true)).Len(); n != 1 {
		t.Errorf("%d access-log lines with client_write_timeout, want 1", n)
	}
	_ = stuck.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := io.Copy(io.Discard, stuck); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the stuck client's read: %v, want ECONNRESET (the response cut)", err)
	}
	e.stats("the permit back", func(s dispatch.Stats) bool { return s.InFlight == 0 })
}

// client_write_timeout 0 is no bound, which is how proxyd behaved before
// the key existed: the permit stays with the client that does not read,
// and the next request waits until that client goes away.
func TestClientWriteTimeoutZeroIsUnbounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(s *setup) {
		s.cfg.Limits.Concurrency = 1
		s.cfg.ClientWriteTimeout = 0
	})
	o := e.newOrigin(bigAt("/big", 32<<20))
	stuck := e.noReader(o, o.URL+"/big", "noread")
	second := e.goDo(e.req(http.MethodGet, o.URL+"/small", nil))
	select {
	case res := <-second:
		t.Fatalf("the second request was answered (%v) while the first client held the permit", res)
	case <-time.After(time.Second): // five times the timeout of the test above
	}
	stuck.Close()
	wantStatus(t, recv(t, second, "the second request"), http.StatusOK)
	if r := e.wantRecord("noread", outcome.Forwarded, http.StatusOK); r.ClientWriteTimeout || errors.Is(r.Err, h1.ErrWriteTimeout) {
		t.Errorf("Record: ClientWriteTimeout %v, Err %v; want a client that left", r.ClientWriteTimeout, r.Err)
	}
}

// Inside intercepted tunnels too: an HTTP/1.1 client whose transport stops
// reading, and an HTTP/2 one that stops granting flow-control window, are
// cut after the timeout, and the permit goes back.
func TestClientWriteTimeoutIntercepted(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, intercepting("127.0.0.1"), func(s *setup) {
				s.cfg.Limits.Concurrency = 1
				s.cfg.ClientWriteTimeout = timeout
			})
			o := e.newTLSOrigin(bigAt("/big", 32<<20))
			e.trustOrigin(o)
			c := e.interceptClient(h2)
			req := e.req(http.MethodGet, o.URL+"/big", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close() // never read
			if h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("client↔proxy protocol %s, want h2=%v", resp.Proto, h2)
			}
			plain := e.newOrigin(nil)
			second := e.goDo(e.req(http.MethodGet, plain.URL+"/small", nil))
			wantStatus(t, recv(t, second, "the second request"), http.StatusOK)
			r := e.wantRecord(idOf(req), outcome.Forwarded, http.StatusOK)
			if !r.Intercepted || !r.ClientWriteTimeout || !errors.Is(r.Err, h1.ErrWriteTimeout) {
				t.Errorf("Record: intercepted %v, ClientWriteTimeout %v, Err %v; want an intercepted client write timeout", r.Intercepted, r.ClientWriteTimeout, r.Err)
			}
		})
	}
}
