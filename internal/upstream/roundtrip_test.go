package upstream

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/testnet"
)

func get(t testing.TB, ctx context.Context, target string) *http.Request {
	t.Helper()
	in := httptest.NewRequest("GET", "/", nil)
	return Outbound(ctx, in, mustURL(t, target), nil)
}

func TestRoundTripOK(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Content-Encoding", "gzip") // must pass untouched
		io.WriteString(w, "not really gzip")
	})
	f := newForwarder(t, Config{})
	resp, err := f.RoundTrip(get(t, context.Background(), up.URL+"/x"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "not really gzip" {
		t.Fatalf("body %q, %v", body, err)
	}
	if _, ok := resp.Header["Connection"]; ok {
		t.Error("Connection not removed")
	}
	if _, ok := resp.Header["X-Hop"]; ok {
		t.Error("X-Hop (named in Connection) not removed")
	}
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Uncompressed {
		t.Error("compression was interfered with")
	}
}

// TestRoundTripErrors checks the classification against real sockets.
func TestRoundTripErrors(t *testing.T) {
	const headerTimeout = 200 * time.Millisecond

	// An upstream that never answers.
	stall := make(chan struct{})
	blocked := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-stall }, stall)
	// An upstream that drops the connection before any response.
	reset := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	// An upstream that answers garbage.
	garbage := rawServer(t, "SMTP ready\r\n\r\n")
	// A TLS upstream whose certificate we do not trust.
	untrusted := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(untrusted.Close)
	untrusted.Config.ErrorLog = discardLog()

	tests := []struct {
		name    string
		target  string
		timeout time.Duration // header timeout; 0: a generous 5s
		want    error         // the sentinel
		also    error         // the cause that must be wrapped too, if any
	}{
		{"dns", "http://nonexistent.invalid/", 0, ErrDNS, nil},
		{"refused", "http://" + testnet.FreeAddr(t) + "/", 0, ErrConnRefused, syscall.ECONNREFUSED},
		{"response timeout", blocked.URL, headerTimeout, ErrResponseTimeout, context.DeadlineExceeded},
		{"reset before headers", reset.URL, 0, ErrUpstream, nil},
		{"malformed response", "http://" + garbage + "/", 0, ErrUpstream, nil},
		{"untrusted certificate", untrusted.URL, 0, ErrTLSCertificate, nil},
		{"tls to a plain server", "https://" + strings.TrimPrefix(reset.URL, "http://") + "/", 0, ErrTLSProtocol, nil},
		{"no host", "http:///x", 0, ErrUpstream, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newForwarder(t, Config{})
			timeout := cmp.Or(tt.timeout, 5*time.Second)
			start := time.Now()
			resp, err := f.RoundTrip(get(t, context.Background(), tt.target), timeout)
			if resp != nil {
				resp.Body.Close()
				t.Fatalf("got a response: %v", resp.Status)
			}
			wantClass(t, err, tt.want)
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("%q does not wrap %v", err, tt.also)
			}
			if errors.Is(err, context.Canceled) {
				t.Errorf("%q looks like a client cancellation", err)
			}
			if d := time.Since(start); d > timeout+2*time.Second {
				t.Errorf("took %v", d)
			}
			t.Logf("%v", err)
		})
	}
}

func TestRoundTripCallerCancel(t *testing.T) {
	stall := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-stall
	}, stall)
	f := newForwarder(t, Config{})

	cause := errors.New("client hung up")
	for _, tt := range []struct {
		name   string
		cancel func(context.CancelCauseFunc)
		also   error
	}{
		{"plain", func(c context.CancelCauseFunc) { c(nil) }, nil},
		{"with cause", func(c context.CancelCauseFunc) { c(cause) }, cause},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			go func() {
				<-arrived
				tt.cancel(cancel)
			}()
			_, err := f.RoundTrip(get(t, ctx, up.URL), time.Minute)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("%q does not wrap the cause", err)
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					t.Errorf("%q wraps %v", err, s)
				}
			}
		})
	}
}

func TestRoundTripCallerDeadlineIsTimeout(t *testing.T) {
	stall := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-stall }, stall)
	f := newForwarder(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := f.RoundTrip(get(t, ctx, up.URL), 0)
	wantClass(t, err, ErrResponseTimeout)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("%q: want DeadlineExceeded and not Canceled", err)
	}
}

