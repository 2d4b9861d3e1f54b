package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/proxyd/proxyd/bench/peers"
)

// env is what every scenario shares: where things are and how to start
// them.
type env struct {
	self   string // this binary, re-executed for the upstream and the floor
	root   string // the module root (proxyd's source tree)
	dir    string // this run's private directory
	proxyd string // the proxyd binary
	pprof  string // where profiles go; "" when not profiling
	peers  map[string]string
	pool   int // idle keep-alive connections to the upstream, everywhere
	// fdLimit is RLIMIT_NOFILE, for the harness and every child.
	fdLimit int
	// noisyRetries is how many times an open-loop run is made again when
	// the host was noisy during it.
	noisyRetries int
	ctl          *http.Client
	rep          *reporter
	logw         io.Writer
	seq          atomic.Int64
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.logw, "proxybench: "+format+"\n", args...)
}

// subdir makes a fresh directory for one child, writable by the users the
// peers drop privileges to (squid runs as "proxy", nginx's workers as
// "www-data" when started as root).
func (e *env) subdir(name string) (string, error) {
	d := filepath.Join(e.dir, fmt.Sprintf("%s-%d", name, e.seq.Add(1)))
	if err := os.Mkdir(d, 0o777); err != nil {
		return "", err
	}
	return d, os.Chmod(d, 0o777) // past the umask
}

// maxOutstanding caps an open loop's outstanding requests (one connection
// each) within the harness's file descriptors.
func (e *env) maxOutstanding() int { return max(100, e.fdLimit-2000) }

// server is a started child with the address it serves on.
type server struct {
	*proc
	addr string
}

// startUpstream starts an upstream child answering after delay.
func (e *env) startUpstream(delay time.Duration) (*server, error) {
	return e.startUpstreamArgs("--delay", delay.String())
}

// startUpstreamArgs starts an upstream child with extra flags.
func (e *env) startUpstreamArgs(args ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc("upstream", append([]string{e.self, "upstream", "--listen", addr}, args...))
	if err != nil {
		return nil, err
	}
	if err := p.waitTCP(addr, 10*time.Second); err != nil {
		return nil, err
	}
	return &server{p, addr}, nil
}

// startFloor starts the Go floor, httputil.ReverseProxy as a forward proxy.
func (e *env) startFloor() (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc("go-floor", []string{e.self, "floor", "--listen", addr, "--pool", fmt.Sprint(e.pool)})
	if err != nil {
		return nil, err
	}
	if err := p.waitTCP(addr, 10*time.Second); err != nil {
		return nil, err
	}
	return &server{p, addr}, nil
}

// proxydConf is the part of proxyd's configuration a scenario sets; the
// rest keeps proxyd's defaults, except the log level (warn: no access log
// line per request) and the upstream pool (e.pool, as every peer's).
type proxydConf struct {
	Rate        float64
	Burst       int // 0: the default (10)
	Concurrency int
	QueueSize   int           // 0: the default (10000)
	MaxWait     time.Duration // 0: the default (30s)
	Upstream    string        // gateway route "/" goes here
	TLS         *proxydTLS    // nil: no tls section (every CONNECT spliced)
	// Store is limits.store: "" (memory, the default) or "redis", with
	// RedisURL and RedisPrefix (redis.url, redis.key_prefix:
	// docs/configuration.md, "Shared quota: `limits.store`, `redis`").
	Store, RedisURL, RedisPrefix string
	// SentinelMaster and SentinelAddrs are redis.sentinel.master and
	// redis.sentinel.addrs, instead of RedisURL (docs/shared-quota.md,
	// "Highly available Redis").
	SentinelMaster string
	SentinelAddrs  []string
	// Hosts are per-destination rules (docs/configuration.md, "Per-
	// destination limits: `hosts`"); only match, rate and quotas are
	// written.
	Hosts []proxydHost
}

// proxydHost is one hosts rule with its per-window quotas.
type proxydHost struct {
	Match  string
	Rate   float64 // 0: none
	Quotas []proxydQuota
}

// proxydQuota is one {limit, per} quota in requests.
type proxydQuota struct {
	Limit int
	Per   time.Duration
}

