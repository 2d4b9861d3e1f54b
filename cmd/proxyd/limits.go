package main

// The limits subcommand: a small client of the admin API (docs/admin-api.md, "The `proxyd limits` command") that
// reads and changes a running proxyd's limits.
//
// Decisions where the brief and the spec are silent:
//
//   - The admin API's address comes from, first that is set: --admin-url;
//     the root's --admin-listen flag (the address the server was told to
//     listen on, so one command line works for both); PROXYD_ADMIN_LISTEN;
//     admin.listen in the --config file; 127.0.0.1:9090. --admin-url and
//     --admin-listen together are a usage error. The token likewise:
//     --token, PROXYD_ADMIN_TOKEN, admin.token in the --config file, none.
//     The file is read only when a value is still missing, and must be
//     valid on its own (environment variables do not patch it here).
//   - A listen address that is a wildcard (0.0.0.0, [::], or an empty host
//     as in ":9090") is dialled on the matching loopback address.
//   - --admin-url takes http:// or https:// URLs with an optional path
//     prefix (for an admin API behind a reverse proxy) or a bare host:port,
//     which means http://host:port.
//   - The client never uses HTTP_PROXY and friends (the proxy might be
//     proxyd itself) and never follows redirects. Each request has 10s.
//   - -o json prints the server's JSON as it came, indented: every field,
//     including ones this version does not know. The table shows the known
//     fields first and any other scalar field after them.
//   - Exit codes: 2 for usage errors and for a change the server refused
//     (400: the values given are invalid, as an invalid configuration
//     exits 2); 1 when the admin API cannot be reached, refuses the token
//     (401) or fails otherwise.
//   - The token is never printed, in output or in errors.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/proxyd/proxyd/internal/config"
)

// Admin API paths and the client's defaults.
const (
	limitsPath = "/api/v1/limits"
	queuePath  = "/api/v1/queue"

	adminTimeout = 10 * time.Second
	// maxAdminResponse bounds how much of an answer is read.
	maxAdminResponse = 4 << 20
)

// limitsFields are the global limits in the order they are shown, with
// the flag of limits set that changes each.
var limitsFields = []struct{ key, flag string }{
	{"rate", "rate"},
	{"burst", "burst"},
	{"concurrency", "concurrency"},
	{"queue_size", "queue-size"},
	{"max_wait", "max-wait"},
}

