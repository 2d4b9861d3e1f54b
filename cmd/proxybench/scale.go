package main

// Scenario 4: many waiting requests. Each waiting request is one client
// connection that has sent its request and waits for the answer (an idle
// keep-alive client from the proxy's point of view), with the rate at 1/s
// so that nearly all of them wait. Then the limit is lifted through the
// admin API and the queue drains.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
)

type scaleOpts struct {
	counts []int
	// fdLimit is the harness's RLIMIT_NOFILE: a count that needs more
	// descriptors than it allows is lowered to fit.
	fdLimit uint64
	// fdWhy says why fdLimit is not higher, for the report.
	fdWhy string
}

// perSourceIP is how many connections are opened from each loopback source
// address: one (source address, destination) pair has only about 28,000
// ephemeral ports (net.ipv4.ip_local_port_range), so 100,000 connections
// to one listener come from 127.0.0.1, 127.0.0.2, …
const perSourceIP = 20000

// scaleHeadroom is the file descriptors kept free, in the harness and in
// proxyd, besides one per waiting request (listeners, the upstream pool,
// control connections).
const scaleHeadroom = 1000

// holder keeps n requests waiting, one per connection.
type holder struct {
	mu struct {
		sync.Mutex
		conns    []net.Conn
		firstErr error
	}
	opened, failed atomic.Int64
	done, ok       atomic.Int64
	last           atomic.Int64 // unix nanoseconds of the latest answer
	readers        sync.WaitGroup
}

// hold opens n connections to proxy and sends on each a forward request to
// upstream, with dialers concurrent dials at a time; it returns once every
// request is sent (or failed). Answers are read in the background.
func hold(ctx context.Context, proxy, upstream string, n, dialers int) *holder {
	h := &holder{}
	req := []byte(fmt.Sprintf("GET http://%s/v1/items HTTP/1.1\r\nHost: %s\r\nUser-Agent: proxybench\r\n\r\n", upstream, upstream))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range dialers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i/perSourceIP))}
				d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: src, Control: bindNoPort}
				c, err := d.DialContext(ctx, "tcp", proxy)
				if err == nil {
					_, err = c.Write(req)
					if err != nil {
						c.Close()
					}
				}
				if err != nil {
					h.failed.Add(1)
					h.mu.Lock()
					if h.mu.firstErr == nil {
						h.mu.firstErr = err
					}
					h.mu.Unlock()
					continue
				}
				h.opened.Add(1)
				h.mu.Lock()
				h.mu.conns = append(h.mu.conns, c)
				h.mu.Unlock()
				h.readers.Go(func() { h.read(c) })
			}
		})
	}
	wg.Wait()
	return h
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (linux/in.h).
const ipBindAddressNoPort = 24

// bindNoPort lets a socket bound to a source address choose its port at
// connect time, per destination, instead of at bind time among ports no
// socket holds, so that sockets left in TIME_WAIT by earlier runs do not
// run the source address out of ports ("bind: address already in use").
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}

// read waits for the status line of the answer on c.
func (h *holder) read(c net.Conn) {
	var buf [64]byte
	got := 0
	for got < len(buf) {
		k, err := c.Read(buf[got:])
		got += k
		if i := bytes.Index(buf[:got], []byte("\r\n")); i >= 0 || err != nil {
			break
		}
	}
	if got >= 12 && bytes.HasPrefix(buf[:got], []byte("HTTP/1.")) {
		h.done.Add(1)
		if string(buf[9:12]) == "200" {
			h.ok.Add(1)
		}
		h.last.Store(time.Now().UnixNano())
	}
}

// close closes every connection and waits for the readers.
func (h *holder) close() {
	h.mu.Lock()
	for _, c := range h.mu.conns {
		c.Close()
	}
	h.mu.conns = nil
	h.mu.Unlock()
	h.readers.Wait()
}

func (h *holder) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.firstErr
}

