package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/h1"
	"github.com/proxyd/proxyd/internal/upstream"
)

// BenchmarkForwardRatio measures, side by side in one run, the throughput
// of a keep-alive client straight to an upstream ("direct"), through proxyd
// with unlimited limits, and through the standard library's
// httputil.ReverseProxy used as a forward proxy (the "Go floor"). Each
// round sends the same number of requests from the same number of workers
// to each target in turn (the order rotates every round, so none always
// runs first); the machine's noise moves all three alike within a round.
// The figures are the medians over rounds of each target's req/s and of the
// per-round ratios to direct.
//
//	go test -run=^$ -bench=ForwardRatio -benchtime=15x ./internal/proxy
func BenchmarkForwardRatio(b *testing.B) {
	const workers, perRound = 32, 2000
	body := []byte("{\"ok\":true,\"items\":[1,2,3,4,5,6,7,8,9,10]}\n")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	defer up.Close()

	cfg := config.Default()
	cfg.Limits.Rate, cfg.Limits.Concurrency, cfg.Limits.QueueSize = 0, 0, 100000
	disp := dispatch.New(dispatch.Config{Limits: dispatch.Limits{QueueSize: 100000, MaxWait: time.Minute, MaxTunnels: 1}}, dispatch.Deps{})
	fwd := upstream.New(upstream.Config{MaxIdleConnsPerHost: 256})
	defer fwd.Close()
	h, err := New(cfg, Deps{Dispatcher: disp, Forwarder: fwd})
	if err != nil {
		b.Fatal(err)
	}
	proxydURL, stopProxyd := serveH1(b, h)
	defer stopProxyd()

	floorTransport := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer floorTransport.CloseIdleConnections()
	floor := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.Out.URL = pr.In.URL; pr.Out.Host = pr.In.Host },
		Transport: floorTransport,
	}
	floorURL, stopFloor := serve(b, floor)
	defer stopFloor()

	targets := []struct {
		name  string
		proxy *url.URL
	}{{"direct", nil}, {"proxyd", proxydURL}, {"go-reverseproxy", floorURL}}
	clients := make([]*http.Client, len(targets))
	for i, t := range targets {
		tr := &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}
		if t.proxy != nil {
			tr.Proxy = http.ProxyURL(t.proxy)
		}
		clients[i] = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	// Warm every connection pool first.
	for i := range targets {
		runRound(b, clients[i], up.URL+"/v1/items", workers, workers*4)
	}
	rps := make([][]float64, len(targets))
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		for k := range targets {
			i := (round + k) % len(targets)
			d := runRound(b, clients[i], up.URL+"/v1/items", workers, perRound)
			rps[i] = append(rps[i], float64(perRound)/d.Seconds())
		}
	}
	b.StopTimer()
	ratio := func(a, c int) float64 {
		r := make([]float64, b.N)
		for k := range r {
			r[k] = rps[a][k] / rps[c][k]
		}
		return median(r)
	}
	for i, t := range targets {
		b.ReportMetric(median(rps[i]), t.name+"-req/s")
	}
	b.ReportMetric(ratio(1, 0), "proxyd/direct")
	b.ReportMetric(ratio(2, 0), "goproxy/direct")
	b.ReportMetric(ratio(1, 2), "proxyd/goproxy")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func runRound(b *testing.B, c *http.Client, u string, workers, n int) time.Duration {
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		work <- struct{}{}
	}
	close(work)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				resp, err := c.Get(u)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// server is what net/http's and h1's servers have in common.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// serve runs h on net/http's server on a loopback listener until the
// returned stop is called.
func serve(b *testing.B, h http.Handler) (*url.URL, func()) {
	return serveOn(b, &http.Server{Handler: h})
}

// serveH1 runs h as proxyd does: on the h1 server.
func serveH1(b *testing.B, h http.Handler) (*url.URL, func()) {
	return serveOn(b, &h1.Server{Handler: h})
}

func serveOn(b *testing.B, srv server) (*url.URL, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// BenchmarkForwardCPU reports the process CPU time (user + system, from
// getrusage) per request for the same three paths as BenchmarkForwardRatio,
// plus proxyd's handler on net/http's server ("proxyd-nethttp", to show
// what the h1 server saves):
// steadier than throughput on a shared machine, since it does not depend on
// how much of the CPU the run got. The proxy's own cost per request is the
// proxyd figure minus the direct one.
//
//	go test -run=^$ -bench=ForwardCPU -benchtime=20000x ./internal/proxy
func BenchmarkForwardCPU(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("{\"ok\":true}\n"))
	}))
	defer up.Close()
	disp := dispatch.New(dispatch.Config{Limits: dispatch.Limits{QueueSize: 100000, MaxWait: time.Minute, MaxTunnels: 1}}, dispatch.Deps{})
	defer disp.Close()
	fwd := upstream.New(upstream.Config{MaxIdleConnsPerHost: 256})
	defer fwd.Close()
	h, err := New(config.Default(), Deps{Dispatcher: disp, Forwarder: fwd})
	if err != nil {
		b.Fatal(err)
	}
	proxydURL, stopProxyd := serveH1(b, h)
	defer stopProxyd()
	nhURL, stopNH := serve(b, h)
	defer stopNH()
	floorTransport := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer floorTransport.CloseIdleConnections()
	floorURL, stopFloor := serve(b, &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.Out.URL = pr.In.URL; pr.Out.Host = pr.In.Host },
		Transport: floorTransport,
	})
	defer stopFloor()
	for _, t := range []struct {
		name  string
		proxy *url.URL
	}{{"direct", nil}, {"proxyd", proxydURL}, {"proxyd-nethttp", nhURL}, {"go-reverseproxy", floorURL}} {
		b.Run(t.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
			if t.proxy != nil {
				tr.Proxy = http.ProxyURL(t.proxy)
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			runRound(b, c, up.URL, 32, 500) // warm the pools
			before := cpuTime()
			b.ResetTimer()
			runRound(b, c, up.URL, 32, b.N)
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/1e3/float64(b.N), "cpu-µs/req")
		})
	}
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
