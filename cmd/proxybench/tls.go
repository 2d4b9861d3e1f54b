package main

// Scenario tls: what TLS interception costs. Plain HTTP through proxyd (the
// throughput scenario's forward baseline), HTTPS through a CONNECT tunnel
// that proxyd splices, and HTTPS through a tunnel that proxyd decrypts
// (docs/tls-interception.md), side by side in one run, same closed loop.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
	"github.com/proxyd/proxyd/internal/mitm"
)

// tlsTarget is one way through proxyd in the tls scenario.
type tlsTarget struct {
	target
	what  string // the row's label
	roots []string
	// dials counts the client's connections to proxyd: with keep-alive,
	// one per worker at warm-up and none after, each an https tunnel.
	dials atomic.Int64
}

// newClient is the closed loop's client for t at concurrency c: the
// throughput scenario's keep-alive transport, plus, for https, the roots t
// trusts and HTTP/1.1 only (an empty TLSNextProto), so that one client
// connection is one tunnel.
func (t *tlsTarget) newClient(c int) (*http.Client, *http.Transport, error) {
	tr := loadgen.NewTransport(t.proxy, c)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		t.dials.Add(1)
		return dial(ctx, network, addr)
	}
	if len(t.roots) > 0 {
		pool, err := certPool(t.roots...)
		if err != nil {
			return nil, nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		tr.TLSHandshakeTimeout = 10 * time.Second
	}
	return &http.Client{Transport: tr}, tr, nil
}

// tlsRow is one target's runs at one concurrency, for the summary.
type tlsRow struct {
	what, mode string
	runs       []tpRun
	dials      int64 // connections opened during the measured rounds
}

