// Package admin serves proxyd's admin listener (docs/admin-api.md): liveness
// (/healthz), readiness (/readyz, 503 while draining), Prometheus metrics
// (/metrics, a handler it is given), the JSON API under /api/v1/ to read
// the queue and to read and change the live limits, and the live dashboard
// (docs/admin-api.md, "GET /dashboard", fed by /api/v1/stats). It takes plain values and
// interfaces (Config, Deps, Backend); it never reads configuration files or
// the environment.
//
// Invariants:
//
//   - Every request, on every route, passes the Host check first
//     (host.go): its Host must be an IP literal, localhost or a name in
//     Config.AllowedHosts, else it is answered 421 before routing and
//     before the token check, so that a web page cannot reach the listener
//     through DNS rebinding (docs/admin-api.md, "Host check").
//   - Every route under /api/ is registered on one inner mux behind the
//     token check; there is no other way to add a route, so none can skip
//     it. /healthz, /readyz and /metrics stay open.
//   - A change (PATCH, PUT) is decoded strictly — exact, documented field
//     names, each at most once, a JSON object — by the configuration's own
//     decoder (config.Decode, JSON syntax), then merged with the live
//     limits, validated and applied whole in one Backend.UpdateLimits call,
//     under the backend's lock. This package owns that validation; the
//     backend only applies. On any problem nothing changes, and the 400
//     lists every problem found (bounded: long input is quoted in part).
//   - Request bodies are at most 64 KiB; a larger declared length is
//     refused before reading.
//   - /api/v1/stats is computed when asked, from the Backend's snapshot and
//     the metrics' cumulative series (Deps.Counts); nothing is sampled or
//     kept for it, so the dashboard costs nothing while nobody watches.
//     Rates and windowed quantiles are the page's arithmetic on two
//     snapshots; the server stays stateless.
//   - /dashboard is open (it holds no data) and self-contained: its files
//     are embedded (go:embed) and served with a Content-Security-Policy
//     that allows this origin only.
package admin
