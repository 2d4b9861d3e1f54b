// Command proxyd is a priority-aware, rate-limiting HTTP forward proxy.
//
// main is thin: run takes the arguments, environment and output streams as
// values so that the whole command is testable in-process.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/proxyd/proxyd/internal/gctune"
)

func main() {
	// A small live heap would be collected every few megabytes allocated:
	// keep the heap goal at 64 MiB at least (docs/performance.md). An
	// operator's GOGC wins.
	if os.Getenv("GOGC") == "" {
		gctune.Floor(gctune.DefaultFloor)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr, sig))
}
