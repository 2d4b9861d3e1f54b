package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/headers"
	"github.com/proxyd/proxyd/internal/testnet"
)

// rawAnswer sends request on a fresh connection to the proxy and reads the
// answer as a raw client does: the status line as sent, then the rest.
func rawAnswer(t *testing.T, addr, request string) (line string, resp *http.Response, body string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return "", nil, ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, request); err != nil {
		t.Error(err)
		return "", nil, ""
	}
	br := bufio.NewReader(c)
	line, err = br.ReadString('\n')
	if err != nil {
		t.Errorf("reading the status line: %v", err)
		return line, nil, ""
	}
	method, _, _ := strings.Cut(request, " ")
	resp, err = http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)), &http.Request{Method: method})
	if err != nil {
		t.Errorf("parsing the answer: %v", err)
		return line, nil, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return line, resp, string(b)
}

// timeoutError is a dial that timed out (a firewall dropping SYNs).
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// Every answer proxyd makes itself (docs/operations.md, "Proxy-Status
// errors") tells its error, its details and, where one exists, the setting
// that would change it: in the reason phrase (what clients print, a
// refused CONNECT's included) and in the text body; Proxy-Status carries
// the error and details. Read over real sockets by a raw client.
func TestAnswersExplainThemselves(t *testing.T) {
	t.Parallel()
	get := func(target string, hdr ...string) string {
		u := strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "https://")
		host, _, _ := strings.Cut(u, "/")
		return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + strings.Join(hdr, "") + "\r\n"
	}
	type row struct {
		name    string
		opts    []func(*setup)
		prepare func(e *env) (request string) // may start what holds the proxy busy
		then    func(e *env)                  // run once the request waits in the queue
		status  int
		errType string
		details string // "*" suffix: a prefix
		hint    string // with {ra}: the Retry-After value
		retry   bool
	}
	rows := []row{
		{name: "queue full", opts: []func(*setup){full(1)}, prepare: func(e *env) string {
			o := e.newOrigin(nil)
			o.hold("")
			e.goDo(e.req(http.MethodGet, o.URL+"/waiting", nil))
			e.waitDepth(1)
			return get(o.URL+"/refused", "X-Priority: 5\r\n")
		}, status: 503, errType: "connection_limit_reached", details: "queue full",
			hint: "retry after {ra}s; see limits.rate, limits.queue_size", retry: true},
		{name: "refused CONNECT: queue full", opts: []func(*setup){full(1)}, prepare: func(e *env) string {
			o := e.newOrigin(nil)
			o.hold("")
			e.goDo(e.req(http.MethodGet, o.URL+"/waiting", nil))
			e.waitDepth(1)
			echo := e.echoServer()
			return "CONNECT " + echo + " HTTP/1.1\r\nHost: " + echo + "\r\n\r\n"
		}, status: 503, errType: "connection_limit_reached", details: "queue full",
			hint: "retry after {ra}s; see limits.rate, limits.queue_size", retry: true},
		{name: "shed", opts: []func(*setup){full(1)}, prepare: func(e *env) string {
			o := e.newOrigin(nil)
			o.hold("")
			return get(o.URL+"/shed", "X-Priority: 5\r\n")
		}, then: func(e *env) {
			o := e.newOrigin(nil)
			e.goDo(e.req(http.MethodGet, o.URL+"/urgent", nil, "X-Priority", "1"))
		}, status: 503, errType: "connection_limit_reached", details: "shed",
			hint: "a more urgent request took its place; retry after {ra}s", retry: true},
		{name: "client queue full", opts: []func(*setup){func(s *setup) {
			s.cfg.Limits.Concurrency = 1
			s.cfg.Clients = []config.Client{{Name: "127.0.0.0/8", QueueSize: 1}}
		}}, prepare: func(e *env) string {
			o := e.newOrigin(nil)
			o.hold("")
			e.goDo(e.req(http.MethodGet, o.URL+"/waiting", nil))
			e.waitDepth(1)
			return get(o.URL + "/refused")
		}, status: 503, errType: "connection_limit_reached", details: "client queue full",
			hint: "retry after {ra}s; see clients[].queue_size", retry: true},
		{name: "queue timeout", opts: []func(*setup){full(10), func(s *setup) { s.cfg.Limits.MaxWait = 20 * time.Millisecond }},
			prepare: func(e *env) string {
				o := e.newOrigin(nil)
				o.hold("")
				return get(o.URL + "/late")
			}, status: 503, errType: "connection_limit_reached", details: "queue timeout",
			hint: "retry after {ra}s; see limits.max_wait, upstream.timeout_header", retry: true},
		{name: "draining", prepare: func(e *env) string {
			e.disp.Drain()
			return get("http://127.0.0.1:1/x")
		}, status: 503, errType: "proxy_internal_response", details: "draining",
			hint: "proxyd is shutting down; retry after {ra}s", retry: true},
		{name: "bad priority header", prepare: func(e *env) string {
			return get("http://127.0.0.1:1/x", "X-Priority: banana\r\n")
		}, status: 400, errType: "http_request_error", details: `X-Priority: invalid urgency "banana": not an integer, want 0..7`},
		{name: "bad timeout header", prepare: func(e *env) string {
			return get("http://127.0.0.1:1/x", "X-Proxy-Timeout: 0\r\n")
		}, status: 400, errType: "http_request_error", details: `X-Proxy-Timeout: invalid timeout "0": zero, must be positive`},
		{name: "DNS failure", prepare: func(e *env) string {
			return get("http://nonexistent.invalid/x")
		}, status: 502, errType: "dns_error", details: "lookup nonexistent.invalid: *"},
		{name: "connection refused", prepare: func(e *env) string {
			return get("http://{addr}/x")
		}, status: 502, errType: "connection_refused", details: "dial tcp {addr}: connect: connection refused"},
		{name: "refused CONNECT: connection refused", prepare: func(e *env) string {
			return "CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
		}, status: 502, errType: "connection_refused", details: "dial tcp {addr}: connect: connection refused"},
		{name: "connect timeout", opts: []func(*setup){func(s *setup) {
			s.fwd.Control = func(string, string, string) error { return timeoutError{} }
		}}, prepare: func(e *env) string {
			return get("http://{addr}/x")
		}, status: 504, errType: "connection_timeout", details: "dial tcp {addr}: i/o timeout", hint: "see upstream.dial_timeout"},
		{name: "response timeout", opts: []func(*setup){func(s *setup) { s.cfg.Upstream.Timeout = 50 * time.Millisecond }},
			prepare: func(e *env) string {
				o := e.newOrigin(func(w http.ResponseWriter, r *http.Request) { e.block(r, nil) })
				return get(o.URL + "/slow")
			}, status: 504, errType: "http_response_timeout", details: "no response headers within 50ms",
			hint: "see upstream.timeout, upstream.timeout_header"},
		{name: "denied by policy: address", opts: []func(*setup){defaultEgress}, prepare: func(e *env) string {
			return get("http://10.0.0.7/x")
		}, status: 403, errType: "destination_ip_prohibited", details: "10.0.0.7 is private (10.0.0.0/8)", hint: "see egress.allow"},
		{name: "refused CONNECT: denied port", opts: []func(*setup){defaultEgress}, prepare: func(e *env) string {
			return "CONNECT example.com:22 HTTP/1.1\r\nHost: example.com:22\r\n\r\n"
		}, status: 403, errType: "http_request_denied", details: "port 22 is not in egress.connect_ports [443]"},
		{name: "proxy authentication", opts: []func(*setup){withUsers("u", "p")}, prepare: func(e *env) string {
			return get("http://127.0.0.1:1/x")
		}, status: 407, errType: "http_request_denied",
			hint: "proxy authentication required: user:password in the proxy URL; see auth.htpasswd"},
		{name: "upstream certificate", prepare: func(e *env) string {
			return get(e.newTLSOrigin(nil).URL + "/x")
		}, status: 502, errType: "tls_certificate_error", details: "x509: certificate signed by unknown authority",
			hint: "a private CA? see tls.upstream_ca"},
		{name: "upstream TLS handshake", prepare: func(e *env) string {
			return get("https://" + strings.TrimPrefix(e.newOrigin(nil).URL, "http://") + "/x")
		}, status: 502, errType: "tls_protocol_error", details: "tls: first record does not look like a TLS handshake",
			hint: "not TLS: is it an http:// port?"},
		{name: "loop", prepare: func(e *env) string {
			return get("http://127.0.0.1:1/x", "Via: 1.1 proxyd\r\n")
		}, status: 508, errType: "proxy_loop_detected",
			hint: "Via names proxyd already: does a route or a proxy variable point back at it?"},
		{name: "no route", prepare: func(e *env) string {
			return "GET /nowhere HTTP/1.1\r\nHost: proxyd\r\n\r\n"
		}, status: 404, errType: "destination_not_found",
			hint: "no routes prefix matches the path; a proxy client sends absolute URLs"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts...)
			addr := testnet.FreeAddr(t)
			request := strings.ReplaceAll(tc.prepare(e), "{addr}", addr)
			type answer struct {
				line string
				resp *http.Response
				body string
			}
			got := make(chan answer, 1)
			go func() {
				line, resp, body := rawAnswer(t, e.addr, request)
				got <- answer{line, resp, body}
			}()
			if tc.then != nil {
				e.waitDepth(1)
				tc.then(e)
			}
			a := recv(t, got, "the answer")
			line, resp, body := a.line, a.resp, a.body
			if resp == nil {
				return
			}
			details := strings.ReplaceAll(tc.details, "{addr}", addr)
			ra := resp.Header.Get("Retry-After")
			if tc.retry != (ra != "") {
				t.Errorf("Retry-After %q, want one: %v", ra, tc.retry)
			}
			hint := strings.ReplaceAll(tc.hint, "{ra}", ra)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %q %q", resp.StatusCode, tc.status, line, body)
			}
			ps := resp.Header.Get("Proxy-Status")
			reason := strings.TrimSuffix(strings.TrimPrefix(line, fmt.Sprintf("HTTP/1.1 %d ", tc.status)), "\r\n")
			if prefix, ok := strings.CutSuffix(details, "*"); ok {
				// The rest is the resolver's; take it from Proxy-Status.
				got, _ := strings.CutPrefix(ps, `proxyd; error=`+tc.errType+`; details="`)
				if !strings.HasPrefix(got, prefix) {
					t.Fatalf("Proxy-Status %q, want details starting %q", ps, prefix)
				}
				details = strings.TrimSuffix(got, `"`)
			}
			if want := headers.ProxyStatus(tc.errType, details); ps != want {
				t.Errorf("Proxy-Status %q, want %q", ps, want)
			}
			want := tc.errType
			if details != "" {
				want += ": " + details
			}
			if hint != "" {
				want += " (" + hint + ")"
			}
			if reason != want {
				t.Errorf("status line %q, want reason %q", line, want)
			}
			if want := fmt.Sprintf("%d %s\n", tc.status, want); body != want {
				t.Errorf("body %q, want %q", body, want)
			}
			checkReason(t, reason)
		})
	}
}

