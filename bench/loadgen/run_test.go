package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunClosedCountsClassesAndStatuses(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Class") == "bad" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		n.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	res, err := RunClosed(context.Background(), Options{
		URL:      srv.URL,
		Duration: 200 * time.Millisecond,
		Classes: []Class{
			{Name: "good", Workers: 4},
			{Name: "bad", Workers: 1, Header: http.Header{"X-Class": {"bad"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	good, bad := res.Class("good"), res.Class("bad")
	if good == nil || bad == nil {
		t.Fatalf("classes missing: %+v", res.Classes)
	}
	if good.OK == 0 || good.OK != n.Load() || good.Status[200] != good.OK || good.Latency.Count() != uint64(good.OK) {
		t.Errorf("good: ok %d, server %d, status %v, latencies %d", good.OK, n.Load(), good.Status, good.Latency.Count())
	}
	if bad.OK != 0 || bad.Status[503] == 0 || bad.Status[503] != bad.Completed || bad.Latency.Count() != 0 {
		t.Errorf("bad: ok %d, status %v, completed %d, latencies %d", bad.OK, bad.Status, bad.Completed, bad.Latency.Count())
	}
	if res.Elapsed < 200*time.Millisecond || res.OKRate() <= 0 {
		t.Errorf("elapsed %v, rate %v", res.Elapsed, res.OKRate())
	}
}

func TestRunClosedThroughProxyCountsErrors(t *testing.T) {
	// A proxy address nothing listens on: every request fails to connect.
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.Listener.Addr().String()
	ln.Close()
	proxy, _ := url.Parse("http://" + addr)
	res, err := RunClosed(context.Background(), Options{
		URL:      "http://127.0.0.1:9/",
		Client:   &http.Client{Transport: NewTransport(proxy, 2)},
		Duration: 50 * time.Millisecond,
		Classes:  []Class{{Name: "x", Workers: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Classes[0]
	if c.Errors == 0 || c.Errors != c.Sent || c.FirstError == "" || c.OK != 0 {
		t.Errorf("sent %d, errors %d (%q), ok %d", c.Sent, c.Errors, c.FirstError, c.OK)
	}
}

func TestRunOpenCancelsOutstandingAfterGrace(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	res, err := RunOpen(context.Background(), Options{
		URL:      srv.URL,
		Duration: 100 * time.Millisecond,
		Grace:    100 * time.Millisecond,
		Classes:  []Class{{Name: "held", Rate: 100}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("run took %v: outstanding requests were not canceled", el)
	}
	c := res.Classes[0]
	if c.Sent != 10 || c.Canceled != 10 || c.Errors != 0 || c.OK != 0 {
		t.Errorf("sent %d, canceled %d, errors %d, ok %d; want 10 sent and canceled", c.Sent, c.Canceled, c.Errors, c.OK)
	}
}

func TestRunOpenOverflow(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	res, err := RunOpen(context.Background(), Options{
		URL:            srv.URL,
		Duration:       100 * time.Millisecond,
		MaxOutstanding: 3,
		Classes:        []Class{{Name: "held", Rate: 100}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Classes[0]
	if c.Sent != 3 || c.Overflow != 7 {
		t.Errorf("sent %d, overflow %d; want 3 and 7", c.Sent, c.Overflow)
	}
}

func TestServerTimingDur(t *testing.T) {
	tests := []struct {
		values []string
		name   string
		want   time.Duration
		ok     bool
	}{
		{[]string{"queue;dur=0.5, upstream;dur=12"}, "queue", 500 * time.Microsecond, true},
		{[]string{"queue;dur=0.5, upstream;dur=12"}, "upstream", 12 * time.Millisecond, true},
		{[]string{"cache;desc=hit", "queue;desc=\"q\";dur=3"}, "queue", 3 * time.Millisecond, true},
		{[]string{"queue"}, "queue", 0, false},
		{[]string{"queue;dur=x"}, "queue", 0, false},
		{nil, "queue", 0, false},
	}
	for _, tc := range tests {
		got, ok := ServerTimingDur(tc.values, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ServerTimingDur(%q, %q) = %v, %v; want %v, %v", tc.values, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
