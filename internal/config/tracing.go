package config

import (
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Tracing protocols (tracing.otlp_protocol), named as
// OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	TracingHTTPProtobuf = "http/protobuf"
	TracingGRPC         = "grpc"
)

// Tracing configures OpenTelemetry tracing (docs/operations.md,
// "Tracing"). The zero OTLPEndpoint turns it off. It changes only on
// restart.
type Tracing struct {
	// OTLPEndpoint is the collector: a URL (http or https) for
	// http/protobuf, to which /v1/traces is appended when it has no path;
	// host:port or a URL for grpc. Empty: no tracing.
	OTLPEndpoint string `mapstructure:"otlp_endpoint" yaml:"otlp_endpoint"`
	// OTLPProtocol is TracingHTTPProtobuf (the default) or TracingGRPC.
	OTLPProtocol string `mapstructure:"otlp_protocol" yaml:"otlp_protocol"`
	// SampleRatio is the share, 0 to 1, of traces without a sampled parent
	// that are recorded; a client's sampled traceparent is always followed.
	SampleRatio float64 `mapstructure:"sample_ratio" yaml:"sample_ratio"`
}

// Enabled reports whether requests are traced.
func (t Tracing) Enabled() bool { return t.OTLPEndpoint != "" }

func (t Tracing) check(p *problems) {
	switch t.OTLPProtocol {
	case TracingHTTPProtobuf, TracingGRPC:
	default:
		p.add("tracing.otlp_protocol", "must be %s or %s, got %q", TracingHTTPProtobuf, TracingGRPC, t.OTLPProtocol)
	}
	if math.IsNaN(t.SampleRatio) || t.SampleRatio < 0 || t.SampleRatio > 1 {
		p.add("tracing.sample_ratio", "must be from 0 to 1, got %v", t.SampleRatio)
	}
	if t.OTLPEndpoint == "" {
		return
	}
	if t.OTLPProtocol == TracingGRPC && !strings.Contains(t.OTLPEndpoint, "://") {
		host, port, err := net.SplitHostPort(t.OTLPEndpoint)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			p.add("tracing.otlp_endpoint", "must be host:port or an http(s) URL for grpc, such as \"collector:4317\", got %q", t.OTLPEndpoint)
		}
		return
	}
	u, err := url.Parse(t.OTLPEndpoint)
	switch {
	case err != nil:
		p.add("tracing.otlp_endpoint", "must be a URL such as \"http://collector:4318\": %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		p.add("tracing.otlp_endpoint", "must be an http or https URL such as \"http://collector:4318\", got %q", t.OTLPEndpoint)
	case u.Host == "" || u.Hostname() == "":
		p.add("tracing.otlp_endpoint", "has no host: %q", t.OTLPEndpoint)
	case u.User != nil:
		p.add("tracing.otlp_endpoint", "must not carry credentials; set OTEL_EXPORTER_OTLP_HEADERS instead")
	case u.RawQuery != "" || u.Fragment != "":
		p.add("tracing.otlp_endpoint", "must have no query or fragment, got %q", t.OTLPEndpoint)
	}
}