func runScale(ctx context.Context, e *env, o scaleOpts) error {
	up, err := e.startUpstream(0)
	if err != nil {
		return err
	}
	defer up.stop()
	tbl := &table{
		title:  "Scenario 4: scale, waiting requests (rate 1/s, one idle keep-alive client connection each)",
		header: []string{"waiting", "RSS idle", "RSS waiting", "RSS per waiting request", "goroutines", "stack / heap in use per waiting request", "time to open", "drain time after PATCH rate 0", "answered 200", "noisy"},
		right:  []bool{true, true, true, true, true, true, true, true, true, false},
	}
	for _, n := range o.counts {
		// The harness holds n descriptors and proxyd n+: leave headroom.
		if need := uint64(n) + scaleHeadroom; need > o.fdLimit {
			lowered := int(o.fdLimit) - scaleHeadroom
			e.logf("scale: %d waiting needs %d descriptors, the limit is %d: measuring %d", n, need, o.fdLimit, lowered)
			e.rep.note("scale: %d waiting requests were not possible here: proxyd needs a file descriptor per waiting client and RLIMIT_NOFILE is %d%s; measured %d instead", n, o.fdLimit, o.fdWhy, lowered)
			n = lowered
		}
		if err := runScaleOne(ctx, e, up, n, tbl); err != nil {
			return err
		}
	}
	tbl.notes = append(tbl.notes, "proxyd: limits.rate 1, burst 1, concurrency 64, queue_size = waiting + 1000, max_wait 10m. RSS per waiting request is (RSS with them waiting − RSS idle) / queue depth, read from /proc/PID/status once the queue is full and 2 s have passed. Drain time runs from the PATCH /api/v1/limits {\"rate\":0} (unlimited) to the last client's answer. Each connection comes from 127.0.0.x, 20,000 per source address (ephemeral ports), to proxyd's one listener on 127.0.0.1.")
	e.rep.table(tbl)
	return nil
}

