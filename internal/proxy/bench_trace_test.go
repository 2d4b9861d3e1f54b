package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/tracing"
	"github.com/proxyd/proxyd/internal/upstream"
)

// BenchmarkTracingCPU measures what tracing costs the request path, side
// by side in one run: the process CPU time (getrusage: client, proxy and
// upstream together, the same for every variant) per request through a
// proxyd with no tracer at all ("none", the code before tracing), with
// tracing off as proxyd runs it (the no-op provider, "off"), and with
// tracing on, every request sampled and exported over OTLP/HTTP to a
// collector on loopback that discards what it gets ("on"), or none
// sampled (sample_ratio 0, "on-unsampled"). Rounds rotate the order; the
// figures are medians over rounds: cpu-µs/req of each, and the ratios to
// "none".
//
//	go test -run=^$ -bench=TracingCPU -benchtime=20x ./internal/proxy
func BenchmarkTracingCPU(b *testing.B) {
	const workers, perRound = 32, 2000
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("{\"ok\":true}\n"))
	}))
	defer up.Close()
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	newTracing := func(endpoint string, ratio float64) *tracing.Tracing {
		t, err := tracing.New(config.Tracing{OTLPEndpoint: endpoint, OTLPProtocol: config.TracingHTTPProtobuf, SampleRatio: ratio}, tracing.Deps{})
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	off, on, unsampled := newTracing("", 1), newTracing(collector.URL, 1), newTracing(collector.URL, 0)
	defer on.Shutdown(context.Background())        //nolint:errcheck
	defer unsampled.Shutdown(context.Background()) //nolint:errcheck
	variants := []struct {
		name string
		tp   trace.TracerProvider
	}{{"none", nil}, {"off", off.Provider()}, {"on", on.Provider()}, {"on-unsampled", unsampled.Provider()}}

	clients := make([]*http.Client, len(variants))
	for i, v := range variants {
		disp := dispatch.New(dispatch.Config{Limits: dispatch.Limits{QueueSize: 100000, MaxWait: time.Minute, MaxTunnels: 1}}, dispatch.Deps{})
		defer disp.Close()
		fwd := upstream.New(upstream.Config{MaxIdleConnsPerHost: 256})
		defer fwd.Close()
		h, err := New(config.Default(), Deps{Dispatcher: disp, Forwarder: fwd, Tracer: v.tp})
		if err != nil {
			b.Fatal(err)
		}
		u, stop := serveH1(b, h)
		defer stop()
		tr := &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: workers, DisableCompression: true}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr}
		runRound(b, clients[i], up.URL, workers, workers*4) // warm the pools
	}
	cpu := make([][]float64, len(variants))
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		for k := range variants {
			i := (round + k) % len(variants)
			before := cpuTime()
			runRound(b, clients[i], up.URL, workers, perRound)
			cpu[i] = append(cpu[i], float64((cpuTime()-before).Nanoseconds())/1e3/perRound)
		}
	}
	b.StopTimer()
	for i, v := range variants {
		b.ReportMetric(median(cpu[i]), v.name+"-cpu-µs/req")
		r := make([]float64, b.N)
		for k := range r {
			r[k] = cpu[i][k] / cpu[0][k]
		}
		if i > 0 {
			b.ReportMetric(median(r), v.name+"/none")
		}
	}
}
