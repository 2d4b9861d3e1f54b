package h1_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// BenchmarkServers compares, side by side in one run, the h1 server with
// net/http's serving the same handler to 32 keep-alive clients: requests
// per second and process CPU time per request (clients included, so the
// difference between the two is the servers').
//
//	go test -run=^$ -bench=Servers -benchtime=20000x ./internal/h1
func BenchmarkServers(b *testing.B) {
	body := []byte("{\"ok\":true}\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body) //nolint:errcheck // benchmark
	})
	for _, s := range []struct {
		name  string
		serve func(net.Listener) func()
	}{
		{"h1", func(ln net.Listener) func() {
			srv := &h1.Server{Handler: h}
			go srv.Serve(ln) //nolint:errcheck // ends with Close
			return func() { srv.Close() }
		}},
		{"net-http", func(ln net.Listener) func() {
			srv := &http.Server{Handler: h}
			go srv.Serve(ln) //nolint:errcheck // ends with Close
			return func() { srv.Close() }
		}},
	} {
		b.Run(s.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer s.serve(ln)()
			tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			url := "http://" + ln.Addr().String() + "/"
			load(b, c, url, 500)
			before := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			load(b, c, url, b.N)
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/1e3/float64(b.N), "cpu-µs/req")
		})
	}
}

// load sends n GETs from 32 workers.
func load(b *testing.B, c *http.Client, url string, n int) {
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	ctx := context.Background()
	for range 32 {
		wg.Go(func() {
			for range work {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck // benchmark
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
