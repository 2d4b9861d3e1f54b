// Package tracing builds proxyd's OpenTelemetry tracer provider from
// tracing.* (docs/operations.md, "Tracing"): the OpenTelemetry Go SDK with
// a batching OTLP exporter, over HTTP (protobuf) or gRPC, and a
// parent-based sampler whose roots are kept at tracing.sample_ratio.
//
// With tracing.otlp_endpoint empty, New returns a Tracing whose Provider is
// OpenTelemetry's no-op provider and nothing is started: internal/proxy
// recognises it and skips every tracing step, so tracing off costs the
// request path nothing.
//
// The SDK reads the OTEL_* environment variables it knows
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_CERTIFICATE,
// OTEL_EXPORTER_OTLP_COMPRESSION, OTEL_BSP_*, …); the endpoint, protocol and
// sampler are tracing.*'s, which win over OTEL_EXPORTER_OTLP_ENDPOINT and
// OTEL_TRACES_SAMPLER. Export failures are logged (at most one line per
// exportLogEvery), never returned to a request.
//
// Nothing here is global: the provider is passed to internal/proxy, and
// Shutdown (at the end of proxyd's drain) flushes the spans still
// buffered.
package tracing