// TestHeaderTimeoutDoesNotCutBody: the timer only bounds the headers.
func TestHeaderTimeoutDoesNotCutBody(t *testing.T) {
	const headerTimeout = 50 * time.Millisecond
	more := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "head;")
		http.NewResponseController(w).Flush()
		<-more
		io.WriteString(w, "tail")
	})
	f := newForwarder(t, Config{})
	resp, err := f.RoundTrip(get(t, context.Background(), up.URL), headerTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Let the header timeout pass several times over before the rest.
	<-time.After(5 * headerTimeout)
	close(more)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "head;tail" {
		t.Fatalf("body %q, err %v", body, err)
	}
}

func TestRoundTripHTTP2(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s via %s", r.Proto, r.Header.Get("Via"))
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	f := newForwarder(t, Config{TLSClientConfig: &tls.Config{RootCAs: roots}})

	for range 2 { // the second one reuses the connection
		resp, err := f.RoundTrip(get(t, context.Background(), up.URL), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "HTTP/2.0 via 1.1 proxyd" {
			t.Fatalf("%s: %q", resp.Proto, body)
		}
	}
}

func TestProxyIgnoresEnvironment(t *testing.T) {
	// A proxy variable pointing at a dead port must not be used.
	dead := "http://" + testnet.FreeAddr(t)
	t.Setenv("HTTP_PROXY", dead)
	t.Setenv("http_proxy", dead)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") })
	f := newForwarder(t, Config{})
	// The transport only looks at 127.0.0.1 targets through a proxy when
	// told to; use a name to be sure the variable would otherwise apply.
	resp, err := f.RoundTrip(get(t, context.Background(), strings.Replace(up.URL, "127.0.0.1", "localhost", 1)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestClassify(t *testing.T) {
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tlsTimeout := timeoutError("net/http: TLS handshake timeout")
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dnsTimeout := &net.OpError{Op: "dial", Err: &net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}}
	reset := &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}

	live := context.Background()
	canceled, cancel := context.WithCancel(live)
	cancel()
	expired, cancel2 := context.WithDeadline(live, time.Unix(1, 0))
	defer cancel2()

	tests := []struct {
		name      string
		parent    context.Context
		err       error
		timedOut  bool
		connected bool
		want      error
	}{
		{"dial timeout", live, dialTimeout, false, false, ErrConnectTimeout},
		{"tls handshake timeout", live, tlsTimeout, false, false, ErrConnectTimeout},
		{"dns timeout is dns", live, dnsTimeout, false, false, ErrDNS},
		{"refused", live, refused, false, false, ErrConnRefused},
		{"reset", live, reset, false, true, ErrUpstream},
		{"eof", live, io.EOF, false, true, ErrUpstream},
		{"our timer, not connected", live, headerTimeoutError{time.Second}, true, false, ErrConnectTimeout},
		{"our timer, connected", live, headerTimeoutError{time.Second}, true, true, ErrResponseTimeout},
		{"caller deadline, not connected", expired, context.DeadlineExceeded, false, false, ErrConnectTimeout},
		{"caller deadline, connected", expired, context.DeadlineExceeded, false, true, ErrResponseTimeout},
		{"caller canceled while dialling", canceled, &net.OpError{Op: "dial", Err: context.Canceled}, false, false, nil},
		{"caller canceled, timer fired too", canceled, context.Canceled, true, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(tt.parent, tt.err, tt.timedOut, tt.connected, time.Second)
			if tt.want == nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%q: want context.Canceled", err)
				}
				for _, s := range sentinels {
					if errors.Is(err, s) {
						t.Errorf("%q wraps %v", err, s)
					}
				}
				return
			}
			wantClass(t, err, tt.want)
			if errors.Is(err, context.Canceled) {
				t.Errorf("%q wraps context.Canceled", err)
			}
			if !tt.timedOut && !errors.Is(err, tt.err) {
				t.Errorf("%q does not wrap its cause %v", err, tt.err)
			}
		})
	}
}

type timeoutError string

func (e timeoutError) Error() string { return string(e) }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// rawServer answers every request head with reply and closes the
// connection.
func rawServer(t testing.TB, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the request head first: a reply before the request
			// would be "unsolicited" to the transport.
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			io.WriteString(c, reply)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

func BenchmarkRoundTripCopy(b *testing.B) {
	payload := strings.Repeat("x", 1024)
	up := newUpstream(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, payload)
	})
	f := newForwarder(b, Config{})
	in := inbound("GET", "http://origin.example/a", nil)
	target := mustURL(b, up.URL+"/a")
	ctx := context.Background()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		resp, err := f.RoundTrip(Outbound(ctx, in, target, nil), time.Second)
		if err != nil {
			b.Fatal(err)
		}
		clear(w.h)
		if _, err := CopyResponse(w, resp, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct {
	h       http.Header
	status  int
	flushes int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.status = code }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) Flush()                      { d.flushes++ }
