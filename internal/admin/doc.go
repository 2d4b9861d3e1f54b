// Package admin serves proxyd's admin listener: liveness (/healthz),
// readiness (/readyz, 503 while draining), and the endpoints later issues
// add (/api/v1/…, /metrics). It takes plain values and interfaces; it never
// reads configuration files or the environment.
package admin
