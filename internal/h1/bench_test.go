package h1_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// BenchmarkServers compares the h1 server with net/http's serving the
// same handler to 32 keep-alive clients, side by side: each round sends
// 2,000 requests to each server in turn (the order alternates), and the
// figures are medians over rounds of req/s and of the per-round ratio
// h1/net-http.
//
//	go test -run=^$ -bench=Servers -benchtime=15x ./internal/h1
func BenchmarkServers(b *testing.B) {
	const perRound = 2000
	body := []byte("{\"ok\":true}\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body) //nolint:errcheck // benchmark
	})
	h1srv, stdsrv := &h1.Server{Handler: h}, &http.Server{Handler: h}
	urls := make([]string, 2)
	for i, srv := range []interface{ Serve(net.Listener) error }{h1srv, stdsrv} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(ln) //nolint:errcheck // ends with Close
		urls[i] = "http://" + ln.Addr().String() + "/"
	}
	defer h1srv.Close()
	defer stdsrv.Close()
	clients := make([]*http.Client, 2)
	for i := range clients {
		tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr}
		load(b, clients[i], urls[i], 500)
	}
	rps := [2][]float64{}
	b.ResetTimer()
	for round := range b.N {
		for k := range 2 {
			i := (round + k) % 2
			start := time.Now()
			load(b, clients[i], urls[i], perRound)
			rps[i] = append(rps[i], perRound/time.Since(start).Seconds())
		}
	}
	b.StopTimer()
	ratios := make([]float64, b.N)
	for k := range ratios {
		ratios[k] = rps[0][k] / rps[1][k]
	}
	b.ReportMetric(median(rps[0]), "h1-req/s")
	b.ReportMetric(median(rps[1]), "net-http-req/s")
	b.ReportMetric(median(ratios), "h1/net-http")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
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
