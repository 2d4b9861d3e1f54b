package main

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func TestParseFlagsShared(t *testing.T) {
	o, err := parseFlags([]string{"--scenario", "shared"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.scenarios, []string{"shared"}) || !o.shared.explicit {
		t.Errorf("scenarios %v, explicit %v", o.scenarios, o.shared.explicit)
	}
	s := o.shared
	if s.rate != 200 || s.burst != 10 || s.replicas != 3 || s.accuracy != 10*time.Second || s.priority != 5*time.Second || s.light != 5*time.Second ||
		s.failover != 10*time.Second || s.downAfter != 500*time.Millisecond {
		t.Errorf("defaults: %+v", s)
	}
	// The master dies a third of the way in: the outage (down-after plus
	// about 2 s of Sentinel's failover) ends well before the run does.
	if s.failover/3+s.downAfter+2*time.Second > s.failover*3/4 {
		t.Errorf("failover run %v too short for down-after %v", s.failover, s.downAfter)
	}
	// About a minute by default: the runs, their 1 s grace and pauses.
	if total := s.accuracy + 2*s.priority + s.light*2 + s.failover + 12*time.Second; total > 65*time.Second {
		t.Errorf("default runs take %v", total)
	}
	if o, err = parseFlags([]string{"--quick", "--scenario", "rate,shared"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if o.shared.accuracy != 4*time.Second || o.shared.priority != 3*time.Second || o.shared.light != 3*time.Second || o.shared.failover != 6*time.Second || !o.shared.explicit {
		t.Errorf("quick: %+v", o.shared)
	}
	// Through all, a missing redis-server skips the scenario.
	if o, err = parseFlags(nil, io.Discard); err != nil || !slices.Contains(o.scenarios, "shared") || o.shared.explicit {
		t.Errorf("all: %v, explicit %v, %v", o.scenarios, o.shared.explicit, err)
	}
}

func TestParseStoreMetrics(t *testing.T) {
	text := `# HELP proxyd_store_request_duration_seconds Duration of calls.
# TYPE proxyd_store_request_duration_seconds histogram
proxyd_store_request_duration_seconds_bucket{le="0.0001"} 0
proxyd_store_request_duration_seconds_bucket{le="0.00025"} 10
proxyd_store_request_duration_seconds_bucket{le="0.0005"} 90
proxyd_store_request_duration_seconds_bucket{le="0.001"} 99
proxyd_store_request_duration_seconds_bucket{le="0.0025"} 100
proxyd_store_request_duration_seconds_bucket{le="+Inf"} 100
proxyd_store_request_duration_seconds_sum 0.04
proxyd_store_request_duration_seconds_count 100
proxyd_store_requests_total 101
proxyd_store_errors_total 1
proxyd_store_replicas 3
`
	m := parseStoreMetrics(text)
	if m.calls != 101 || m.errors != 1 || m.count != 100 || m.sum != 0.04 || len(m.buckets) != 6 {
		t.Fatalf("parsed %+v", m)
	}
	if got := m.mean(); math.Abs(got-0.0004) > 1e-12 {
		t.Errorf("mean %v", got)
	}
	if got := m.quantileBound(0.99); got != 0.001 {
		t.Errorf("p99 bound %v", got)
	}
	if got := m.quantileBound(0.5); got != 0.0005 {
		t.Errorf("p50 bound %v", got)
	}
	d := m.add(parseStoreMetrics("proxyd_store_requests_total 1\nproxyd_store_request_duration_seconds_count 50\nproxyd_store_request_duration_seconds_bucket{le=\"0.0005\"} 50\n"), -1)
	if d.calls != 100 || d.count != 50 || d.buckets[0.0005] != 40 || d.buckets[math.Inf(1)] != 100 {
		t.Errorf("difference %+v", d)
	}
	if !math.IsNaN((storeMetrics{}).mean()) || !math.IsNaN((storeMetrics{}).quantileBound(0.99)) {
		t.Errorf("no calls: want NaN")
	}
}

func TestCountWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var recs []arrivalRec
	// A burst of 10 at the start, then 100/s for 3 s.
	for range 10 {
		recs = append(recs, arrivalRec{at: t0})
	}
	for i := range 300 {
		recs = append(recs, arrivalRec{at: t0.Add(time.Duration(i+1) * 10 * time.Millisecond)})
	}
	st := countWindows(recs, t0.Add(time.Second), t0.Add(3*time.Second), time.Second)
	if st.total != 200 || st.secMin != 100 || st.secMax != 100 {
		t.Errorf("counts %+v", st)
	}
	// [t0, t0+1s) holds the 10 of the burst and 99 more.
	if st.maxWindow != 109 || !st.maxWindowStarted.Equal(t0) {
		t.Errorf("max window %d at %v", st.maxWindow, st.maxWindowStarted)
	}
	if st := countWindows(nil, t0, t0.Add(2*time.Second), time.Second); st.total != 0 || st.secMin != 0 || st.maxWindow != 0 {
		t.Errorf("empty: %+v", st)
	}
}

func TestArrivalsUpstream(t *testing.T) {
	srv := httptest.NewServer(&arrivalsUpstream{})
	defer srv.Close()
	c := srv.Client()
	defer c.CloseIdleConnections()
	addr := srv.Listener.Addr().String()
	for _, p := range []string{"u=1", "u=5", ""} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/items", nil)
		if p != "" {
			req.Header.Set("Priority", p)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != string(upstreamBody) {
			t.Fatalf("answer %s %q", resp.Status, b)
		}
	}
	recs, err := fetchArrivals(c, addr, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].urgency != 1 || recs[1].urgency != 5 || recs[2].urgency != 8 {
		t.Fatalf("arrivals %+v", recs)
	}
	if !slices.IsSortedFunc(recs, func(a, b arrivalRec) int { return a.at.Compare(b.at) }) || time.Since(recs[0].at) > time.Minute {
		t.Errorf("times %+v", recs)
	}
	if recs, err = fetchArrivals(c, addr, false); err != nil || len(recs) != 0 {
		t.Errorf("after reset: %v, %v", recs, err)
	}
}

func TestRedisVersion(t *testing.T) {
	if got := redisVersion("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d"); got != "redis-server 7.0.15" {
		t.Errorf("got %q", got)
	}
	if got := redisVersion(""); got != "redis-server" {
		t.Errorf("got %q", got)
	}
}
