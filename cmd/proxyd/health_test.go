package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/testnet"
)

// oneLine fails unless s is exactly one newline-terminated line.
func oneLine(t *testing.T, what, s string) {
	t.Helper()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("%s is not one line: %q", what, s)
	}
}

func TestHealthFindsTheAdminListener(t *testing.T) {
	p := startProxyd(t)
	_, port, _ := net.SplitHostPort(p.admin)
	cfg := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, cfg, "admin:\n  listen: "+p.admin+"\n")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string // in stdout
	}{
		{"--admin-url", nil, []string{"--admin-url", p.admin}, "healthy: http://" + p.admin + "/healthz answered 200 OK (ok)"},
		{"--admin-url with scheme", nil, []string{"--admin-url", "http://" + p.admin + "/"}, "http://" + p.admin + "/healthz"},
		{"--admin-listen", nil, []string{"--admin-listen", p.admin}, "http://" + p.admin + "/healthz"},
		{"environment", []string{"PROXYD_ADMIN_LISTEN=" + p.admin}, nil, "http://" + p.admin + "/healthz"},
		// The image's admin address when exposed: a wildcard, dialled on loopback.
		{"wildcard in environment", []string{"PROXYD_ADMIN_LISTEN=0.0.0.0:" + port}, nil, "http://127.0.0.1:" + port + "/healthz"},
		{"empty host in environment", []string{"PROXYD_ADMIN_LISTEN=:" + port}, nil, "http://127.0.0.1:" + port + "/healthz"},
		{"config file", nil, []string{"--config", cfg}, "http://" + p.admin + "/healthz"},
		// A token in the environment is not needed and does no harm.
		{"token set", []string{"PROXYD_ADMIN_LISTEN=" + p.admin, "PROXYD_ADMIN_TOKEN=s3cret"}, nil, "healthy:"},
		{"ready", nil, []string{"--ready", "--admin-url", p.admin}, "ready: http://" + p.admin + "/readyz answered 200 OK (ready)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, tc.env, append([]string{"health"}, tc.args...)...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			oneLine(t, "stdout", stdout)
			if !strings.Contains(stdout, tc.want) {
				t.Errorf("stdout %q lacks %q", stdout, tc.want)
			}
		})
	}
}

