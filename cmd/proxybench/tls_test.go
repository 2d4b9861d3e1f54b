package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsTLSScenario(t *testing.T) {
	o, err := parseFlags([]string{"--scenario", "tls", "--quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.scenarios, []string{"tls"}) || o.tp.rounds != 2 || !slices.Equal(o.tp.conc, []int{32, 128}) {
		t.Errorf("scenarios %v, rounds %d, conc %v", o.scenarios, o.tp.rounds, o.tp.conc)
	}
	if o, err = parseFlags(nil, io.Discard); err != nil || !slices.Contains(o.scenarios, "tls") {
		t.Errorf("all: %v, %v", o.scenarios, err)
	}
}

// The upstream's TLS mode serves HTTP/1.1 over a certificate that a client
// trusting the written PEM alone accepts for 127.0.0.1.
func TestUpstreamTLS(t *testing.T) {
	pemPath := filepath.Join(t.TempDir(), "upstream.pem")
	conf, err := upstreamTLSConfig(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &upstream{}, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tls.NewListener(ln, conf)) }()
	defer func() { _ = srv.Close(); <-done }()

	pool, err := certPool(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + ln.Addr().String() + "/v1/items")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != string(upstreamBody) || resp.ProtoMajor != 1 || resp.TLS == nil {
		t.Errorf("%s %s %q, TLS %v", resp.Proto, resp.Status, body, resp.TLS != nil)
	}
	if _, err := certPool(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("certPool of a missing file: want an error")
	}
}

func TestSummarizeTLS(t *testing.T) {
	rows := []tlsRow{
		{what: "plain http", mode: "forward", runs: []tpRun{{rps: 10000, p50: 3, p99: 9, cpuPerReq: 60}, {rps: 12000, p50: 2.5, p99: 8, cpuPerReq: 62}}},
		{what: "https CONNECT splice", mode: "splice", runs: []tpRun{{rps: 11000, p50: 2, p99: 9, cpuPerReq: 20}, {rps: 13000, p50: 2, p99: 9, cpuPerReq: 20}}},
		{what: "https intercepted", mode: "intercept", dials: 1, runs: []tpRun{{rps: 5500, p50: 5, p99: 15, cpuPerReq: 90, errors: 2, noisy: true}, {rps: 6500, p50: 5, p99: 17, cpuPerReq: 92}}},
	}
	tbl := &table{
		header: []string{"path", "c", "req/s (median)", "× plain http", "p50 ms", "p99 ms", "proxy CPU µs/req", "new conns in rounds", "errors", "noisy rounds"},
		right:  []bool{false, true, true, true, true, true, true, true, true, true},
	}
	lines := summarizeTLS(nil, tbl, rows, 32)
	md := tbl.markdown()
	for _, want := range []string{
		"| plain http           |  32 |          11000 |        1.00× |   2.75 |   8.50 |             61.0 |                   0 |      0 |          0/2 |",
		"| https CONNECT splice |  32 |          12000 |        1.09× |   2.00 |   9.00 |             20.0 |                   0 |      0 |          0/2 |",
		"| https intercepted    |  32 |           6000 |        0.55× |   5.00 |   16.0 |             91.0 |                   1 |      2 |          1/2 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	// Ratios are medians of per-round ratios: (0.5 + 0.5)/2 against the
	// splice, (0.55 + 0.5417)/2 against plain http.
	want := "c=32: https intercepted vs https CONNECT splice 0.50× req/s, +71.0 µs CPU/req (91.0 vs 20.0); https intercepted vs plain http 0.55× req/s, +30.0 µs CPU/req (91.0 vs 61.0)."
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("ratio lines %q\nwant %q", lines, want)
	}
}
