package upstream

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newForwarder returns a Forwarder whose idle connections are closed when
// the test ends.
func newForwarder(t testing.TB, cfg Config) *Forwarder {
	t.Helper()
	f := New(cfg)
	t.Cleanup(f.Close)
	return f
}

// newUpstream starts an httptest server on 127.0.0.1, closed when the test
// ends. The stall channels are closed first: handlers that block until the
// test ends wait on one, or the server's Close would wait for them forever.
func newUpstream(t testing.TB, h http.HandlerFunc, stall ...chan struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		for _, ch := range stall {
			close(ch)
		}
		srv.Close()
	})
	return srv
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// proxyTo is a minimal proxy handler wired the way internal/proxy uses
// this package: every request goes to target with the inbound path.
// Errors of CopyResponse are sent to copyErr when not nil.
func proxyTo(f *Forwarder, target *url.URL, copyErr chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := *target
		u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
		out := Outbound(r.Context(), r, &u, []string{"X-Priority", "X-Proxy-Timeout"})
		resp, err := f.RoundTrip(out, 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, err = CopyResponse(w, resp, func(h http.Header) {
			AppendVia(h, resp.ProtoMajor, resp.ProtoMinor)
		})
		if copyErr != nil {
			copyErr <- err
		}
		if errors.Is(err, ErrBodyCut) {
			panic(http.ErrAbortHandler)
		}
	}
}

// newProxy starts a proxy server forwarding to target and returns it; its
// Client() talks to it.
func newProxy(t testing.TB, f *Forwarder, target string, copyErr chan<- error) *httptest.Server {
	t.Helper()
	return newUpstream(t, proxyTo(f, mustURL(t, target), copyErr))
}

// sentinels lists the classification sentinels, for "exactly one" checks.
var sentinels = []error{ErrDNS, ErrConnRefused, ErrConnectTimeout, ErrResponseTimeout, ErrUpstream}

// wantClass checks that err wraps want and no other sentinel; want nil
// means none at all.
func wantClass(t testing.TB, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %v", want)
	}
	for _, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%q, %v) = %v, want %v", err, s, got, s == want)
		}
	}
}

// within fails the test if ch does not deliver within d.
func within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing after %v", what, d)
		panic("unreachable")
	}
}