// checkReason checks a reason phrase against RFC 9112 §4 and our length
// bound.
func checkReason(t *testing.T, reason string) {
	t.Helper()
	if len(reason) > 120 {
		t.Errorf("reason phrase of %d bytes: %q", len(reason), reason)
	}
	for i := 0; i < len(reason); i++ {
		if c := reason[i]; c != '\t' && (c < 0x20 || c > 0x7e) {
			t.Errorf("reason phrase byte %#x at %d: %q", c, i, reason)
		}
	}
}

// A reason phrase stays short and valid whatever the details hold: a long
// or hostile header value is cut in the phrase (the hint kept), whole in
// the body up to its bound.
func TestReasonPhraseBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	long := strings.Repeat("9", 300)
	line, resp, body := rawAnswer(t, e.addr, "GET http://127.0.0.1:1/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nX-Proxy-Timeout: "+long+"\xff\r\n\r\n")
	if resp == nil {
		return
	}
	if resp.StatusCode != 400 {
		t.Fatalf("status %q", line)
	}
	reason := strings.TrimSuffix(strings.TrimPrefix(line, "HTTP/1.1 400 "), "\r\n")
	checkReason(t, reason)
	if !strings.HasPrefix(reason, "http_request_error: X-Proxy-Timeout: ") || !strings.HasSuffix(reason, "...") {
		t.Errorf("reason %q: want the error and the start of its details", reason)
	}
	if len(body) > 310 || !strings.HasPrefix(body, "400 http_request_error: X-Proxy-Timeout: ") {
		t.Errorf("body %q", body)
	}
}

// HTTP/2 has no reason phrase (RFC 9113 §8.3.2): inside an intercepted
// tunnel spoken in HTTP/2 the body alone carries the details; over
// HTTP/1.1 in the same kind of tunnel, the reason phrase does too.
func TestInterceptAnswerDetails(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, intercepting("127.0.0.1"))
			o := e.newTLSOrigin(nil)
			e.trustOrigin(o)
			c := e.interceptClient(h2)
			res := roundTrip(c, e.req(http.MethodGet, o.URL+"/x", nil, "X-Priority", "9"))
			wantStatus(t, res, 400)
			phrase := `http_request_error: X-Priority: invalid urgency "9": out of range, want 0..7`
			if res.body != "400 "+phrase+"\n" {
				t.Errorf("body %q, want %q", res.body, "400 "+phrase+"\n")
			}
			want := "400 " + phrase
			if h2 {
				want = "400 Bad Request" // net/http's text: HTTP/2 sends the code only
			}
			if res.resp.Status != want {
				t.Errorf("status %q, want %q", res.resp.Status, want)
			}
			o.never("/x")
		})
	}
}
