package h1_test

import (
	"bytes"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/h1"
)

// BenchmarkWriteStallTimeout measures what WriteStallTimeout costs the
// write path: two h1 servers, one with a 1-minute timeout (proxyd's
// default) and one without, serve the same handler to 32 keep-alive
// clients, side by side as in BenchmarkServers; the figures are medians
// over rounds of req/s and of the per-round ratio on/off. 12B is one
// write per response; 1MiB is 32 writes of 32 KiB per response.
//
//	go test -run=^$ -bench=WriteStallTimeout -benchtime=15x ./internal/h1
func BenchmarkWriteStallTimeout(b *testing.B) {
	for _, bc := range []struct {
		name           string
		size, perRound int
	}{{"12B", 12, 2000}, {"1MiB", 1 << 20, 200}} {
		b.Run(bc.name, func(b *testing.B) {
			chunk := bytes.Repeat([]byte("x"), min(bc.size, 32<<10))
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for n := bc.size; n > 0; n -= len(chunk) {
					w.Write(chunk) //nolint:errcheck // benchmark
				}
			})
			off := &h1.Server{Handler: h}
			on := &h1.Server{Handler: h, WriteStallTimeout: func() time.Duration { return time.Minute }}
			urls := make([]string, 2)
			for i, srv := range []*h1.Server{off, on} {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				go srv.Serve(ln) //nolint:errcheck // ends with Close
				defer srv.Close()
				urls[i] = "http://" + ln.Addr().String() + "/"
			}
			clients := make([]*http.Client, 2)
			for i := range clients {
				tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
				defer tr.CloseIdleConnections()
				clients[i] = &http.Client{Transport: tr}
				load(b, clients[i], urls[i], bc.perRound/4)
			}
			rps := [2][]float64{}
			b.ResetTimer()
			for round := range b.N {
				for k := range 2 {
					i := (round + k) % 2
					start := time.Now()
					load(b, clients[i], urls[i], bc.perRound)
					rps[i] = append(rps[i], float64(bc.perRound)/time.Since(start).Seconds())
				}
			}
			b.StopTimer()
			ratios := make([]float64, b.N)
			for k := range ratios {
				ratios[k] = rps[1][k] / rps[0][k]
			}
			b.ReportMetric(median(rps[0]), "off-req/s")
			b.ReportMetric(median(rps[1]), "on-req/s")
			b.ReportMetric(median(ratios), "on/off")
		})
	}
}

// BenchmarkDeadlineCalls is what the write path would pay per write for
// a deadline set on every write (SetWriteDeadline on a TCP connection),
// against what it pays (time.Now, to see whether the deadline must move).
func BenchmarkDeadlineCalls(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			c.Read(make([]byte, 1)) //nolint:errcheck // until the client closes
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("SetWriteDeadline", func(b *testing.B) {
		for b.Loop() {
			c.SetWriteDeadline(time.Now().Add(time.Minute)) //nolint:errcheck // benchmark
		}
	})
	b.Run("time.Now", func(b *testing.B) {
		var t time.Time
		for b.Loop() {
			t = time.Now()
		}
		_ = t
	})
}
