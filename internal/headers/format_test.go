package headers

import (
	"math"
	"testing"
	"time"
)

func TestProxyStatus(t *testing.T) {
	cases := []struct {
		name    string
		errType string
		details string
		want    string
	}{
		{name: "queue full", errType: ErrorTypeConnectionLimitReached, details: "queue full",
			want: `proxyd; error=connection_limit_reached; details="queue full"`},
		{name: "no details", errType: ErrorTypeDNSError, want: "proxyd; error=dns_error"},
		{name: "details only", details: "draining", want: `proxyd; details="draining"`},
		{name: "nothing", want: "proxyd"},
		{name: "quote and backslash", errType: ErrorTypeHTTPRequestError, details: `bad "X-Priority" \ value`,
			want: `proxyd; error=http_request_error; details="bad \"X-Priority\" \\ value"`},
		{name: "control characters", errType: "x", details: "a\r\nb\tc\x00\x7f",
			want: `proxyd; error=x; details="a??b?c??"`},
		{name: "one ? per rune", errType: "x", details: "café ☕",
			want: `proxyd; error=x; details="caf? ?"`},
		{name: "invalid UTF-8", errType: "x", details: "\xff\xfe!",
			want: `proxyd; error=x; details="??!"`},
		{name: "token with colon and slash", errType: "a:b/c", want: "proxyd; error=a:b/c"},
		{name: "token starting with star", errType: "*x", want: "proxyd; error=*x"},
		{name: "token with uppercase", errType: "Dns_Error", want: "proxyd; error=Dns_Error"},
		{name: "invalid token: space", errType: "dns error", details: "x",
			want: `proxyd; error=proxy_internal_error; details="x"`},
		{name: "invalid token: digit first", errType: "1abc", want: "proxyd; error=proxy_internal_error"},
		{name: "invalid token: injection", errType: `x; details="forged"`, want: "proxyd; error=proxy_internal_error"},
		{name: "invalid token: non-ASCII", errType: "é", want: "proxyd; error=proxy_internal_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ProxyStatus(tc.errType, tc.details)
			if got != tc.want {
				t.Fatalf("ProxyStatus(%q, %q) = %s, want %s", tc.errType, tc.details, got, tc.want)
			}
			checkProxyStatusParses(t, got)
		})
	}
}

// checkProxyStatusParses checks that v is printable ASCII and an RFC 8941
// List of one member, the token proxyd.
func checkProxyStatusParses(t testing.TB, v string) member {
	t.Helper()
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			t.Fatalf("Proxy-Status %q has byte %#x at %d", v, v[i], i)
		}
	}
	var members []member
	if err := parseList(v, func(m member) { members = append(members, m) }); err != nil {
		t.Fatalf("Proxy-Status %q is not a valid List: %v", v, err)
	}
	if len(members) != 1 || members[0].value.kind != kindToken || members[0].value.str != ProxyName {
		t.Fatalf("Proxy-Status %q: want one member, the token %s", v, ProxyName)
	}
	return members[0]
}

func TestSPECProxyStatusExamples(t *testing.T) {
	// docs/operations.md, "Proxy-Status errors", spelled out.
	for errType, details := range map[string]string{
		"connection_limit_reached": "queue full",
		"proxy_internal_response":  "draining",
	} {
		want := "proxyd; error=" + errType + `; details="` + details + `"`
		if got := ProxyStatus(errType, details); got != want {
			t.Errorf("ProxyStatus(%q, %q) = %s, want %s", errType, details, got, want)
		}
	}
	if got, want := ProxyStatus(ErrorTypeDestinationNotFound, ""), "proxyd; error=destination_not_found"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got, want := ProxyStatus(ErrorTypeProxyLoopDetected, ""), "proxyd; error=proxy_loop_detected"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	cases := []struct {
		in   time.Duration
		want string
	}{
		{in: 0, want: "1"},
		{in: -5 * time.Second, want: "1"},
		{in: math.MinInt64, want: "1"},
		{in: 1, want: "1"},
		{in: 999 * time.Millisecond, want: "1"},
		{in: time.Second, want: "1"},
		{in: time.Second + 1, want: "2"},
		{in: 1500 * time.Millisecond, want: "2"},
		{in: 30 * time.Second, want: "30"},
		{in: time.Hour, want: "3600"},
		{in: math.MaxInt64, want: "9223372037"},
	}
	for _, tc := range cases {
		if got := RetryAfterSeconds(tc.in); got != tc.want {
			t.Errorf("RetryAfterSeconds(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestServerTiming(t *testing.T) {
	cases := []struct {
		queue, upstream time.Duration
		want            string
	}{
		{queue: 125 * time.Microsecond, upstream: 12500 * time.Microsecond, want: "queue;dur=0.125, upstream;dur=12.5"},
		{queue: 0, upstream: 0, want: "queue;dur=0, upstream;dur=0"},
		{queue: 1, upstream: 499, want: "queue;dur=0, upstream;dur=0"},
		{queue: 500, upstream: 1500, want: "queue;dur=0.001, upstream;dur=0.002"},
		{queue: time.Second, upstream: 2 * time.Hour, want: "queue;dur=1000, upstream;dur=7200000"},
		{queue: 1234567, upstream: 10100 * time.Microsecond, want: "queue;dur=1.235, upstream;dur=10.1"},
		{queue: 999999999, upstream: 20 * time.Microsecond, want: "queue;dur=1000, upstream;dur=0.02"},
		{queue: -time.Second, upstream: math.MinInt64, want: "queue;dur=0, upstream;dur=0"},
		{queue: math.MaxInt64, upstream: 1, want: "queue;dur=9223372036854.775, upstream;dur=0"},
	}
	for _, tc := range cases {
		if got := ServerTiming(tc.queue, tc.upstream); got != tc.want {
			t.Errorf("ServerTiming(%v, %v) = %s, want %s", tc.queue, tc.upstream, got, tc.want)
		}
	}
}
