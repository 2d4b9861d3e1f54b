package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxyd/proxyd/internal/testnet"
)

// cli runs proxyd with args and env through run, as main would.
func cli(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, env, &out, &errOut, make(chan os.Signal))
	return code, out.String(), errOut.String()
}

// startLimitsProxyd starts a proxyd whose configuration file holds body.
func startLimitsProxyd(t *testing.T, body string) *proc {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, cfg, body)
	return startProxyd(t, "--config", cfg)
}

const limitsYAML = `limits:
  rate: 2.5
  burst: 5
  concurrency: 0
hosts:
  - match: api.example.com
    rate: 10
    burst: 10
    concurrency: 5
  - match: "*.slow.example"
    concurrency: 2
`

func TestLimitsGet(t *testing.T) {
	p := startLimitsProxyd(t, limitsYAML)
	url := "http://" + p.admin

	t.Run("table", func(t *testing.T) {
		code, out, errOut := cli(t, nil, "limits", "get", "--admin-url", url)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		want := `KEY          VALUE
rate         2.5
burst        5
concurrency  0 (unlimited)
queue_size   10000
max_wait     30s

MATCH            RATE  BURST  CONCURRENCY
api.example.com  10    10     5
*.slow.example   -     -      2
`
		if out != want {
			t.Fatalf("table:\n%s\nwant:\n%s", out, want)
		}
	})

	t.Run("json", func(t *testing.T) {
		for _, flag := range []string{"-o", "--output"} {
			code, out, errOut := cli(t, nil, "limits", "get", "--admin-url", url, flag, "json")
			if code != 0 {
				t.Fatalf("%s json: exit %d: %s", flag, code, errOut)
			}
			var got struct {
				Rate        float64 `json:"rate"`
				Burst       int     `json:"burst"`
				Concurrency int     `json:"concurrency"`
				QueueSize   int     `json:"queue_size"`
				MaxWait     string  `json:"max_wait"`
				Hosts       []map[string]any
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%s json: %v\n%s", flag, err, out)
			}
			if got.Rate != 2.5 || got.Burst != 5 || got.Concurrency != 0 || got.QueueSize != 10000 || got.MaxWait != "30s" ||
				len(got.Hosts) != 2 || got.Hosts[1]["match"] != "*.slow.example" || got.Hosts[1]["rate"] != nil {
				t.Fatalf("%s json: %+v", flag, got)
			}
		}
	})

	t.Run("no hosts", func(t *testing.T) {
		p := startProxyd(t)
		code, out, errOut := cli(t, nil, "limits", "get", "--admin-url", p.admin)
		if code != 0 || !strings.HasSuffix(out, "\nMATCH  RATE  BURST  CONCURRENCY\n(none)\n") || !strings.Contains(out, "rate         100\n") {
			t.Fatalf("exit %d:\n%s%s", code, out, errOut)
		}
	})
}

func TestLimitsSet(t *testing.T) {
	p := startLimitsProxyd(t, limitsYAML)
	url := "http://" + p.admin

	code, out, errOut := cli(t, nil, "limits", "set", "--admin-url", url, "--rate", "50", "--concurrency", "8", "--max-wait", "1m30s")
	if code != 0 {
		t.Fatalf("set: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"rate         50\n", "burst        5\n", "concurrency  8\n", "max_wait     1m30s\n", "api.example.com  10"} {
		if !strings.Contains(out, want) {
			t.Fatalf("set printed no %q:\n%s", want, out)
		}
	}
	// Only the flags given change; get shows the change.
	_, got, _ := cli(t, nil, "limits", "get", "--admin-url", url)
	if got != out {
		t.Fatalf("get after set:\n%s\nset printed:\n%s", got, out)
	}

	code, out, errOut = cli(t, nil, "limits", "set", "--admin-url", url, "-o", "json", "--queue-size", "7", "--burst", "9")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc["queue_size"] != 7.0 || doc["burst"] != 9.0 || doc["rate"] != 50.0 {
		t.Fatalf("set -o json: exit %d: %s%s", code, out, errOut)
	}

	// Refused values: the server's reason, exit 2, nothing changes.
	_, before, _ := cli(t, nil, "limits", "get", "--admin-url", url)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"negative rate", []string{"--rate", "-5"}, "rate: must be >= 0, got -5"},
		{"zero queue", []string{"--queue-size", "0"}, "queue_size: must be >= 1, got 0"},
		{"negative max wait", []string{"--max-wait", "-1s", "--concurrency", "3"}, "max_wait: must be > 0, got -1s"},
		{"zero burst", []string{"--burst", "0"}, "burst: must be >= 1 when rate > 0, got 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, nil, append([]string{"limits", "set", "--admin-url", url}, tc.args...)...)
			if code != exitConfig || out != "" || !strings.Contains(errOut, "refused the change: "+tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tc.want)
			}
			_, now, _ := cli(t, nil, "limits", "get", "--admin-url", url)
			if now != before {
				t.Fatalf("limits changed after a refused set:\n%s", now)
			}
		})
	}
}