// proxydTLS is proxyd's tls section (docs/configuration.md, "TLS
// interception: `tls`"): the hosts whose CONNECT tunnels it decrypts, its
// signing CA, and the upstream's certificate.
type proxydTLS struct {
	Intercept     []string
	CACert, CAKey string
	UpstreamCA    string
}

// proxydServer is a running proxyd.
type proxydServer struct {
	*proc
	addr, admin, pprof string
}

// buildProxyd builds proxyd from the tree into e.dir. With profiling on,
// a file added through -overlay (the tree is not touched) serves
// net/http/pprof on the address in $PROXYBENCH_PPROF.
func (e *env) buildProxyd(ctx context.Context) error {
	out := filepath.Join(e.dir, "proxyd")
	args := []string{"build", "-o", out}
	if e.pprof != "" {
		src := filepath.Join(e.dir, "pprof_overlay.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return err
		}
		ov, err := json.Marshal(map[string]map[string]string{"Replace": {
			filepath.Join(e.root, "cmd", "proxyd", "zz_proxybench_pprof.go"): src,
		}})
		if err != nil {
			return err
		}
		ovPath := filepath.Join(e.dir, "overlay.json")
		if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
			return err
		}
		args = append(args, "-overlay", ovPath)
	}
	args = append(args, "./cmd/proxyd")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = e.root
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/proxyd: %w\n%s", err, buf.String())
	}
	e.proxyd = out
	return nil
}

// pprofOverlay is added to package main of cmd/proxyd when profiling.
const pprofOverlay = `package main

import (
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

// Added by proxybench --pprof through go build -overlay; not in the tree.
func init() {
	addr := os.Getenv("PROXYBENCH_PPROF")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return
	}
	go http.Serve(ln, http.DefaultServeMux)
}
`

