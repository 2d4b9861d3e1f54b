// Package admin serves proxyd's admin listener (SPEC §6): liveness
// (/healthz), readiness (/readyz, 503 while draining), Prometheus metrics
// (/metrics, a handler it is given) and the JSON API under /api/v1/ to read
// the queue and to read and change the live limits. It takes plain values
// and interfaces (Config, Deps, Backend); it never reads configuration
// files or the environment.
//
// Invariants:
//
//   - Every route under /api/ is registered on one inner mux behind the
//     token check; there is no other way to add a route, so none can skip
//     it. /healthz, /readyz and /metrics stay open.
//   - A change (PATCH, PUT) is decoded strictly — exact, documented field
//     names, each at most once, a JSON object — then merged with the live
//     limits, validated and applied whole in one Backend.UpdateLimits call,
//     under the backend's lock. This package owns that validation; the
//     backend only applies. On any problem nothing changes, and the 400
//     lists every problem found (bounded: long input is quoted in part).
//   - Request bodies are at most 64 KiB; a larger declared length is
//     refused before reading.
package admin