func TestLimitsQueue(t *testing.T) {
	p := startProxyd(t)
	code, out, errOut := cli(t, nil, "limits", "queue", "--admin-url", p.admin)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"KEY                  VALUE\n", "depth                0\n", "in_flight            0\n", "oldest_wait_seconds  0\n", "\nPRIORITY  WAITING\n0         0\n", "7         0\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("queue table lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = cli(t, nil, "limits", "queue", "--admin-url", p.admin, "-o", "json")
	if !strings.HasSuffix(out, "}\n") || strings.HasSuffix(out, "\n\n") {
		t.Fatalf("queue -o json does not end in one newline: %q", out)
	}
	var doc struct {
		Depth      *int           `json:"depth"`
		ByPriority map[string]int `json:"by_priority"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.Depth == nil || len(doc.ByPriority) != 8 {
		t.Fatalf("queue -o json: exit %d: %s%s", code, out, errOut)
	}
}

// TestLimitsUsage: usage errors exit 2 before any request is sent (the
// address is closed, so a request would exit 1).
func TestLimitsUsage(t *testing.T) {
	addr := testnet.FreeAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"set without flags", []string{"set", "--admin-url", addr}, "give at least one of --rate"},
		{"bad output", []string{"get", "--admin-url", addr, "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag`},
		{"bad output on set", []string{"set", "--admin-url", addr, "--rate", "1", "--output", "wide"}, `"-o, --output"`},
		{"rate not a number", []string{"set", "--admin-url", addr, "--rate", "fast"}, `"--rate"`},
		{"rate not finite", []string{"set", "--admin-url", addr, "--rate", "NaN"}, `"--rate" flag: must be a finite number`},
		{"burst not an integer", []string{"set", "--admin-url", addr, "--burst", "1.5"}, `"--burst"`},
		{"max wait without unit", []string{"set", "--admin-url", addr, "--max-wait", "10"}, `"--max-wait"`},
		{"unknown flag", []string{"get", "--admin-url", addr, "--bogus"}, "bogus"},
		{"extra argument", []string{"get", "--admin-url", addr, "now"}, `unknown command "now"`},
		{"unknown subcommand", []string{"bogus", "--admin-url", addr}, `unknown command "bogus"`},
		{"bad scheme", []string{"get", "--admin-url", "ftp://" + addr}, "scheme must be http or https"},
		{"two addresses", []string{"get", "--admin-url", addr, "--admin-listen", addr}, "--admin-url and --admin-listen both set"},
		{"missing config file", []string{"get", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, "nope.yaml: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, nil, append([]string{"limits"}, tc.args...)...)
			if code != exitConfig || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q (stdout %q)", code, errOut, tc.want, out)
			}
		})
	}

	code, out, _ := cli(t, nil, "limits")
	if code != 0 || !strings.Contains(out, "PROXYD_ADMIN_LISTEN") || !strings.Contains(out, "set") {
		t.Fatalf("limits without a subcommand: exit %d, %q", code, out)
	}
}

