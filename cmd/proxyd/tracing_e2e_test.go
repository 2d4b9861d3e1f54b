package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/proxyd/proxyd/internal/tracing/otlptest"
)

// PROXYD_TRACING_OTLP_ENDPOINT turns tracing on in a real proxyd: a
// request's spans (continuing the client's traceparent, named by
// OTEL_SERVICE_NAME, which the SDK reads and proxyd's own loader ignores)
// reach an OTLP/HTTP receiver by the end of the drain, and the upstream
// gets a traceparent of the same trace.
func TestTracingEndToEnd(t *testing.T) {
	rc := otlptest.NewHTTP(t)
	var mu sync.Mutex
	var upstreamTP string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamTP = r.Header.Get("Traceparent")
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	t.Setenv("OTEL_SERVICE_NAME", "edge-proxy") // read by the SDK from the process
	env := append([]string{
		"PROXYD_TRACING_OTLP_ENDPOINT=" + rc.Endpoint,
		"OTEL_SERVICE_NAME=edge-proxy", // not proxyd's: no "unknown variable"
		"OTEL_EXPORTER_OTLP_HEADERS=x-tenant=a",
	}, loopbackAllow...)
	p := startProxydEnv(t, env)
	c := p.client()
	defer c.CloseIdleConnections()
	const trace, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, _ := http.NewRequest(http.MethodGet, up.URL+"/traced", nil)
	req.Header.Set("Traceparent", "00-"+trace+"-"+parent+"-01")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	var srv, att *otlptest.Span
	for _, s := range rc.Spans() {
		if s.TraceID != trace {
			continue
		}
		switch s.Name {
		case "proxyd GET":
			srv = &s
		case "GET":
			att = &s
		}
	}
	if srv == nil || att == nil {
		t.Fatalf("the receiver got %+v; want the request's server and attempt spans in trace %s", rc.Spans(), trace)
	}
	if srv.ParentID != parent || srv.Service != "edge-proxy" {
		t.Errorf("server span parent %s service %q, want %s and edge-proxy", srv.ParentID, srv.Service, parent)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "00-" + trace + "-" + att.SpanID + "-01"; upstreamTP != want {
		t.Errorf("upstream got traceparent %q, want %q", upstreamTP, want)
	}
}

// A bad tracing.* value stops start-up and check-config, naming the key
// and the variable it came from.
func TestTracingConfigErrors(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"PROXYD_TRACING_SAMPLE_RATIO=2", "tracing.sample_ratio: must be from 0 to 1, got 2 (from PROXYD_TRACING_SAMPLE_RATIO)"},
		{"PROXYD_TRACING_OTLP_ENDPOINT=collector:4318", `tracing.otlp_endpoint: must be an http or https URL such as "http://collector:4318", got "collector:4318" (from PROXYD_TRACING_OTLP_ENDPOINT)`},
		{"PROXYD_TRACING_OTLP_PROTOCOL=http/json", `tracing.otlp_protocol: must be http/protobuf or grpc, got "http/json" (from PROXYD_TRACING_OTLP_PROTOCOL)`},
	} {
		for _, args := range [][]string{{"check-config"}, {"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}} {
			var out, errOut bytes.Buffer
			code := run(args, []string{tc.env}, &out, &errOut, make(chan os.Signal))
			if code != 2 || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("%v with %s: exit %d, stderr %q; want 2 and %q", args, tc.env, code, errOut.String(), tc.want)
			}
		}
	}
	var out, errOut bytes.Buffer
	env := []string{"PROXYD_TRACING_OTLP_ENDPOINT=otel-collector:4317", "PROXYD_TRACING_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_INSECURE=true"}
	if code := run([]string{"check-config"}, env, &out, &errOut, make(chan os.Signal)); code != 0 {
		t.Errorf("grpc host:port refused: exit %d, %s", code, errOut.String())
	}
}