func runTLS(ctx context.Context, e *env, o throughputOpts) error {
	dir, err := e.subdir("tls")
	if err != nil {
		return err
	}
	const path = "/v1/items"
	up, err := e.startUpstream(0)
	if err != nil {
		return err
	}
	defer up.stop()
	upPEM := filepath.Join(dir, "upstream.pem")
	upTLS, err := e.startUpstreamArgs("--delay", "0s", "--tls-cert", upPEM)
	if err != nil {
		return err
	}
	defer upTLS.stop()
	caCert, caKey, err := mitm.InitCA(filepath.Join(dir, "ca"), time.Now())
	if err != nil {
		return err
	}

	// Two proxyds with the same limits (none): one splices every CONNECT
	// and carries the plain-HTTP baseline too, one decrypts 127.0.0.1.
	pd, err := e.startProxyd(proxydConf{Rate: 0, Concurrency: 0})
	if err != nil {
		return err
	}
	defer pd.stop()
	pdi, err := e.startProxyd(proxydConf{Rate: 0, Concurrency: 0, TLS: &proxydTLS{
		Intercept: []string{"127.0.0.1"}, CACert: caCert, CAKey: caKey, UpstreamCA: upPEM,
	}})
	if err != nil {
		return err
	}
	defer pdi.stop()
	pdURL, _ := url.Parse("http://" + pd.addr)
	pdiURL, _ := url.Parse("http://" + pdi.addr)
	httpsURL := "https://" + upTLS.addr + path
	targets := []*tlsTarget{
		{what: "plain http", target: target{name: "proxyd", mode: "forward", url: "http://" + up.addr + path, proxy: pdURL, groups: []int{pd.pid()}}},
		// Trusting the upstream's certificate alone proves the tunnel
		// was not decrypted; trusting proxyd's CA alone, that it was.
		{what: "https CONNECT splice", roots: []string{upPEM}, target: target{name: "proxyd", mode: "splice", url: httpsURL, proxy: pdURL, groups: []int{pd.pid()}}},
		{what: "https intercepted", roots: []string{caCert}, target: target{name: "proxyd", mode: "intercept", url: httpsURL, proxy: pdiURL, groups: []int{pdi.pid()}}},
	}

	tbl := &table{
		title:  "Scenario tls: TLS interception (no limits, keep-alive, closed loop, HTTP/1.1)",
		header: []string{"path", "c", "req/s (median)", "× plain http", "p50 ms", "p99 ms", "proxy CPU µs/req", "new conns in rounds", "errors", "noisy rounds"},
		right:  []bool{false, true, true, true, true, true, true, true, true, true},
	}
	var proto string
	for _, c := range o.conc {
		clients := make([]*http.Client, len(targets))
		for i, t := range targets {
			cl, tr, err := t.newClient(c)
			if err != nil {
				return err
			}
			defer tr.CloseIdleConnections()
			clients[i] = cl
			if p, err := checkTLSTarget(ctx, cl, t); err != nil {
				return fmt.Errorf("%s: %w", t.what, err)
			} else if p != "" && proto == "" {
				proto = p
			}
		}
		e.logf("tls c=%d: warming up %d targets", c, len(targets))
		for i, t := range targets {
			if _, err := runClosedOnce(ctx, clients[i], t.target, c, o.warmup); err != nil {
				return err
			}
		}
		rows := make([]tlsRow, len(targets))
		for i, t := range targets {
			rows[i] = tlsRow{what: t.what, mode: t.mode}
		}
		for r := range o.rounds {
			for k := range targets {
				i := (k + r) % len(targets) // rotated, as in throughput
				t := targets[i]
				d0 := t.dials.Load()
				run, err := measureClosedRound(ctx, e, "tls", clients[i], t.target, c, o.duration, r+1)
				if err != nil {
					return err
				}
				rows[i].runs = append(rows[i].runs, run)
				rows[i].dials += t.dials.Load() - d0
			}
			e.logf("tls c=%d: round %d/%d done", c, r+1, o.rounds)
		}
		for _, line := range summarizeTLS(e, tbl, rows, c) {
			e.logf("tls %s", line)
			tbl.notes = append(tbl.notes, line)
		}
		if pdi.pprof != "" && c == o.conc[0] {
			if err := profileIntercept(ctx, e, pdi, clients[2], targets[2].target, c); err != nil {
				e.logf("tls: profile: %v", err)
			}
		}
	}
	if proto == "" {
		proto = "?"
	}
	tbl.notes = append(tbl.notes,
		fmt.Sprintf("One upstream process serves plain HTTP, another HTTPS (%s, a self-signed ECDSA P-256 certificate, HTTP/1.1 only); proxyd's leaves are ECDSA P-256 too. plain http and the splice go through one proxyd (no tls section), the intercepted path through a second one with `tls.intercept: [\"127.0.0.1\"]` that trusts the upstream's certificate through `tls.upstream_ca`; both have no rate limit and no concurrency cap. The client is Go's net/http Transport with Proxy set, MaxIdleConnsPerHost = c and an empty TLSNextProto (HTTP/1.1), so one client connection is one tunnel and one TLS handshake, made during the warm-up: \"new conns in rounds\" counts the connections opened during the measured rounds (0 means every handshake was amortized over the run).", proto),
		fmt.Sprintf("Each path ran %d rounds of %v (after a %v warm-up), in an order rotated every round; figures are medians over rounds, ratios the medians of per-round ratios. \"proxy CPU\" is the CPU time of the proxyd process measured, per answered request.",
			o.rounds, o.duration, o.warmup))
	e.rep.table(tbl)
	return nil
}

// profileIntercept takes a CPU profile of proxyd serving intercepted
// tunnels at concurrency c, outside the measured rounds (with --pprof).
func profileIntercept(ctx context.Context, e *env, pd *proxydServer, client *http.Client, t target, c int) error {
	const secs = 5
	errc := make(chan error, 1)
	go func() {
		errc <- e.fetchProfile(pd, fmt.Sprintf("cpu-intercept-c%d.pprof", c), "/debug/pprof/profile", secs)
	}()
	if _, err := runClosedOnce(ctx, client, t, c, (secs+1)*time.Second); err != nil {
		return err
	}
	return <-errc
}

// checkTLSTarget sends one request and checks it is answered 200 with the
// upstream's body; for https it returns the negotiated TLS version and
// cipher suite.
func checkTLSTarget(ctx context.Context, c *http.Client, t *tlsTarget) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || string(body) != string(upstreamBody) {
		return "", fmt.Errorf("GET %s: %s, %q", t.url, resp.Status, body)
	}
	if resp.TLS == nil {
		return "", nil
	}
	return tls.VersionName(resp.TLS.Version) + " " + tls.CipherSuiteName(resp.TLS.CipherSuite), nil
}

