package main

// The health subcommand: a probe of a running proxyd's /healthz (or, with
// --ready, /readyz) for container health checks. The distroless image has
// no shell and no curl, so its HEALTHCHECK runs the binary itself.
//
// Decisions where the brief and the spec are silent:
//
//   - The admin address is found exactly as the limits subcommand finds it
//     (newAdminClient): --admin-url; the root's --admin-listen;
//     PROXYD_ADMIN_LISTEN; admin.listen in the --config file;
//     127.0.0.1:9090. A wildcard listen address (0.0.0.0, [::], ":9090") is
//     dialled on loopback. So a container that sets PROXYD_ADMIN_LISTEN
//     needs no extra argument. No token is sent: /healthz and /readyz never
//     need one.
//   - Exit codes: 0 healthy (the answer was 200), 1 anything else, usage
//     errors included. Docker reserves exit code 2 for HEALTHCHECK
//     commands, and a Kubernetes exec probe treats every non-zero code
//     alike, so 2 would only mislead.
//   - One line of output: on stdout when healthy, on stderr otherwise,
//     naming the URL probed and the answer or the failure (Docker keeps it
//     in `docker inspect`; Kubernetes shows it in the probe's event).
//   - Each probe has --timeout (2s by default) for everything: connecting,
//     the answer and its body. Like the limits client it never goes through
//     HTTP_PROXY (which may point at proxyd itself) and never follows
//     redirects.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// healthTimeout is the default --timeout of proxyd health.
const healthTimeout = 2 * time.Second

func newHealthCmd(env []string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Probe a running proxyd's /healthz (--ready: /readyz); exit 0 when healthy, 1 when not",
		Long: `health asks a running proxyd's admin listener whether it is alive (GET
/healthz) or, with --ready, ready for traffic (GET /readyz, 503 while
draining). It is meant for container health checks: the image has no shell or
curl, so its HEALTHCHECK runs "proxyd health".

The admin listener's address, first that is set:
  --admin-url URL         http://host:port or host:port
  --admin-listen ADDR     the address given to the server
  PROXYD_ADMIN_LISTEN     the server's environment variable
  admin.listen            in the --config FILE
  127.0.0.1:9090          the default
A wildcard listen address (0.0.0.0, [::]) is reached on loopback.

It prints one line. Exit codes: 0 the answer was 200; 1 anything else (no
answer within --timeout, connection refused, another status, a usage error).`,
		Example: "  proxyd health\n  proxyd health --ready --admin-url 127.0.0.1:9090",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return probeHealth(cmd, env, stdout)
		},
	}
	// Usage errors exit 1 as well (the root's handler would make them 2).
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	fs := cmd.Flags()
	fs.String("admin-url", "", "admin listener `URL` (http://host:port) or host:port (default --admin-listen, $PROXYD_ADMIN_LISTEN, admin.listen in --config, 127.0.0.1:9090)")
	fs.Bool("ready", false, "probe readiness (/readyz: 503 while draining) instead of liveness (/healthz)")
	fs.Duration("timeout", healthTimeout, "give up after this `duration`")
	// newAdminClient, shared with the limits subcommand, reads -o; health
	// prints no table, so the flag is fixed and hidden.
	fs.String("output", "table", "")
	_ = fs.MarkHidden("output")
	return cmd
}

// probeHealth runs one probe. Every error it returns exits 1.
func probeHealth(cmd *cobra.Command, env []string, stdout io.Writer) error {
	fs := cmd.Flags()
	ready, _ := fs.GetBool("ready")
	timeout, _ := fs.GetDuration("timeout")
	if timeout <= 0 {
		return fmt.Errorf("invalid argument %q for \"--timeout\" flag: must be > 0", fs.Lookup("timeout").Value.String())
	}
	c, _, err := newAdminClient(cmd, env)
	if err != nil {
		return errors.New(err.Error()) // not a configError: exit 1, not 2
	}
	defer c.close()

	path, good, bad := "/healthz", "healthy", "unhealthy"
	if ready {
		path, good, bad = "/readyz", "ready", "not ready"
	}
	u := *c.base
	u.Path += path
	target := u.Redacted()

	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", bad, target, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s: %s", bad, target, probeFailure(err, timeout))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return fmt.Errorf("%s: %s: %s", bad, target, probeFailure(err, timeout))
	}
	answer := resp.Status
	if text := firstLine(data); text != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		answer += " (" + text + ")"
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s answered %s", bad, target, answer)
	}
	_, err = fmt.Fprintf(stdout, "%s: %s answered %s\n", good, target, answer)
	return err
}

// probeFailure says in a few words why no answer came.
func probeFailure(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is proxyd running, and is this its admin address?)"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %v", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// firstLine returns the first line of a short text answer, printable and
// cut to 80 bytes, or "".
func firstLine(data []byte) string {
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSpace(strings.ToValidUTF8(line, ""))
	if strings.ContainsFunc(line, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return ""
	}
	if len(line) > 80 {
		line = strings.ToValidUTF8(line[:80], "") + "…"
	}
	return line
}