func TestLimitsUnreachable(t *testing.T) {
	addr := testnet.FreeAddr(t)
	want := "proxyd: admin API at http://" + addr + ": connection refused (is proxyd running? set --admin-url or PROXYD_ADMIN_LISTEN)\n"
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"flag", []string{"limits", "get", "--admin-url", "http://" + addr}, nil},
		{"bare host:port", []string{"limits", "queue", "--admin-url", addr}, nil},
		{"env", []string{"limits", "set", "--rate", "5"}, []string{"PROXYD_ADMIN_LISTEN=" + addr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, tc.env, tc.args...)
			if code != exitFail || errOut != want || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, want)
			}
		})
	}
}

func TestLimitsAddressAndToken(t *testing.T) {
	const token = "s3cret-t0ken"
	p := startLimitsProxyd(t, "admin:\n  token: "+token+"\n")
	_, port, _ := net.SplitHostPort(p.admin)
	url := "http://" + p.admin
	dir := t.TempDir()
	clientCfg := filepath.Join(dir, "client.yaml")
	writeFile(t, clientCfg, "admin:\n  listen: "+p.admin+"\n  token: "+token+"\n")
	wrongCfg := filepath.Join(dir, "other.yaml")
	writeFile(t, wrongCfg, "admin:\n  token: not-it\n")

	const (
		missing  = ": a token is required (401 Unauthorized); set --token or PROXYD_ADMIN_TOKEN\n"
		rejected = " was rejected (401 Unauthorized); set --token or PROXYD_ADMIN_TOKEN\n"
	)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		code int
		want string // in stderr when code != 0
	}{
		{"no token", []string{"--admin-url", url}, nil, 1, "proxyd: admin API at " + url + missing},
		{"wrong flag", []string{"--admin-url", url, "--token", "wrong"}, nil, 1, "the token from --token" + rejected},
		{"wrong env", []string{"--admin-url", url}, []string{"PROXYD_ADMIN_TOKEN=wrong"}, 1, "the token from PROXYD_ADMIN_TOKEN" + rejected},
		{"wrong file", []string{"--admin-url", url, "--config", wrongCfg}, nil, 1, "the token from admin.token in " + wrongCfg + rejected},
		{"right flag", []string{"--admin-url", url, "--token", token}, nil, 0, ""},
		{"flag beats env", []string{"--admin-url", url, "--token", token}, []string{"PROXYD_ADMIN_TOKEN=wrong"}, 0, ""},
		{"env beats file", []string{"--admin-url", url, "--config", wrongCfg}, []string{"PROXYD_ADMIN_TOKEN=" + token}, 0, ""},
		{"env address and token", nil, []string{"PROXYD_ADMIN_LISTEN=" + p.admin, "PROXYD_ADMIN_TOKEN=" + token}, 0, ""},
		{"first env entry wins", nil, []string{"PROXYD_ADMIN_LISTEN=" + p.admin, "PROXYD_ADMIN_TOKEN=" + token, "PROXYD_ADMIN_TOKEN=wrong"}, 0, ""},
		{"wildcard env address", nil, []string{"PROXYD_ADMIN_LISTEN=0.0.0.0:" + port, "PROXYD_ADMIN_TOKEN=" + token}, 0, ""},
		{"admin-listen flag", []string{"--admin-listen", p.admin}, []string{"PROXYD_ADMIN_LISTEN=" + testnet.FreeAddr(t), "PROXYD_ADMIN_TOKEN=" + token}, 0, ""},
		{"bare admin-url", []string{"--admin-url", p.admin, "--token", token}, nil, 0, ""},
		{"config file address and token", []string{"--config", clientCfg}, nil, 0, ""},
		{"token with newline", []string{"--admin-url", url}, []string{"PROXYD_ADMIN_TOKEN=" + token + "\n"}, 2, "the token from PROXYD_ADMIN_TOKEN contains control characters (a trailing newline?)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, tc.env, append([]string{"limits", "get"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			if code == 0 && !strings.HasPrefix(out, "KEY          VALUE\nrate         100\n") {
				t.Fatalf("stdout %q", out)
			}
			if code != 0 && (!strings.HasSuffix(errOut, tc.want) || out != "") {
				t.Fatalf("stdout %q, stderr %q; want it to end with %q", out, errOut, tc.want)
			}
			if strings.Contains(out+errOut, token) || strings.Contains(out+errOut, "wrong") || strings.Contains(errOut, "not-it") {
				t.Fatalf("a token was printed: %q %q", out, errOut)
			}
		})
	}

	// set needs the token as get does.
	if code, _, errOut := cli(t, nil, "limits", "set", "--admin-url", url, "--rate", "7"); code != 1 || !strings.Contains(errOut, "a token is required") {
		t.Fatalf("set without a token: exit %d, %s", code, errOut)
	}
	if code, out, errOut := cli(t, []string{"PROXYD_ADMIN_TOKEN=" + token}, "limits", "set", "--admin-url", url, "--rate", "7"); code != 0 || !strings.Contains(out, "rate         7\n") {
		t.Fatalf("set with the token: exit %d, %s%s", code, out, errOut)
	}
}

