package main

// The servers the harness runs as its own children (proxybench re-executes
// itself with a hidden subcommand), so that none of them shares a Go
// runtime with the load generator: the upstream, and the "Go floor", the
// standard library's httputil.ReverseProxy used as a forward proxy.

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// upstreamBody is what the upstream answers: a small JSON document, like
// the APIs proxyd sits in front of.
var upstreamBody = []byte("{\"ok\":true,\"items\":[1,2,3,4,5,6,7,8,9,10]}\n")

// statsPath is the upstream's own counter endpoint; requests to it are not
// counted.
const statsPath = "/__proxybench/stats"

// upstreamStats is the upstream's counters: requests received, by the
// urgency of their RFC 9218 Priority header ("none" without one).
type upstreamStats struct {
	Total     int64            `json:"total"`
	ByUrgency map[string]int64 `json:"by_urgency"`
}

// upstream answers every request with upstreamBody after Delay, counting it
// by urgency.
type upstream struct {
	delay time.Duration
	// holdBulk, when > 0, is how long requests of urgency 5 or more are
	// held before the answer: it reproduces, with no proxy, the load
	// generator's state in a priority run (thousands of bulk requests
	// outstanding) to measure the generator's own latency under it.
	holdBulk time.Duration
	counts   [9]atomic.Int64 // urgency 0-7, 8 = none
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == statsPath {
		st := upstreamStats{ByUrgency: map[string]int64{}}
		for i := range u.counts {
			n := u.counts[i].Load()
			st.Total += n
			if n == 0 {
				continue
			}
			k := "none"
			if i < 8 {
				k = strconv.Itoa(i)
			}
			st.ByUrgency[k] = n
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	urg := urgencyOf(r.Header.Get("Priority"))
	u.counts[urg].Add(1)
	if u.delay > 0 {
		time.Sleep(u.delay)
	}
	if u.holdBulk > 0 && urg >= 5 && urg < 8 {
		select {
		case <-time.After(u.holdBulk):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(upstreamBody)))
	_, _ = w.Write(upstreamBody)
}

// urgencyOf reads the u parameter of an RFC 9218 Priority header value:
// 0-7, or 8 when absent or invalid.
func urgencyOf(v string) int {
	for p := range strings.SplitSeq(v, ",") {
		p = strings.TrimSpace(p)
		if len(p) == 3 && p[0] == 'u' && p[1] == '=' && p[2] >= '0' && p[2] <= '7' {
			return int(p[2] - '0')
		}
	}
	return 8
}

// fetchStats reads an upstream's counters.
func fetchStats(c *http.Client, addr string) (upstreamStats, error) {
	var st upstreamStats
	resp, err := c.Get("http://" + addr + statsPath)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, errors.New(resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// floorProxy is the Go floor: httputil.ReverseProxy forwarding
// absolute-form requests where they point, over a keep-alive pool.
func floorProxy(pool int) http.Handler {
	tr := &http.Transport{
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: pool,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
}

// serveChild runs the hidden subcommands "upstream" and "floor" until
// SIGTERM, SIGINT, or their --lifetime passes (so that they stop by
// themselves even if the harness is killed with SIGKILL and Pdeathsig is
// lost).
func serveChild(kind string, args []string) int {
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	delay := fs.Duration("delay", 0, "upstream: service time of each request")
	holdBulk := fs.Duration("hold-bulk", 0, "upstream: hold requests of urgency 5-7 this long")
	pool := fs.Int("pool", 256, "floor: idle keep-alive connections per upstream host")
	lifetime := fs.Duration("lifetime", 30*time.Minute, "exit after this long")
	tlsCert := fs.String("tls-cert", "", "upstream: serve HTTPS (HTTP/1.1) with a new self-signed certificate for 127.0.0.1, written to this PEM file before listening")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var h http.Handler
	switch kind {
	case "upstream":
		h = &upstream{delay: *delay, holdBulk: *holdBulk}
	case "floor":
		h = floorProxy(*pool)
	}
	// The certificate file exists before the port answers: the harness
	// reads it once it can connect.
	var tlsConf *tls.Config
	if *tlsCert != "" {
		var err error
		if tlsConf, err = upstreamTLSConfig(*tlsCert); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(*lifetime):
	}
	_ = srv.Close()
	return 0
}
