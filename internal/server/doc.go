// Package server is proxyd's runtime: the proxy and admin listeners and
// everything behind them, built from one validated configuration
// (New), served until its context ends and then drained (Run), and
// reconfigured live (Reload, the admin API's UpdateLimits, the shared
// store's fleet-wide limits). docs/architecture.md, "Start-up and
// reloads", walks through it.
//
// It takes plain values (config.Config, Deps) and never reads flags or
// the environment: cmd/proxyd parses those, loads the configuration
// (config.Load) and hands the server a Deps.Load that does it again for a
// reload. The files that the configuration names (the interception CA,
// tls.upstream_ca, auth.htpasswd) are read here, at start and on every
// reload, through internal/mitm and internal/auth.
//
// Invariants:
//
//   - One lock (Server.mu) orders every change of the live configuration:
//     a reload, an admin API change, a change of the fleet's limits. Each
//     builds and validates a complete new configuration before anything
//     is swapped in; a failure changes nothing.
//   - The dispatcher's limits, host rules, aging, reserve and fairness
//     change together in one dispatch.Reconfigure (docs/architecture.md,
//     "Who owns the limits").
//   - The drain (docs/operations.md, "Graceful shutdown") stops readiness
//     and new connections first, lets waiting and in-flight requests go on
//     for up to shutdown_timeout (or until Abort), then answers what still
//     waits "draining" and cuts the rest. A reload during the drain is
//     ignored.
//   - Run owns every goroutine it starts (listeners, the config file
//     watch) and returns only once they have ended.
package server