func TestHealthFailures(t *testing.T) {
	notProxyd := httptest.NewServer(http.NotFoundHandler())
	defer notProxyd.Close()
	hold := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // answers nothing until the client gives up
		case <-r.Context().Done():
		case <-hold:
		}
	}))
	defer silent.Close()
	defer close(hold)
	redirect := httptest.NewServer(http.RedirectHandler("http://example.com/healthz", http.StatusFound))
	defer redirect.Close()
	closed := testnet.FreeAddr(t)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string // in stderr
	}{
		{"connection refused", nil, []string{"--admin-url", closed}, "proxyd: unhealthy: http://" + closed + "/healthz: connection refused"},
		{"refused, from environment", []string{"PROXYD_ADMIN_LISTEN=" + closed}, nil, "connection refused"},
		{"not proxyd", nil, []string{"--admin-url", notProxyd.URL}, "unhealthy: " + notProxyd.URL + "/healthz answered 404 Not Found (404 page not found)"},
		{"not ready", nil, []string{"--ready", "--admin-url", notProxyd.URL}, "not ready: " + notProxyd.URL + "/readyz answered 404"},
		{"timeout", nil, []string{"--admin-url", silent.URL, "--timeout", "200ms"}, "no answer within 200ms"},
		{"redirect not followed", nil, []string{"--admin-url", redirect.URL}, "answered 302 Found"},
		// Usage errors exit 1 too: Docker reserves 2 for health checks.
		{"bad URL", nil, []string{"--admin-url", "ftp://" + closed}, "the scheme must be http or https"},
		{"both addresses", nil, []string{"--admin-url", closed, "--admin-listen", closed}, "both set"},
		{"bad timeout", nil, []string{"--admin-url", closed, "--timeout", "0s"}, "--timeout"},
		{"unknown flag", nil, []string{"--bogus"}, "unknown flag: --bogus"},
		{"argument", nil, []string{"now"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, stderr := cli(t, tc.env, append([]string{"health"}, tc.args...)...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			oneLine(t, "stderr", stderr)
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q lacks %q", stderr, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestHealthDefaultAddress: without flags, environment or file, health
// probes the built-in admin address.
func TestHealthDefaultAddress(t *testing.T) {
	_, stdout, stderr := cli(t, nil, "health", "--timeout", "500ms")
	if !strings.Contains(stdout+stderr, "http://127.0.0.1:9090/healthz") {
		t.Errorf("output %q %q does not name the default address", stdout, stderr)
	}
}

// TestHealthWhileDraining: after SIGTERM, /readyz is 503 and health
// --ready fails while plain health (liveness) still passes, so that an
// orchestrator stops sending traffic without restarting the container.
func TestHealthWhileDraining(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	defer up.Close()
	cfg := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, cfg, "shutdown_timeout: 20s\n")
	p := startProxyd(t, "--config", cfg)
	c := p.client()
	defer c.CloseIdleConnections()
	inFlight := make(chan int, 1)
	go func() {
		resp, err := c.Get(up.URL + "/slow")
		if err != nil {
			inFlight <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		inFlight <- resp.StatusCode
	}()
	<-arrived

	p.sig <- syscall.SIGTERM
	waitStatus(t, "http://"+p.admin+"/readyz", http.StatusServiceUnavailable)
	code, stdout, stderr := cli(t, nil, "health", "--ready", "--admin-url", p.admin)
	if code != 1 || !strings.Contains(stderr, "not ready: http://"+p.admin+"/readyz answered 503 Service Unavailable (draining)") {
		t.Errorf("health --ready while draining: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := cli(t, nil, "health", "--admin-url", p.admin); code != 0 {
		t.Errorf("health (liveness) while draining: exit %d, stderr %q", code, stderr)
	}

	close(release)
	if status := <-inFlight; status != http.StatusOK {
		t.Errorf("in-flight request: %d", status)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := cli(t, nil, "version")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "proxyd ") || !strings.HasPrefix(lines[1], "commit: ") ||
		!strings.HasPrefix(lines[2], "built:  ") || lines[3] != "go:     "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version output:\n%s", stdout)
	}

	if code, _, stderr := cli(t, nil, "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, stderr %q", code, stderr)
	}

	// What -ldflags -X sets is printed as given.
	saved := [3]string{version, commit, date}
	t.Cleanup(func() { version, commit, date = saved[0], saved[1], saved[2] })
	version, commit, date = "1.2.3", "0123abc", "2026-01-02T03:04:05Z"
	_, stdout, _ = cli(t, nil, "version")
	if want := "proxyd 1.2.3\ncommit: 0123abc\nbuilt:  2026-01-02T03:04:05Z\n"; !strings.HasPrefix(stdout, want) {
		t.Errorf("stamped version output:\n%s\nwant it to start with:\n%s", stdout, want)
	}
}

func TestBuildOf(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/proxyd/proxyd", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef"},
			{Key: "vcs.time", Value: "2026-03-04T05:06:07Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	devel := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	for _, tc := range []struct {
		name                string
		ver, rev, when      string
		bi                  *debug.BuildInfo
		wantV, wantC, wantD string
	}{
		{"stamped wins", "1.2.3", "abc", "2026-01-01T00:00:00Z", vcs, "1.2.3", "abc", "2026-01-01T00:00:00Z"},
		{"from build info", "", "", "", vcs, "v1.4.0", "0123456789abcdef-dirty", "2026-03-04T05:06:07Z"},
		{"nothing known", "", "", "", devel, "dev", "unknown", "unknown"},
		{"no build info", "", "", "", nil, "dev", "unknown", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildOf(tc.ver, tc.rev, tc.when, tc.bi)
			if b.Version != tc.wantV || b.Commit != tc.wantC || b.Date != tc.wantD {
				t.Errorf("got %+v, want version %q commit %q date %q", b, tc.wantV, tc.wantC, tc.wantD)
			}
			if b.Go == "" || b.Platform != runtime.GOOS+"/"+runtime.GOARCH {
				t.Errorf("go %q platform %q", b.Go, b.Platform)
			}
		})
	}
}

// TestImageEnvironment runs the configuration the container image relies
// on, taken from the Dockerfile's ENV lines: it is valid, it wins over a
// file's listen key (and an empty value gives the file back its say), it
// serves, and "proxyd health" finds the admin listener through the same
// environment.
func TestImageEnvironment(t *testing.T) {
	env := dockerfileEnv(t)
	if lookupEnv(env, "PROXYD_LISTEN") != "0.0.0.0:8080" {
		t.Fatalf("Dockerfile ENV %q: want PROXYD_LISTEN=0.0.0.0:8080", env)
	}
	if code, _, stderr := cli(t, env, "check-config"); code != 0 {
		t.Fatalf("check-config with the image's environment: exit %d: %s", code, stderr)
	}
	exposed := append(env, "PROXYD_ADMIN_LISTEN=0.0.0.0:9090", "PROXYD_ADMIN_TOKEN=s3cret")
	if code, _, stderr := cli(t, exposed, "check-config"); code != 0 {
		t.Fatalf("check-config with the admin listener exposed: exit %d: %s", code, stderr)
	}

	file := writeConfig(t, "listen: 127.0.0.1:7000\n")
	cfg, err := loadConfig(loadOptions{File: file, Env: env})
	if err != nil || cfg.Listen != "0.0.0.0:8080" {
		t.Errorf("image env over a file's listen: %q, %v", cfg.Listen, err)
	}
	cfg, err = loadConfig(loadOptions{File: file, Env: []string{"PROXYD_LISTEN="}})
	if err != nil || cfg.Listen != "127.0.0.1:7000" {
		t.Errorf("empty PROXYD_LISTEN over a file's listen: %q, %v", cfg.Listen, err)
	}

	// Serve with the image's environment, on free loopback ports.
	serveEnv := []string{"PROXYD_ADMIN_LISTEN=127.0.0.1:0"}
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); name == "PROXYD_LISTEN" {
			kv = "PROXYD_LISTEN=127.0.0.1:0"
		}
		serveEnv = append(serveEnv, kv)
	}
	p := &proc{sig: make(chan os.Signal, 4), log: &logBuffer{}, stdout: &logBuffer{}, code: make(chan int, 1)}
	go func() { p.code <- run(nil, serveEnv, p.stdout, p.log, p.sig) }()
	line := p.log.waitLine(t, "proxyd serving")
	p.proxy, p.admin = line["listen"].(string), line["admin_listen"].(string)
	t.Cleanup(func() { p.stop(t) })
	if code, _, stderr := cli(t, []string{"PROXYD_ADMIN_LISTEN=" + p.admin}, "health"); code != 0 {
		t.Errorf("health with PROXYD_ADMIN_LISTEN: exit %d: %s", code, stderr)
	}
	if code, _, stderr := cli(t, []string{"PROXYD_ADMIN_LISTEN=" + p.admin}, "health", "--ready"); code != 0 {
		t.Errorf("health --ready with PROXYD_ADMIN_LISTEN: exit %d: %s", code, stderr)
	}
}

// TestBinaryAsTheImageBuildsIt builds proxyd the way the Dockerfile does
// (static, trimmed, version stamped with -ldflags -X) and runs the built
// binary's version and health subcommands, as the image's HEALTHCHECK does.
func TestBinaryAsTheImageBuildsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "proxyd")
	build := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -X main.version=9.8.7 -X main.commit=feedbeef -X main.date=2026-05-06T07:08:09Z",
		"-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("proxyd version: %v", err)
	}
	if want := "proxyd 9.8.7\ncommit: feedbeef\nbuilt:  2026-05-06T07:08:09Z\ngo:     go"; !strings.HasPrefix(string(out), want) {
		t.Errorf("proxyd version:\n%s\nwant it to start with:\n%s", out, want)
	}

	p := startProxyd(t)
	health := func(admin string) (int, string) {
		cmd := exec.Command(bin, "health")
		cmd.Env = []string{"PROXYD_ADMIN_LISTEN=" + admin}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := health(p.admin); code != 0 {
		t.Errorf("built binary: health against a running proxyd: exit %d: %s", code, out)
	}
	if code, out := health(testnet.FreeAddr(t)); code != 1 {
		t.Errorf("built binary: health against a closed port: exit %d, want 1: %s", code, out)
	}
}
