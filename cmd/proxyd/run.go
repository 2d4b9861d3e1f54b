package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/server"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1 // could not serve (e.g. address in use)
	exitConfig = 2 // invalid configuration or usage
)

// configError marks errors that exit with exitConfig.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// run is the whole command: it parses args, and serves until a signal on
// sig ends it (SIGHUP reloads). It returns the exit code.
func run(args, env []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	root := newRootCmd(env, stdout, stderr, sig)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	// One problem a line, each marked as proxyd's (a YAML parser's detail
	// lines, indented, belong to the line above).
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if strings.HasPrefix(line, " ") {
			fmt.Fprintln(stderr, line)
			continue
		}
		fmt.Fprintf(stderr, "proxyd: %s\n", line)
	}
	var ce *configError
	var sce *server.ConfigError
	if errors.As(err, &ce) || errors.As(err, &sce) {
		return exitConfig
	}
	return exitFail
}

func newRootCmd(env []string, stdout, stderr io.Writer, sig <-chan os.Signal) *cobra.Command {
	root := &cobra.Command{
		Use:   "proxyd",
		Short: "A priority-aware, rate-limiting HTTP forward proxy",
		Long: `proxyd is an HTTP forward proxy that queues outbound requests by urgency
and admits them under a global rate limit and concurrency cap.

Without a subcommand it serves: the proxy on --listen (default 127.0.0.1:8080)
and the admin API, health and metrics on --admin-listen (default 127.0.0.1:9090).
Configuration: flags > PROXYD_* environment variables > --config FILE > defaults.`,
		Args:          fileArgHint,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(loadOptions{Env: env, Flags: cmd.Flags()}, stderr, sig)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	defineFlags(root.PersistentFlags())
	versionFlag(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &configError{err} })

	check := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration (--config FILE, environment, flags) and exit",
		Long: `check-config loads the configuration exactly as serving would and reports the
first problems found, naming each key. Exit code 0: valid; 2: invalid.`,
		Args: fileArgHint,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(loadOptions{Env: env, Flags: cmd.Flags()})
			if err != nil {
				return &configError{err}
			}
			if err := server.Check(cfg); err != nil {
				return &configError{err}
			}
			fmt.Fprintln(stdout, "configuration OK")
			return nil
		},
	}
	root.AddCommand(check)
	root.AddCommand(newLimitsCmd(env, stdout, stderr))
	root.AddCommand(newHealthCmd(env, stdout), newVersionCmd(stdout), newCACmd(stdout))
	return root
}

// fileArgHint refuses positional arguments as a usage error (exit 2). The
// likely one is a file given without --config: say so.
func fileArgHint(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return &configError{fmt.Errorf("unexpected argument %q for %q (to use a configuration file: --config %s)", args[0], cmd.CommandPath(), args[0])}
}

// serve loads the configuration, builds the server and runs it until
// SIGTERM or SIGINT arrives on sig; a second one cuts the drain short.
// SIGHUP reloads (from the same file, environment and flags).
func serve(opts loadOptions, logOut io.Writer, sig <-chan os.Signal) error {
	cfg, sum, err := loadConfigSum(opts)
	if err != nil {
		return &configError{err}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(cfg, server.Deps{
		LogOutput:  logOut,
		Registry:   reg,
		Load:       func() (config.Config, error) { return loadConfig(opts) },
		ConfigFile: opts.configPath(),
		ConfigSum:  sum,
		Version:    currentBuild().Version,
	})
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	for {
		select {
		case s := <-sig:
			switch {
			case s == syscall.SIGHUP:
				_ = srv.Reload() // logs its outcome; ignored while draining
			case ctx.Err() == nil:
				srv.Logger().Info("shutting down", zap.String("signal", s.String()))
				stop()
			default:
				srv.Abort()
			}
		case err := <-done:
			return err
		}
	}
}
