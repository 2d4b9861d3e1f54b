package main

// The "arrivals" upstream of the shared scenario: it answers like the
// upstream and records when each request arrived and its urgency, so that
// the harness can count admissions in any window, not only between two
// reads of a counter.

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// arrivalsPath answers the arrivals recorded so far (and forgets them with
// ?reset=1); requests to it are not recorded.
const arrivalsPath = "/__proxybench/arrivals"

// arrival is one request seen by the arrivals upstream.
type arrivalRec struct {
	at      time.Time
	urgency int // 0-7, 8 = no Priority header
}

// arrivalsUpstream records every request and answers upstreamBody at once.
type arrivalsUpstream struct {
	mu   sync.Mutex
	recs []arrivalRec
}

func (u *arrivalsUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == arrivalsPath {
		u.mu.Lock()
		recs := u.recs
		if r.URL.Query().Get("reset") == "1" {
			u.recs = nil
		}
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(encodeArrivals(recs))
		return
	}
	rec := arrivalRec{at: time.Now(), urgency: urgencyOf(r.Header.Get("Priority"))}
	u.mu.Lock()
	u.recs = append(u.recs, rec)
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(upstreamBody)))
	_, _ = w.Write(upstreamBody)
}

// encodeArrivals is 9 bytes an arrival: Unix nanoseconds (big-endian) and
// the urgency.
func encodeArrivals(recs []arrivalRec) []byte {
	b := make([]byte, 0, 9*len(recs))
	for _, r := range recs {
		b = binary.BigEndian.AppendUint64(b, uint64(r.at.UnixNano()))
		b = append(b, byte(r.urgency))
	}
	return b
}

func decodeArrivals(b []byte) ([]arrivalRec, error) {
	if len(b)%9 != 0 {
		return nil, fmt.Errorf("arrivals: %d bytes, not a multiple of 9", len(b))
	}
	out := make([]arrivalRec, 0, len(b)/9)
	for ; len(b) > 0; b = b[9:] {
		out = append(out, arrivalRec{at: time.Unix(0, int64(binary.BigEndian.Uint64(b))), urgency: int(b[8])})
	}
	return out, nil
}

// fetchArrivals reads (and, with reset, forgets) an arrivals upstream's
// records, in arrival order.
func fetchArrivals(c *http.Client, addr string, reset bool) ([]arrivalRec, error) {
	u := "http://" + addr + arrivalsPath
	if reset {
		u += "?reset=1"
	}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	recs, err := decodeArrivals(b)
	// Each request takes its time before the lock: the order can be off
	// by a few microseconds.
	slices.SortFunc(recs, func(a, b arrivalRec) int { return a.at.Compare(b.at) })
	return recs, err
}

// serveArrivals runs the hidden subcommand "arrivals" until SIGTERM,
// SIGINT or --lifetime.
func serveArrivals(args []string) int {
	fs := flag.NewFlagSet("arrivals", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	lifetime := fs.Duration("lifetime", 30*time.Minute, "exit after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{
		Handler:           &arrivalsUpstream{},
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

// windowStats counts arrivals (sorted by time) within [from, to): the
// total, the least and most in any whole second from from, and the most in
// any window of length win anywhere in the records.
type windowStats struct {
	total            int
	secMin, secMax   int
	maxWindow        int
	maxWindowStarted time.Time
}

func countWindows(recs []arrivalRec, from, to time.Time, win time.Duration) windowStats {
	st := windowStats{secMin: -1}
	secs := int(to.Sub(from) / time.Second)
	perSec := make([]int, max(secs, 0))
	for _, r := range recs {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		st.total++
		if i := int(r.at.Sub(from) / time.Second); i < secs {
			perSec[i]++
		}
	}
	for _, n := range perSec {
		if st.secMin < 0 || n < st.secMin {
			st.secMin = n
		}
		st.secMax = max(st.secMax, n)
	}
	st.secMin = max(st.secMin, 0)
	// Sliding window over every arrival: the most that fall in
	// [recs[i].at, recs[i].at+win).
	j := 0
	for i := range recs {
		for j < len(recs) && recs[j].at.Sub(recs[i].at) < win {
			j++
		}
		if n := j - i; n > st.maxWindow {
			st.maxWindow, st.maxWindowStarted = n, recs[i].at
		}
	}
	return st
}