// startProxyd writes a configuration and starts proxyd on it.
func (e *env) startProxyd(c proxydConf) (*proxydServer, error) {
	dir, err := e.subdir("proxyd")
	if err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		// Each free port's listener is closed before the next is asked
		// for: the kernel may hand the same one out twice.
		for ports[i] == 0 || slices.Contains(ports[:i], ports[i]) {
			if ports[i], err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	s := &proxydServer{
		addr:  fmt.Sprintf("127.0.0.1:%d", ports[0]),
		admin: fmt.Sprintf("127.0.0.1:%d", ports[1]),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by proxybench.\nlisten: %s\nadmin:\n  listen: %s\n", s.addr, s.admin)
	fmt.Fprintf(&b, "limits:\n  rate: %g\n  concurrency: %d\n", c.Rate, c.Concurrency)
	if c.Burst > 0 {
		fmt.Fprintf(&b, "  burst: %d\n", c.Burst)
	}
	if c.QueueSize > 0 {
		fmt.Fprintf(&b, "  queue_size: %d\n", c.QueueSize)
	}
	if c.MaxWait > 0 {
		fmt.Fprintf(&b, "  max_wait: %s\n", c.MaxWait)
	}
	if c.Store != "" {
		fmt.Fprintf(&b, "  store: %s\n", c.Store)
	}
	if c.RedisURL != "" || c.SentinelMaster != "" {
		b.WriteString("redis:\n")
		if c.RedisURL != "" {
			fmt.Fprintf(&b, "  url: %q\n", c.RedisURL)
		}
		if c.SentinelMaster != "" {
			fmt.Fprintf(&b, "  sentinel:\n    master: %q\n    addrs: [%s]\n", c.SentinelMaster, quoteList(c.SentinelAddrs))
		}
		if c.RedisPrefix != "" {
			fmt.Fprintf(&b, "  key_prefix: %s\n", c.RedisPrefix)
		}
	}
	fmt.Fprintf(&b, "upstream:\n  max_idle_conns_per_host: %d\n", e.pool)
	if len(c.Hosts) > 0 {
		b.WriteString("hosts:\n")
		for _, h := range c.Hosts {
			fmt.Fprintf(&b, "  - match: %q\n", h.Match)
			if h.Rate > 0 {
				fmt.Fprintf(&b, "    rate: %g\n", h.Rate)
			}
			b.WriteString("    quotas:\n")
			for _, q := range h.Quotas {
				fmt.Fprintf(&b, "      - {limit: %d, per: %s}\n", q.Limit, q.Per)
			}
		}
	}
	if c.Upstream != "" {
		fmt.Fprintf(&b, "routes:\n  - prefix: /\n    upstream: http://%s\n", c.Upstream)
	}
	if t := c.TLS; t != nil {
		b.WriteString("tls:\n  intercept: [")
		for i, h := range t.Intercept {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", h)
		}
		fmt.Fprintf(&b, "]\n  ca_cert: %q\n  ca_key: %q\n", t.CACert, t.CAKey)
		if t.UpstreamCA != "" {
			fmt.Fprintf(&b, "  upstream_ca: %q\n", t.UpstreamCA)
		}
	}
	// The upstreams are on loopback, which the egress policy denies by
	// default; CONNECT scenarios use their ports.
	b.WriteString("egress:\n  allow: [127.0.0.1]\n  connect_ports: []\n")
	b.WriteString("log:\n  level: warn\n")
	conf := filepath.Join(dir, "proxyd.yaml")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	var extra []string
	if e.pprof != "" {
		s.pprof = fmt.Sprintf("127.0.0.1:%d", ports[2])
		extra = append(extra, "PROXYBENCH_PPROF="+s.pprof)
	}
	p, err := startProc("proxyd", []string{e.proxyd, "--config", conf}, extra...)
	if err != nil {
		return nil, err
	}
	s.proc = p
	if err := p.waitHTTP("http://"+s.admin+"/healthz", 15*time.Second); err != nil {
		return nil, err
	}
	if err := p.waitTCP(s.addr, 5*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// patchLimits sends PATCH /api/v1/limits to proxyd's admin listener.
func (e *env) patchLimits(s *proxydServer, body string) error {
	req, err := http.NewRequest(http.MethodPatch, "http://"+s.admin+"/api/v1/limits", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.ctl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PATCH /api/v1/limits %s: %s: %s", body, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// queueDepth reads GET /api/v1/queue's depth.
func (e *env) queueDepth(s *proxydServer) (int, error) {
	resp, err := e.ctl.Get("http://" + s.admin + "/api/v1/queue")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var q struct {
		Depth int `json:"depth"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
		return 0, err
	}
	return q.Depth, nil
}

// peerArgs is how each peer is run in the foreground on a configuration
// file, with dir as its private directory.
func peerArgs(name, bin, conf, dir string) []string {
	switch name {
	case "tinyproxy":
		return []string{bin, "-d", "-c", conf}
	case "squid":
		return []string{bin, "-N", "-f", conf}
	case "haproxy":
		return []string{bin, "-db", "-f", conf}
	case "nginx":
		return []string{bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log")}
	}
	return nil
}

// startPeer renders template tmpl for peer name and starts the peer on it.
func (e *env) startPeer(name, tmpl string, d peers.Data) (*server, error) {
	bin, ok := e.peers[name]
	if !ok {
		return nil, fmt.Errorf("%s is not installed", name)
	}
	dir, err := e.subdir(name)
	if err != nil {
		return nil, err
	}
	if d.Port, err = freePort(); err != nil {
		return nil, err
	}
	d.Dir = dir
	if d.Pool == 0 {
		d.Pool = e.pool
	}
	d.FDLimit = e.fdLimit
	conf, err := peers.Render(tmpl, d)
	if err != nil {
		return nil, err
	}
	p, err := startProc(name, peerArgs(name, bin, conf, dir))
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", d.Port)
	if err := p.waitTCP(addr, 20*time.Second); err != nil {
		return nil, err
	}
	return &server{p, addr}, nil
}

// knownPeers are the peers the harness knows how to run, in report order.
var knownPeers = []string{"tinyproxy", "squid", "haproxy", "nginx"}

// findPeer finds a peer's binary on PATH or in the sbin directories that
// Debian installs daemons to (not always on a user's PATH).
func findPeer(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// peerVersion asks a peer binary for its version line.
func peerVersion(ctx context.Context, name, bin string) string {
	flagFor := map[string]string{"tinyproxy": "-v", "squid": "-v", "haproxy": "-v", "nginx": "-v"}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, flagFor[name]).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}
