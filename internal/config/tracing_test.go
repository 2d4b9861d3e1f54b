package config

import (
	"math"
	"testing"
)

// TestValidateTracing changes tracing.* in the defaults; want is the whole
// error ("" = valid): the key and the reason.
func TestValidateTracing(t *testing.T) {
	tests := []struct {
		name string
		tr   Tracing
		want string
	}{
		{"off", Tracing{OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1}, ""},
		{"http", Tracing{OTLPEndpoint: "http://collector:4318", OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1}, ""},
		{"https with path", Tracing{OTLPEndpoint: "https://otlp.example.com/otlp/v1/traces", OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 0.1}, ""},
		{"grpc host:port", Tracing{OTLPEndpoint: "collector:4317", OTLPProtocol: TracingGRPC, SampleRatio: 0}, ""},
		{"grpc URL", Tracing{OTLPEndpoint: "http://collector:4317", OTLPProtocol: TracingGRPC, SampleRatio: 1}, ""},
		{"http without scheme", Tracing{OTLPEndpoint: "collector:4318", OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1},
			`tracing.otlp_endpoint: must be an http or https URL such as "http://collector:4318", got "collector:4318"`},
		{"http other scheme", Tracing{OTLPEndpoint: "grpc://collector:4318", OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1},
			`tracing.otlp_endpoint: must be an http or https URL such as "http://collector:4318", got "grpc://collector:4318"`},
		{"http no host", Tracing{OTLPEndpoint: "http:///v1/traces", OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1},
			`tracing.otlp_endpoint: has no host: "http:///v1/traces"`},
		{"http credentials", Tracing{OTLPEndpoint: "http://u:p@collector:4318", OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1},
			`tracing.otlp_endpoint: must not carry credentials; set OTEL_EXPORTER_OTLP_HEADERS instead`},
		{"http query", Tracing{OTLPEndpoint: "http://collector:4318/?a=b", OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1},
			`tracing.otlp_endpoint: must have no query or fragment, got "http://collector:4318/?a=b"`},
		{"grpc no port", Tracing{OTLPEndpoint: "collector", OTLPProtocol: TracingGRPC, SampleRatio: 1},
			`tracing.otlp_endpoint: must be host:port or an http(s) URL for grpc, such as "collector:4317", got "collector"`},
		{"grpc bad port", Tracing{OTLPEndpoint: "collector:0", OTLPProtocol: TracingGRPC, SampleRatio: 1},
			`tracing.otlp_endpoint: must be host:port or an http(s) URL for grpc, such as "collector:4317", got "collector:0"`},
		{"grpc bad URL scheme", Tracing{OTLPEndpoint: "ftp://collector:4317", OTLPProtocol: TracingGRPC, SampleRatio: 1},
			`tracing.otlp_endpoint: must be an http or https URL such as "http://collector:4318", got "ftp://collector:4317"`},
		{"protocol", Tracing{OTLPProtocol: "http/json", SampleRatio: 1},
			`tracing.otlp_protocol: must be http/protobuf or grpc, got "http/json"`},
		{"ratio above 1", Tracing{OTLPProtocol: TracingHTTPProtobuf, SampleRatio: 1.5},
			`tracing.sample_ratio: must be from 0 to 1, got 1.5`},
		{"ratio negative", Tracing{OTLPProtocol: TracingHTTPProtobuf, SampleRatio: -0.1},
			`tracing.sample_ratio: must be from 0 to 1, got -0.1`},
		{"ratio NaN", Tracing{OTLPProtocol: TracingHTTPProtobuf, SampleRatio: math.NaN()},
			`tracing.sample_ratio: must be from 0 to 1, got NaN`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Tracing = tc.tr
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Validate() = %q\nwant         %q", got, tc.want)
			}
		})
	}
}
