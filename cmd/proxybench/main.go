// Command proxybench measures proxyd side by side with the proxies people
// use instead (tinyproxy, squid, haproxy, nginx, and the Go standard
// library's httputil.ReverseProxy as the "Go floor"), in one run on one
// machine, and prints a Markdown report plus one JSON line per measurement.
//
//	go run ./cmd/proxybench --scenario all
//	go run ./cmd/proxybench --scenario throughput --peers squid,nginx
//	bash bench/install-peers.sh   # the peers, from Debian packages
//
// It builds proxyd from the tree, starts an upstream, proxyd and every
// installed peer as its own children on 127.0.0.1, runs each scenario for a
// bounded time and stops everything it started. Absolute figures on a small
// shared machine swing between runs; the ratios within one run are what to
// compare. See docs/performance.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "upstream" || os.Args[1] == "floor") {
		os.Exit(serveChild(os.Args[1], os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "arrivals" {
		os.Exit(serveArrivals(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "quota-origin" {
		os.Exit(serveQuotaOrigin(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "llm-origin" {
		os.Exit(serveLLMOrigin(os.Args[2:]))
	}
	// The load generator holds thousands of connections and goroutines;
	// collecting garbage less often leaves more CPU to what it measures.
	debug.SetGCPercent(400)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// scenarios in the order they run.
var scenarios = []string{"throughput", "tls", "rate", "priority", "scale", "shared"}

// longScenarios run only when named: quota and llm take their
// --quota-duration and --llm-duration plus a window, more than the rest
// of "all" together.
var longScenarios = []string{"quota", "llm"}

// options are the command line.
type options struct {
	scenarios    []string
	peers        []string // peers asked for (installed or not)
	proxyd       string
	out          string
	pprof        string
	timeout      time.Duration
	pool         int
	args         []string // as given, for the report
	noisyRetries int
	selfProfile  string

	tp     throughputOpts
	rate   rateOpts
	prio   priorityOpts
	scale  []int
	shared sharedOpts
	quota  quotaOpts
	llm    llmOpts
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("proxybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenario", "all", "scenarios to run, comma-separated: throughput, tls, rate, priority, scale, shared, quota, llm, or all (all but quota and llm)")
	peerList := fs.String("peers", "all", "peers to run, comma-separated: tinyproxy, squid, haproxy, nginx, all or none (the Go floor always runs)")
	o := &options{args: args}
	fs.StringVar(&o.proxyd, "proxyd", "", "a proxyd binary to measure (default: build ./cmd/proxyd from the tree)")
	fs.StringVar(&o.out, "out", "", "directory to write report.md and results.jsonl to, besides standard output")
	fs.StringVar(&o.pprof, "pprof", "", "directory for proxyd's CPU, allocation and heap profiles (builds proxyd with net/http/pprof added through -overlay)")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "stop everything after this long, whatever is running")
	fs.IntVar(&o.pool, "pool", 256, "idle keep-alive connections to the upstream, for proxyd and every peer")
	fs.StringVar(&o.selfProfile, "self-cpuprofile", "", "write the harness's own CPU profile to this file (to check that the load generator is not the bottleneck)")
	fs.IntVar(&o.noisyRetries, "noisy-retries", 0, "rate and priority: run an open-loop measurement again, up to this many times, when the host was noisy during it")
	conc := fs.String("c", "32,128", "throughput and tls: closed-loop concurrencies")
	fs.IntVar(&o.tp.rounds, "rounds", 5, "throughput and tls: rounds over all targets")
	fs.DurationVar(&o.tp.duration, "duration", 1500*time.Millisecond, "throughput and tls: length of one target's run in a round")
	fs.DurationVar(&o.tp.warmup, "warmup", 500*time.Millisecond, "throughput and tls: warm-up run of each target before the rounds")
	limits := fs.String("limits", "100,1000,10000", "rate: limits to test, per second")
	fs.DurationVar(&o.rate.duration, "rate-duration", 10*time.Second, "rate and priority: length of each open-loop run")
	fs.DurationVar(&o.rate.skip, "rate-skip", time.Second, "rate and priority: start of each run left out of the admitted rate")
	scale := fs.String("scale", "10000,100000", "scale: waiting requests to hold")
	o.quota = defaultQuotaOpts()
	fs.DurationVar(&o.quota.duration, "quota-duration", o.quota.duration, "quota: length of the offered load (at least one window, 1m)")
	o.llm = defaultLLMOpts()
	fs.DurationVar(&o.llm.duration, "llm-duration", o.llm.duration, "llm: length of the offered load (at least one window, 1m)")
	quick := fs.Bool("quick", false, "a short smoke run: 2 rounds of 0.5s, 3s open loops, limits 100 and 1000, 2000 waiting, shared runs of 4s and 3s and a 6s failover, quota and llm for 70s (flags given explicitly still win)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("rounds", func() { o.tp.rounds = 2 })
		def("duration", func() { o.tp.duration = 500 * time.Millisecond })
		def("warmup", func() { o.tp.warmup = 200 * time.Millisecond })
		def("rate-duration", func() { o.rate.duration = 3 * time.Second })
		def("limits", func() { *limits = "100,1000" })
		def("scale", func() { *scale = "2000" })
		def("quota-duration", func() { o.quota.duration = 70 * time.Second })
		def("llm-duration", func() { o.llm.duration = 70 * time.Second })
	}
	o.shared = defaultSharedOpts()
	if *quick {
		o.shared.quick()
	}
	var err error
	if *scen == "all" {
		o.scenarios = slices.Clone(scenarios)
	} else if o.scenarios, err = pickList(*scen, append(slices.Clone(scenarios), longScenarios...), "scenario"); err != nil {
		return nil, err
	}
	if o.quota.duration < o.quota.per {
		return nil, fmt.Errorf("--quota-duration %v: at least one window (%v) is needed to measure the quota used", o.quota.duration, o.quota.per)
	}
	if o.llm.duration < o.llm.per {
		return nil, fmt.Errorf("--llm-duration %v: at least one window (%v) is needed to measure the tokens used", o.llm.duration, o.llm.per)
	}
	o.shared.explicit = *scen != "all" && slices.Contains(o.scenarios, "shared")
	if o.peers, err = pickList(*peerList, knownPeers, "peer"); err != nil {
		return nil, err
	}
	if o.tp.conc, err = intList(*conc, "c"); err != nil {
		return nil, err
	}
	if o.rate.limits, err = intList(*limits, "limits"); err != nil {
		return nil, err
	}
	if o.scale, err = intList(*scale, "scale"); err != nil {
		return nil, err
	}
	if o.tp.rounds < 1 || o.tp.duration <= 0 || o.rate.duration <= o.rate.skip || o.timeout <= 0 || o.pool < 1 {
		return nil, errors.New("--rounds, --duration, --timeout and --pool must be positive, and --rate-duration longer than --rate-skip")
	}
	o.prio = priorityOpts{limit: 1000, urgent: 400, bulk: 1600, duration: o.rate.duration, skip: o.rate.skip, serviceTime: 10 * time.Millisecond}
	return o, nil
}

// pickList parses a comma-separated choice among known, with "all" and
// "none"; the result keeps known's order.
func pickList(s string, known []string, what string) ([]string, error) {
	switch s {
	case "all":
		return slices.Clone(known), nil
	case "none", "":
		return nil, nil
	}
	want := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(known, f) {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, f, strings.Join(known, ", "))
		}
		want[f] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

func intList(s, what string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--%s: %q is not a positive integer", what, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "proxybench:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(stderr, "proxybench: %v: stopping\n", s)
			cancel()
		case <-ctx.Done():
		}
	}()
	// Whatever happens, the children go with us. A watchdog ends the run
	// if a scenario ignores the deadline.
	defer stopAll()
	go func() {
		<-ctx.Done()
		time.Sleep(30 * time.Second)
		fmt.Fprintln(stderr, "proxybench: still running 30s after the deadline: killing the children and exiting")
		stopAll()
		os.Exit(3)
	}()
	if o.selfProfile != "" {
		f, err := os.Create(o.selfProfile)
		if err != nil {
			fmt.Fprintln(stderr, "proxybench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "proxybench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := runAll(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "proxybench:", err)
		return 1
	}
	return 0
}

func runAll(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	began := time.Now()
	e := &env{pool: o.pool, noisyRetries: o.noisyRetries, logw: stderr, peers: map[string]string{}, rep: &reporter{jsonOut: []io.Writer{stdout}},
		ctl: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}}
	var err error
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	if e.root, err = moduleRoot(); err != nil && o.proxyd == "" {
		return fmt.Errorf("finding proxyd's source tree (run from inside it, or pass --proxyd): %w", err)
	}
	if e.dir, err = os.MkdirTemp("", "proxybench-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.dir)
	if err := os.Chmod(e.dir, 0o755); err != nil { // peers that drop privileges reach their subdirectories
		return err
	}
	if o.pprof != "" {
		if e.pprof, err = filepath.Abs(o.pprof); err != nil {
			return err
		}
		if err := os.MkdirAll(e.pprof, 0o755); err != nil {
			return err
		}
	}
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(o.out, "results.jsonl"))
		if err != nil {
			return err
		}
		defer f.Close()
		e.rep.jsonOut = append(e.rep.jsonOut, f)
	}
	fdLimit, fdWhy := raiseNofile(1 << 20)
	e.logf("RLIMIT_NOFILE %d%s", fdLimit, fdWhy)
	e.fdLimit = int(fdLimit)

	versions := map[string]string{}
	for _, name := range o.peers {
		bin, ok := findPeer(name)
		if !ok {
			msg := fmt.Sprintf("%s is not installed: skipped (bash bench/install-peers.sh installs it)", name)
			e.logf("%s", msg)
			e.rep.note("%s", msg)
			continue
		}
		e.peers[name] = bin
		versions[name] = peerVersion(ctx, name, bin)
	}
	if o.proxyd != "" {
		e.proxyd = o.proxyd
		if o.pprof != "" {
			e.logf("--pprof needs proxyd built from the tree; no profiles with --proxyd")
			e.pprof = ""
		}
	} else {
		e.logf("building proxyd from %s", e.root)
		if err := e.buildProxyd(ctx); err != nil {
			return err
		}
	}

	for _, s := range o.scenarios {
		t0 := time.Now()
		e.logf("scenario %s", s)
		if err := settle(ctx); err != nil {
			return err
		}
		var err error
		switch s {
		case "throughput":
			err = runThroughput(ctx, e, o.tp)
		case "tls":
			err = runTLS(ctx, e, o.tp)
		case "rate":
			err = runRate(ctx, e, o.rate)
		case "priority":
			err = runPriority(ctx, e, o.prio)
		case "scale":
			err = runScale(ctx, e, scaleOpts{counts: o.scale, fdLimit: fdLimit, fdWhy: fdWhy})
		case "shared":
			err = runShared(ctx, e, o.shared)
		case "quota":
			err = runQuota(ctx, e, o.quota)
		case "llm":
			err = runLLM(ctx, e, o.llm)
		}
		stopAll()
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("scenario %s: stopped at --timeout %v: %w", s, o.timeout, err)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("scenario %s: interrupted", s)
			}
			return fmt.Errorf("scenario %s: %w", s, err)
		}
		e.logf("scenario %s took %v", s, time.Since(t0).Round(time.Second))
	}
	header := machineHeader(ctx, e, versions, o, time.Since(began))
	md := e.rep.markdown(header)
	fmt.Fprint(stdout, "\n"+md)
	if o.out != "" {
		if err := os.WriteFile(filepath.Join(o.out, "report.md"), []byte(md), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// moduleRoot finds the directory of the go.mod that holds cmd/proxyd.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	root := filepath.Dir(mod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "proxyd")); err != nil {
		return "", fmt.Errorf("%s has no cmd/proxyd", root)
	}
	return root, nil
}

// machineHeader describes the run: when, where, with what.
func machineHeader(ctx context.Context, e *env, versions map[string]string, o *options, took time.Duration) string {
	var b strings.Builder
	b.WriteString("## proxybench report\n\n")
	fmt.Fprintf(&b, "- date: %s, run time %v\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second))
	fmt.Fprintf(&b, "- machine: %s, %d cores, %s RAM, Linux %s\n", cpuModel(), runtime.NumCPU(), memTotal(), kernel())
	fmt.Fprintf(&b, "- Go %s; proxyd %s\n", strings.TrimPrefix(runtime.Version(), "go"), proxydRev(ctx, e.root))
	var vs []string
	for _, name := range knownPeers {
		if v, ok := versions[name]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) > 0 {
		fmt.Fprintf(&b, "- peers: %s\n", strings.Join(vs, "; "))
	}
	fmt.Fprintf(&b, "- command: `go run ./cmd/proxybench %s`\n\n", strings.Join(o.args, " "))
	return b.String()
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
				return fmt.Sprintf("%.0f GiB", kb/(1<<20))
			}
		}
	}
	return "?"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func proxydRev(ctx context.Context, root string) string {
	if root == "" {
		return "(prebuilt)"
	}
	cmd := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty")
	var out bytes.Buffer
	cmd.Stdout = &out
	if cmd.Run() != nil {
		return "(not a git checkout)"
	}
	return "commit " + strings.TrimSpace(out.String())
}
