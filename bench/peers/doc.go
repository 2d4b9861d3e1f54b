// Package peers holds the configurations of the proxies proxybench
// measures proxyd against (tinyproxy, squid, haproxy, nginx), as templates
// embedded in the binary so that the harness runs from any directory.
//
// Every configuration listens on 127.0.0.1 only, keeps no cache, writes
// no access log, and writes whatever it must (pid files, temp files, the
// error log) inside Data.Dir, a directory the harness made for the run. The
// templates are the source of truth for how each peer is set up: read them
// before quoting a figure.
package peers