// TestLimitsServerFailures covers answers a real proxyd does not give on
// demand, from a fake admin API.
func TestLimitsServerFailures(t *testing.T) {
	var sawAuth bool
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawAuth = sawAuth || r.Header.Get("Authorization") != ""
		switch r.URL.Path {
		case "/prefix/api/v1/limits":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"rate":0.25,"burst":1,"concurrency":64,"queue_size":10,"max_wait":"30s","max_tunnels":1024,"hosts":[]}`)
		case "/api/v1/limits":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":"limiter store unavailable"}`)
		case "/api/v1/queue":
			_, _ = io.WriteString(w, "<html>not proxyd</html>")
		case "/redirect/api/v1/limits":
			http.Redirect(w, r, "/prefix/api/v1/limits", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"500", []string{"get", "--admin-url", fake.URL}, 1, "GET /api/v1/limits: 500 Internal Server Error: limiter store unavailable\n"},
		{"not JSON", []string{"queue", "--admin-url", fake.URL}, 1, "GET /api/v1/queue: the answer is not JSON (is this proxyd's admin listener?)\n"},
		{"404", []string{"get", "--admin-url", fake.URL + "/elsewhere"}, 1, "GET /api/v1/limits: 404 Not Found (is this proxyd's admin listener, and a version with the admin API?)\n"},
		{"redirect not followed", []string{"get", "--admin-url", fake.URL + "/redirect"}, 1, "GET /api/v1/limits: 302 Found to /prefix/api/v1/limits, not followed (point --admin-url at the admin API itself)\n"},
		{"path prefix and extra fields", []string{"get", "--admin-url", fake.URL + "/prefix/"}, 0, "rate         0.25\nburst        1\nconcurrency  64\nqueue_size   10\nmax_wait     30s\nmax_tunnels  1024\n\nMATCH  RATE  BURST  CONCURRENCY\n(none)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, nil, append([]string{"limits"}, tc.args...)...)
			if code != tc.code || !strings.HasSuffix(out+errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, tc.code, tc.want)
			}
		})
	}
	if sawAuth {
		t.Fatal("an Authorization header was sent without a token")
	}
}

func TestParseAdminAddress(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:9090", "http://127.0.0.1:9090"},
		{"0.0.0.0:9090", "http://127.0.0.1:9090"},
		{":9090", "http://127.0.0.1:9090"},
		{"[::]:9090", "http://[::1]:9090"},
		{"[::1]:9090", "http://[::1]:9090"},
		{"admin.internal:9090", "http://admin.internal:9090"},
	} {
		u, err := parseAdminURL(listenURL(tc.listen))
		if err != nil || u.String() != tc.want {
			t.Errorf("listen %q: %v, %v; want %s", tc.listen, u, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:9090", "http://127.0.0.1:9090"},
		{"127.0.0.1:9090", "http://127.0.0.1:9090"},
		{"https://proxyd.example/admin/", "https://proxyd.example/admin"},
		{"http://0.0.0.0:9090/", "http://127.0.0.1:9090"},
		{"http://[::]:9090", "http://[::1]:9090"},
	} {
		u, err := parseAdminURL(tc.in)
		if err != nil || u.String() != tc.want {
			t.Errorf("--admin-url %q: %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
	for _, bad := range []string{"ftp://x:1", "http://", "http://x:1/?q=1", "http://x:1/#f", "http://[::1"} {
		if u, err := parseAdminURL(bad); err == nil {
			t.Errorf("--admin-url %q: accepted as %v", bad, u)
		}
	}
}