func newLimitsCmd(env []string, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "limits",
		Short: "Show or change the limits of a running proxyd through its admin API",
		Long: `limits talks to a running proxyd's admin API (/api/v1/limits, /api/v1/queue).

The admin API's address, first that is set:
  --admin-url URL         http://host:port, https://host:port/prefix or host:port
  --admin-listen ADDR     the address given to the server
  PROXYD_ADMIN_LISTEN     the server's environment variable
  admin.listen            in the --config FILE
  127.0.0.1:9090          the default
A wildcard listen address (0.0.0.0, [::]) is reached on loopback.

The bearer token, when the server has admin.token set: --token, then
PROXYD_ADMIN_TOKEN, then admin.token in the --config FILE. Prefer the
variable or the file: a flag is visible to other users in the process list.

Exit codes: 0 done; 1 the admin API is unreachable, rejected the token or
failed; 2 usage error, or the server refused the new values (400).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.String("admin-url", "", "admin API `URL` (http://host:port) or host:port (default --admin-listen, $PROXYD_ADMIN_LISTEN, admin.listen in --config, 127.0.0.1:9090)")
	pf.String("token", "", "admin API bearer `token` (default $PROXYD_ADMIN_TOKEN, admin.token in --config)")
	pf.StringP("output", "o", "table", "output `format`: table or json")

	// call makes a subcommand that sends one request (with the body that
	// body builds from the flags, if any) and prints the answer.
	call := func(method, path string, body func(*pflag.FlagSet) ([]byte, error), table func(io.Writer, []byte) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			var payload []byte
			if body != nil {
				var err error
				if payload, err = body(cmd.Flags()); err != nil {
					return err
				}
			}
			c, format, err := newAdminClient(cmd, env)
			if err != nil {
				return err
			}
			defer c.close()
			answer, err := c.do(cmd.Context(), method, path, payload)
			if err != nil {
				return err
			}
			return printJSON(stdout, format, answer, table)
		}
	}

	get := &cobra.Command{
		Use:   "get",
		Short: "Print the live limits and host rules",
		Long: `get prints the live global limits and the per-host rules. In the table a
rate or concurrency of 0 is unlimited, and "-" marks a host rule's unset
(unlimited, or for burst the default max(1, rate)) value.`,
		Example: "  proxyd limits get\n  proxyd limits get -o json --admin-url http://10.0.0.5:9090",
		Args:    usageArgs(cobra.NoArgs),
		RunE:    call(http.MethodGet, limitsPath, nil, writeLimitsTable),
	}

	var setFlags *pflag.FlagSet // set's own, for the note on the burst
	set := &cobra.Command{
		Use:   "set",
		Short: "Change global limits at once; only the flags given change",
		Long: `set changes the global limits of the running proxyd at once (PATCH
/api/v1/limits): only the flags given are sent, the rest stay. It prints the
resulting limits as get does. The server checks the values; when it refuses
them it says why, nothing changes, and the exit code is 2. A change lasts
until the next reload or restart, which reads the configuration again.`,
		Example: "  proxyd limits set --rate 50 --concurrency 8\n  proxyd limits set --max-wait 10s",
		Args:    usageArgs(cobra.NoArgs),
		RunE: call(http.MethodPatch, limitsPath, limitsPatch, func(w io.Writer, data []byte) error {
			return writeSetTable(w, data, setFlags)
		}),
	}
	sf := set.Flags()
	setFlags = sf
	sf.Float64("rate", 0, "requests per second admitted overall; 0 = unlimited")
	sf.Int("burst", 0, "token-bucket burst")
	sf.Int("concurrency", 0, "most requests in flight upstream; 0 = unlimited")
	sf.Int("queue-size", 0, "most requests waiting")
	sf.Duration("max-wait", 0, "longest a request may wait in the queue, e.g. 10s")

	queue := &cobra.Command{
		Use:   "queue",
		Short: "Print the queue: waiting requests by priority, in flight, oldest wait",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  call(http.MethodGet, queuePath, nil, writeQueueTable),
	}

	cmd.AddCommand(get, set, queue)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd
}

// usageArgs makes an argument validator's error a usage error (exit 2).
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return &configError{err}
		}
		return nil
	}
}

// limitsPatch returns the PATCH body for the flags of limits set that the
// user gave, or a usage error when none was.
func limitsPatch(fs *pflag.FlagSet) ([]byte, error) {
	patch := make(map[string]any)
	for _, f := range limitsFields {
		fl := fs.Lookup(f.flag)
		if !fl.Changed {
			continue
		}
		var err error
		switch f.flag {
		case "rate":
			var r float64
			if r, err = fs.GetFloat64(f.flag); err == nil {
				if math.IsNaN(r) || math.IsInf(r, 0) {
					return nil, &configError{fmt.Errorf("invalid argument %q for \"--rate\" flag: must be a finite number", fl.Value.String())}
				}
				patch[f.key] = r
			}
		case "max-wait":
			var d time.Duration
			if d, err = fs.GetDuration(f.flag); err == nil {
				patch[f.key] = d.String()
			}
		default:
			patch[f.key], err = fs.GetInt(f.flag)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(patch) == 0 {
		return nil, &configError{errors.New("limits set: give at least one of --rate, --burst, --concurrency, --queue-size, --max-wait")}
	}
	return json.Marshal(patch)
}

// adminClient calls one proxyd's admin API. Create it with newAdminClient
// and close it when done; it is meant for a single command.
type adminClient struct {
	base      *url.URL // scheme, host and path prefix without a trailing "/"
	token     string   // "" for none
	tokenFrom string   // where the token came from, for messages
	addrFrom  string   // where the address came from, for messages
	hc        *http.Client
}

// newAdminClient resolves the admin API's address and token from cmd's
// flags, env and the --config file, and checks -o. Its errors are usage
// errors.
func newAdminClient(cmd *cobra.Command, env []string) (*adminClient, string, error) {
	fs := cmd.Flags()
	format, _ := fs.GetString("output")
	if format != "table" && format != "json" {
		return nil, "", &configError{fmt.Errorf("invalid argument %q for \"-o, --output\" flag: must be table or json", format)}
	}

	var fileCfg func() (config.Admin, error)
	if f := fs.Lookup("config"); f != nil && f.Changed {
		file := f.Value.String()
		// Read once, when first needed, and alone: the flags and the
		// environment are looked at here, before the file.
		fileCfg = sync.OnceValues(func() (config.Admin, error) {
			cfg, err := loadConfig(loadOptions{File: file})
			if err != nil {
				return config.Admin{}, &configError{err}
			}
			return cfg.Admin, nil
		})
	}

	c := &adminClient{}
	rawURL, _ := fs.GetString("admin-url")
	listen := fs.Lookup("admin-listen")
	switch {
	case rawURL != "" && listen != nil && listen.Changed:
		return nil, "", &configError{errors.New("--admin-url and --admin-listen both set; give one")}
	case rawURL != "":
		c.addrFrom = "--admin-url"
	case listen != nil && listen.Changed:
		rawURL, c.addrFrom = listenURL(listen.Value.String()), "--admin-listen"
	default:
		if v := lookupEnv(env, config.EnvName("admin.listen")); v != "" {
			rawURL, c.addrFrom = listenURL(v), config.EnvName("admin.listen")
		} else if fileCfg != nil {
			a, err := fileCfg()
			if err != nil {
				return nil, "", err
			}
			rawURL, c.addrFrom = listenURL(a.Listen), "admin.listen in "+fs.Lookup("config").Value.String()
		} else {
			rawURL, c.addrFrom = listenURL(config.Default().Admin.Listen), "the default"
		}
	}
	base, err := parseAdminURL(rawURL)
	if err != nil {
		return nil, "", &configError{fmt.Errorf("%s: %w", c.addrFrom, err)}
	}
	c.base = base

	if tok, _ := fs.GetString("token"); fs.Changed("token") {
		c.token, c.tokenFrom = tok, "--token"
	} else if v := lookupEnv(env, config.EnvName("admin.token")); v != "" {
		c.token, c.tokenFrom = v, config.EnvName("admin.token")
	} else if fileCfg != nil {
		a, err := fileCfg()
		if err != nil {
			return nil, "", err
		}
		c.token, c.tokenFrom = a.Token, "admin.token in "+fs.Lookup("config").Value.String()
	}
	// A token that cannot be sent in a header: say so without showing it.
	if strings.ContainsFunc(c.token, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, "", &configError{fmt.Errorf("the token from %s contains control characters (a trailing newline?)", c.tokenFrom)}
	}

	c.hc = &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // never through HTTP_PROXY: that may be proxyd itself
			DialContext:         (&net.Dialer{Timeout: adminTimeout}).DialContext,
			TLSHandshakeTimeout: adminTimeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       adminTimeout,
	}
	return c, format, nil
}

func (c *adminClient) close() { c.hc.CloseIdleConnections() }

// lookupEnv returns name's value in env ("KEY=VALUE" entries); the first
// entry wins, as with os.Getenv.
func lookupEnv(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// listenURL turns a listen address into the URL that reaches it: a
// wildcard or empty host becomes the loopback address of its family.
func listenURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr // parseAdminURL reports it
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// parseAdminURL parses --admin-url: an http(s) URL with an optional path
// prefix, or a bare host:port.
func parseAdminURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid admin API address %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("invalid admin API address %q: the scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("invalid admin API address %q: no host", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("invalid admin API address %q: no query or fragment, please", u.Redacted())
	}
	switch u.Hostname() {
	case "0.0.0.0":
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	case "::":
		u.Host = net.JoinHostPort("::1", u.Port())
	}
	u.Host = strings.TrimSuffix(u.Host, ":") // "[::1]:" after an empty port
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// do sends one request and returns the body of a 200 answer. Its errors
// name the admin API and say what to do.
func (c *adminClient) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	u := *c.base
	u.Path += path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.base.Redacted(), err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return nil, c.transportError(err)
	}
	where := fmt.Sprintf("admin API at %s", c.base.Redacted())
	switch resp.StatusCode {
	case http.StatusOK:
		if !json.Valid(data) {
			return nil, fmt.Errorf("%s: %s %s: the answer is not JSON (is this proxyd's admin listener?)", where, method, path)
		}
		return data, nil
	case http.StatusUnauthorized:
		if c.token == "" {
			return nil, fmt.Errorf("%s: a token is required (401 Unauthorized); set --token or PROXYD_ADMIN_TOKEN", where)
		}
		return nil, fmt.Errorf("%s: the token from %s was rejected (401 Unauthorized); set --token or PROXYD_ADMIN_TOKEN", where, c.tokenFrom)
	case http.StatusBadRequest:
		if method == http.MethodGet {
			return nil, fmt.Errorf("%s: %s %s: %s: %s", where, method, path, resp.Status, serverError(resp, data))
		}
		msg := serverError(resp, data)
		if msg == "" {
			msg = resp.Status
		}
		return nil, &configError{fmt.Errorf("%s refused the change: %s", where, msg)}
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return nil, fmt.Errorf("%s: %s %s: %s to %s, not followed (point --admin-url at the admin API itself)", where, method, path, resp.Status, resp.Header.Get("Location"))
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return nil, fmt.Errorf("%s: %s %s: %s (is this proxyd's admin listener, and a version with the admin API?)", where, method, path, resp.Status)
	default:
		msg := serverError(resp, data)
		if msg == "" {
			return nil, fmt.Errorf("%s: %s %s: %s", where, method, path, resp.Status)
		}
		return nil, fmt.Errorf("%s: %s %s: %s: %s", where, method, path, resp.Status, msg)
	}
}

// transportError explains a failure to get an answer.
func (c *adminClient) transportError(err error) error {
	where := fmt.Sprintf("admin API at %s", c.base.Redacted())
	hint := "is proxyd running? set --admin-url or PROXYD_ADMIN_LISTEN"
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: connection refused (%s)", where, hint)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: no answer within %v (%s)", where, adminTimeout, hint)
	}
	// Strip url.Error's "Get "http://…/api/v1/limits":" prefix.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s: %w (%s)", where, err, hint)
}

// serverError returns the "error" of a JSON error answer, or its text
// (not HTML, in one line, cut short), or "".
func serverError(resp *http.Response, data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		return ""
	}
	text := strings.Join(strings.Fields(string(data)), " ")
	if len(text) > 200 {
		text = strings.ToValidUTF8(text[:200], "") + "…"
	}
	return text
}

// printJSON prints an admin API answer: indented JSON, or a table.
func printJSON(w io.Writer, format string, data []byte, table func(io.Writer, []byte) error) error {
	if format == "json" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(data), "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	return table(w, data)
}

// limitsView is the GET /api/v1/limits answer, for the table.
type limitsView struct {
	Quotas []quotaView `json:"quotas"`
	Hosts  []hostView  `json:"hosts"`
}

// hostView is a hosts rule in the limits answer.
type hostView struct {
	Match       string      `json:"match"`
	Rate        json.Number `json:"rate"`
	Burst       json.Number `json:"burst"`
	Concurrency json.Number `json:"concurrency"`
	Quotas      []quotaView `json:"quotas"`
	Cost        *costView   `json:"cost"`
}

// costView is a hosts rule's cost in the limits answer (every field with
// its default applied; absent when the rule sets none).
type costView struct {
	Header   string      `json:"header"`
	Estimate string      `json:"estimate"`
	Default  json.Number `json:"default"`
	MaxBody  string      `json:"max_body"`
	Usage    []string    `json:"usage"`
}

// costCell formats a rule's pricing for a table cell (docs/configuration.md,
// "hosts[].cost"): "body, default 1000, max_body 1MiB, header X-Proxy-Cost,
// usage built-in"; "defaults" for a rule priced in tokens (a tokens quota)
// without a cost of its own; "-" for a rule not priced.
func costCell(h hostView) string {
	c := h.Cost
	if c == nil {
		if slices.ContainsFunc(h.Quotas, func(q quotaView) bool { return q.Unit == "tokens" }) {
			return "defaults"
		}
		return "-"
	}
	usage := "built-in"
	if len(c.Usage) > 0 {
		usage = strings.Join(c.Usage, "+")
	}
	return fmt.Sprintf("%s, default %s, max_body %s, header %s, usage %s", c.Estimate, c.Default, c.MaxBody, c.Header, usage)
}

// quotaView is a quota in the limits answer.
type quotaView struct {
	Limit json.Number `json:"limit"`
	Per   string      `json:"per"`
	Unit  string      `json:"unit"`
}

// quotasCell formats quotas for a table cell: "500/1m, 10000/24h", the
// unit added when it is not requests; "-" for none.
func quotasCell(qs []quotaView) string {
	if len(qs) == 0 {
		return "-"
	}
	cells := make([]string, len(qs))
	for i, q := range qs {
		cells[i] = q.Limit.String() + "/" + q.Per
		if q.Unit != "" && q.Unit != "requests" {
			cells[i] += " " + q.Unit
		}
	}
	return strings.Join(cells, ", ")
}

func writeLimitsTable(w io.Writer, data []byte) error {
	var fields map[string]json.RawMessage
	var v limitsView
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("admin API: unexpected limits answer: %w", err)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("admin API: unexpected limits answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	known := []string{"hosts", "quotas"}
	for _, f := range limitsFields {
		known = append(known, f.key)
		val := scalar(fields[f.key])
		if (f.key == "rate" || f.key == "concurrency") && isZero(val) {
			val += " (unlimited)"
		}
		fmt.Fprintf(tw, "%s\t%s\n", f.key, val)
	}
	writeExtra(tw, fields, known)
	// Quotas show when there are some (docs/configuration.md, "Quotas").
	if len(v.Quotas) > 0 {
		fmt.Fprintf(tw, "quotas\t%s\n", quotasCell(v.Quotas))
	}
	ruleQuotas := slices.ContainsFunc(v.Hosts, func(h hostView) bool { return len(h.Quotas) > 0 })
	// Pricing shows when a rule is priced (docs/configuration.md,
	// "hosts[].cost").
	ruleCost := slices.ContainsFunc(v.Hosts, func(h hostView) bool { return costCell(h) != "-" })
	fmt.Fprintln(tw)
	header := "MATCH\tRATE\tBURST\tCONCURRENCY"
	if ruleQuotas {
		header += "\tQUOTAS"
	}
	if ruleCost {
		header += "\tCOST"
	}
	fmt.Fprintln(tw, header)
	if len(v.Hosts) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	for _, h := range v.Hosts {
		row := fmt.Sprintf("%s\t%s\t%s\t%s", h.Match, orDash(h.Rate), orDash(h.Burst), orDash(h.Concurrency))
		if ruleQuotas {
			row += "\t" + quotasCell(h.Quotas)
		}
		if ruleCost {
			row += "\t" + costCell(h)
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

func writeQueueTable(w io.Writer, data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("admin API: unexpected queue answer: %w", err)
	}
	var byPrio map[string]json.RawMessage
	if raw, ok := fields["by_priority"]; ok {
		if err := json.Unmarshal(raw, &byPrio); err != nil {
			return fmt.Errorf("admin API: unexpected queue answer: by_priority: %w", err)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE")
	known := []string{"depth", "in_flight", "oldest_wait_seconds"}
	for _, k := range known {
		fmt.Fprintf(tw, "%s\t%s\n", k, scalar(fields[k]))
	}
	writeExtra(tw, fields, append(known, "by_priority", "paused", "hosts"))
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PRIORITY\tWAITING")
	// Urgencies in numeric order: "0" … "7" (and any others after).
	prios := slices.SortedFunc(maps.Keys(byPrio), func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	for _, p := range prios {
		fmt.Fprintf(tw, "%s\t%s\n", p, scalar(byPrio[p]))
	}
	type paused struct {
		Destination string  `json:"destination"`
		Until       string  `json:"until"`
		Remaining   float64 `json:"remaining_seconds"`
	}
	tableSection(tw, fields["paused"], "PAUSED DESTINATION\tUNTIL\tREMAINING", func(p paused) string {
		return fmt.Sprintf("%s\t%s\t%.1fs", p.Destination, p.Until, p.Remaining)
	})
	type rule struct {
		Match    string `json:"match"`
		InFlight int    `json:"in_flight"`
		Waiting  int    `json:"waiting"`
	}
	tableSection(tw, fields["hosts"], "HOST RULE\tIN FLIGHT\tWAITING", func(r rule) string {
		return fmt.Sprintf("%s\t%d\t%d", r.Match, r.InFlight, r.Waiting)
	})
	return tw.Flush()
}

// writeExtra writes the scalar fields not in known, sorted by name, so
// that a newer server's additions show.
func writeExtra(w io.Writer, fields map[string]json.RawMessage, known []string) {
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if slices.Contains(known, k) {
			continue
		}
		if raw := bytes.TrimSpace(fields[k]); len(raw) > 0 && raw[0] != '{' && raw[0] != '[' {
			fmt.Fprintf(w, "%s\t%s\n", k, scalar(raw))
		}
	}
}

// scalar formats a JSON scalar for a table: strings unquoted, null and
// absent as "-".
func scalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "-"
	}
	var s string
	if raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func isZero(s string) bool {
	var f float64
	_, err := fmt.Sscan(s, &f)
	return err == nil && f == 0
}

// orDash formats a host rule's number: "-" when unset or 0 (unlimited).
func orDash(n json.Number) string {
	if n == "" || isZero(string(n)) {
		return "-"
	}
	return n.String()
}

// tableSection prints a blank line, header and one row per element of the
// JSON array raw; nothing when it is absent, empty or not such an array.
func tableSection[T any](w io.Writer, raw json.RawMessage, header string, row func(T) string) {
	var items []T
	if len(raw) == 0 || json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, header)
	for _, it := range items {
		fmt.Fprintln(w, row(it))
	}
}