func runScaleOne(ctx context.Context, e *env, up *server, n int, tbl *table) error {
	pd, err := e.startProxyd(proxydConf{Rate: 1, Burst: 1, Concurrency: 64, QueueSize: n + 1000, MaxWait: 10 * time.Minute, Upstream: up.addr})
	if err != nil {
		return err
	}
	defer pd.stop()
	// One request through, so that the idle figure includes a warm
	// upstream connection and the handler's first allocations.
	pu, _ := url.Parse("http://" + pd.addr)
	warm := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	if resp, err := warm.Get("http://" + up.addr + "/v1/items"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	warm.CloseIdleConnections()
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	rss0, err := loadgen.RSS(pd.pid())
	if err != nil {
		return err
	}
	before := sampleCPU(nil)
	e.logf("scale: opening %d waiting requests", n)
	t0 := time.Now()
	h := hold(ctx, pd.addr, up.addr, n, 256)
	defer h.close()
	opened := int(h.opened.Load())
	if h.failed.Load() > 0 {
		e.rep.note("scale %d: %d connections failed: %v", n, h.failed.Load(), h.err())
	}
	// Wait until proxyd has read every request: depth + answered = opened.
	var depth int
	deadline := time.Now().Add(3 * time.Minute)
	for {
		depth, err = e.queueDepth(pd)
		if err != nil {
			return err
		}
		if depth+int(h.done.Load()) >= opened {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scale: only %d of %d requests queued after 3 minutes", depth, opened)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	openTime := time.Since(t0)
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return err
	}
	if depth, err = e.queueDepth(pd); err != nil {
		return err
	}
	rss1, err := loadgen.RSS(pd.pid())
	if err != nil {
		return err
	}
	perReq := float64(rss1-rss0) / float64(max(depth, 1))
	gm, _ := e.goMetrics(pd) // a breakdown, when proxyd's /metrics has it
	e.logf("scale: %d waiting, RSS %s → %s, %s per waiting request", depth, fmtKiB(float64(rss0)), fmtKiB(float64(rss1)), fmtKiB(perReq))
	if pd.pprof != "" {
		if err := e.fetchProfile(pd, fmt.Sprintf("heap-waiting-%d.pprof", n), "/debug/pprof/heap", 0); err != nil {
			e.logf("scale: heap profile: %v", err)
		}
	}
	// Lift the limit and time the drain.
	doneBefore := h.done.Load()
	tp := time.Now()
	if err := e.patchLimits(pd, `{"rate":0}`); err != nil {
		return err
	}
	deadline = time.Now().Add(3 * time.Minute)
	for h.done.Load() < int64(opened) && time.Now().Before(deadline) {
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	drain := time.Duration(h.last.Load() - tp.UnixNano())
	drained := h.done.Load() - doneBefore
	share, _ := cpuBetween(before, sampleCPU(nil))
	m := measurement{Scenario: "scale", Kind: "run", Target: "proxyd", Mode: "forward", Sent: int64(opened), OK: h.ok.Load(),
		Errors: h.failed.Load(), Values: map[string]float64{
			"waiting": float64(depth), "rss_idle_bytes": float64(rss0), "rss_waiting_bytes": float64(rss1),
			"rss_per_waiting_bytes": round3(perReq), "open_seconds": round3(openTime.Seconds()),
			"drain_seconds": round3(drain.Seconds()), "drained": float64(drained), "answered": float64(h.done.Load()),
		}}
	for k, v := range gm {
		m.Values[k] = v
	}
	m.setShare(share)
	e.rep.emit(m)
	noisy := ""
	if m.Noisy {
		noisy = "noisy"
	}
	drainText := fmt.Sprintf("%.2f s", drain.Seconds())
	if h.done.Load() < int64(opened) {
		drainText = fmt.Sprintf("incomplete: %d of %d answered", h.done.Load(), opened)
	}
	goroutines, split := "–", "–"
	if g, ok := gm["go_goroutines"]; ok {
		goroutines = fmt.Sprintf("%.0f", g)
		split = fmtKiB(gm["go_memstats_stack_inuse_bytes"]/float64(max(depth, 1))) + " / " + fmtKiB(gm["go_memstats_heap_inuse_bytes"]/float64(max(depth, 1)))
	}
	tbl.add(fmt.Sprint(depth), fmtKiB(float64(rss0)), fmtKiB(float64(rss1)), fmtKiB(perReq), goroutines, split,
		fmt.Sprintf("%.1f s", openTime.Seconds()), drainText, fmt.Sprintf("%d/%d", h.ok.Load(), opened), noisy)
	if n == 10000 {
		e.rep.verdict(verdict{target: "≤ 32 KiB RSS per waiting request at 10,000 waiting", met: perReq <= 32*1024,
			measured: fmt.Sprintf("%s (%d waiting; drained in %s)", fmtKiB(perReq), depth, drainText)})
	}
	return nil
}

// goMetrics reads a few Go runtime gauges from proxyd's /metrics: the
// goroutines and the bytes of stacks and heap in use.
func (e *env) goMetrics(pd *proxydServer) (map[string]float64, error) {
	resp, err := e.ctl.Get("http://" + pd.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	return parseGauges(string(b), "go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes"), nil
}

// parseGauges picks unlabelled samples by name from Prometheus text format.
func parseGauges(text string, names ...string) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.SplitSeq(text, "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// fetchProfile saves a pprof profile from proxyd's pprof listener (profiled
// builds only); seconds > 0 asks for a CPU profile of that length.
func (e *env) fetchProfile(pd *proxydServer, name, path string, seconds int) error {
	u := "http://" + pd.pprof + path
	if seconds > 0 {
		u += fmt.Sprintf("?seconds=%d", seconds)
	}
	c := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	f, err := os.Create(filepath.Join(e.pprof, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	e.logf("profile saved: %s", filepath.Join(e.pprof, name))
	return f.Close()
}

// raiseNofile raises RLIMIT_NOFILE (soft and, when allowed, hard) to want
// and returns the soft limit in force, and why it is lower than want.
// Children inherit it (setting it explicitly stops Go from restoring the
// original limit in children).
func raiseNofile(want uint64) (uint64, string) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024, fmt.Sprintf(" (getrlimit: %v)", err)
	}
	why := ""
	if lim.Max < want {
		l := syscall.Rlimit{Cur: want, Max: want}
		err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		if err == nil {
			return want, ""
		}
		why = fmt.Sprintf(" (the hard limit, which this process may not raise: %v; raising it needs CAP_SYS_RESOURCE)", err)
	}
	l := syscall.Rlimit{Cur: min(want, lim.Max), Max: lim.Max}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) == nil {
		return l.Cur, why
	}
	return lim.Cur, why
}
