package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at build time, e.g. by the Dockerfile:
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=0123abc -X main.date=2026-01-02T03:04:05Z" ./cmd/proxyd
//
// Left empty, they fall back to what the Go toolchain recorded in the
// binary (see buildOf). They must stay plain string variables without an
// initializer computed at run time, or -X cannot set them.
var (
	version string
	commit  string
	date    string
)

// build describes the running binary.
type build struct {
	Version  string // "1.2.0"; the module version, or "dev" when unknown
	Commit   string // VCS revision, "-dirty" appended for a modified tree; "unknown"
	Date     string // build or commit time, RFC 3339; "unknown"
	Go       string // "go1.26.8"
	Platform string // "linux/amd64"
}

// currentBuild is the running binary's build: the -ldflags values, else
// the Go toolchain's build information.
func currentBuild() build {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return buildOf(version, commit, date, bi)
}

// buildOf fills what was not stamped from bi (which may be nil): the main
// module's version (set by "go install module@version"), and the
// vcs.revision, vcs.modified and vcs.time that "go build" records inside a
// VCS checkout. The commit time stands in for the build date: with it two
// builds of one commit say the same, which keeps builds reproducible.
func buildOf(ver, rev, when string, bi *debug.BuildInfo) build {
	b := build{Version: ver, Commit: rev, Date: when, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		settings := make(map[string]string, len(bi.Settings))
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if b.Commit == "" && settings["vcs.revision"] != "" {
			b.Commit = settings["vcs.revision"]
			if settings["vcs.modified"] == "true" {
				b.Commit += "-dirty"
			}
		}
		if b.Date == "" {
			b.Date = settings["vcs.time"]
		}
		if bi.GoVersion != "" {
			b.Go = bi.GoVersion
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	if b.Date == "" {
		b.Date = "unknown"
	}
	return b
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			_, err := io.WriteString(stdout, versionText(currentBuild()))
			return err
		},
	}
}

// versionText is what "proxyd version" and "proxyd --version" print.
func versionText(b build) string {
	return fmt.Sprintf("proxyd %s\ncommit: %s\nbuilt:  %s\ngo:     %s %s\n", b.Version, b.Commit, b.Date, b.Go, b.Platform)
}

// versionFlag makes "proxyd --version" print what "proxyd version" does:
// cobra prints the root command's Version through its version template
// when the flag is set, before anything else runs. The flag is defined
// here, without cobra's -v shorthand.
func versionFlag(root *cobra.Command) {
	root.Version = versionText(currentBuild())
	root.SetVersionTemplate("{{.Version}}")
	root.Flags().Bool("version", false, "print the version, commit, build date and Go version, as the version subcommand")
}