// measureClosedRound is one closed-loop run of t, measured as in the
// throughput scenario (rate, latency, the proxy's CPU per request, host
// noise) and emitted as a JSON line.
func measureClosedRound(ctx context.Context, e *env, scenario string, client *http.Client, t target, c int, d time.Duration, round int) (tpRun, error) {
	before := sampleCPU(t.groups)
	res, err := runClosedOnce(ctx, client, t, c, d)
	if err != nil {
		return tpRun{}, err
	}
	share, cpuSec := cpuBetween(before, sampleCPU(t.groups))
	cls := &res.Classes[0]
	run := tpRun{
		rps:    res.OKRate(),
		p50:    ms(cls.Latency.Quantile(0.5)),
		p99:    ms(cls.Latency.Quantile(0.99)),
		errors: cls.Errors + cls.Completed - cls.OK,
	}
	if len(t.groups) > 0 && cls.OK > 0 {
		run.cpuPerReq = cpuSec * 1e6 / float64(cls.OK)
	}
	m := measurement{Scenario: scenario, Kind: "run", Target: t.name, Mode: t.mode,
		Concurrency: c, Round: round, RPS: round3(run.rps), CPUPerReqUS: round3(run.cpuPerReq)}
	m.setClass(cls)
	m.setShare(share)
	run.noisy = m.Noisy
	e.rep.emit(m)
	return run, nil
}

// summarizeTLS adds one row per path at concurrency c (rows[0] is plain
// http, rows[1] the splice, rows[2] the intercepted tunnel), emits the
// summaries and returns the ratio lines.
func summarizeTLS(e *env, tbl *table, rows []tlsRow, c int) []string {
	col := func(i int, f func(tpRun) float64) float64 {
		var xs []float64
		for _, r := range rows[i].runs {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	ratio := func(i, j int) float64 {
		var rs []float64
		for r := range rows[i].runs {
			if r < len(rows[j].runs) && rows[j].runs[r].rps > 0 {
				rs = append(rs, rows[i].runs[r].rps/rows[j].runs[r].rps)
			}
		}
		return median(rs)
	}
	rps := func(r tpRun) float64 { return r.rps }
	cpu := func(r tpRun) float64 { return r.cpuPerReq }
	for i, row := range rows {
		var errs int64
		noisy := 0
		for _, r := range row.runs {
			errs += r.errors
			if r.noisy {
				noisy++
			}
		}
		cpuCell := fmt.Sprintf("%.1f", col(i, cpu))
		p50, p99 := col(i, func(r tpRun) float64 { return r.p50 }), col(i, func(r tpRun) float64 { return r.p99 })
		tbl.add(row.what, fmt.Sprint(c), fmtNum(col(i, rps)), fmtRatio(ratio(i, 0)), fmtNum(p50), fmtNum(p99),
			cpuCell, fmt.Sprint(row.dials), fmt.Sprint(errs), fmt.Sprintf("%d/%d", noisy, len(row.runs)))
		if e != nil {
			e.rep.emit(measurement{Scenario: "tls", Kind: "summary", Target: "proxyd", Mode: row.mode, Concurrency: c,
				RPS: round3(col(i, rps)), P50: round3(p50), P99: round3(p99), CPUPerReqUS: round3(col(i, cpu)), Errors: errs,
				Values: map[string]float64{"ratio_to_plain_http": round3(ratio(i, 0)), "new_conns": float64(row.dials)}})
		}
	}
	if len(rows) < 3 {
		return nil
	}
	line := func(i, j int) string {
		return fmt.Sprintf("%s vs %s %s req/s, %+.1f µs CPU/req (%s vs %s)", rows[i].what, rows[j].what,
			fmtRatio(ratio(i, j)), col(i, cpu)-col(j, cpu), fmtNum(col(i, cpu)), fmtNum(col(j, cpu)))
	}
	return []string{fmt.Sprintf("c=%d: %s; %s.", c, line(2, 1), line(2, 0))}
}
