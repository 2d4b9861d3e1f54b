package main

import (
	"strings"
	"testing"
)

// TestVersionFlag: "proxyd --version" prints what "proxyd version" does
// (issue 25: it was an unknown flag, exit 2), and serves nothing.
func TestVersionFlag(t *testing.T) {
	saved := [3]string{version, commit, date}
	t.Cleanup(func() { version, commit, date = saved[0], saved[1], saved[2] })
	version, commit, date = "1.2.3", "0123abc", "2026-01-02T03:04:05Z"
	_, want, _ := cli(t, nil, "version")
	if !strings.HasPrefix(want, "proxyd 1.2.3\ncommit: 0123abc\n") {
		t.Fatalf("version subcommand: %q", want)
	}
	for _, args := range [][]string{{"--version"}, {"--version", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}} {
		code, stdout, stderr := cli(t, nil, args...)
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0 and %q", args, code, stdout, stderr, want)
		}
	}
	if code, _, stderr := cli(t, nil, "-v"); code != 2 || !strings.Contains(stderr, "-v") {
		t.Errorf("-v: exit %d, stderr %q; want a usage error (no shorthand: -v reads as verbose elsewhere)", code, stderr)
	}
	if _, help, _ := cli(t, nil, "--help"); !strings.Contains(help, "--version") {
		t.Errorf("--help does not list --version:\n%s", help)
	}
}
