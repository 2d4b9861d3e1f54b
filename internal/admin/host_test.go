package admin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// requestHost is the Host of httptest.NewRequest: in-process tests list it
// in AllowedHosts.
const requestHost = "example.com"

// allowedName is the admin.allowed_hosts entry of the tests below.
const allowedName = "proxyd-admin.internal"

// rawExchange sends head (request line and headers, without the final
// CRLF) and body on a new connection to addr, exactly as given, and
// returns the answer.
func rawExchange(t *testing.T, addr, head, body string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if body != "" {
		head += fmt.Sprintf("Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	if _, err := io.WriteString(conn, head+"Connection: close\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: no answer: %v", head, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: reading the answer: %v", head, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// newHostServer is an admin server with admin.allowed_hosts =
// [allowedName], no token, metrics, ready, on a real listener on
// 127.0.0.1.
func newHostServer(t *testing.T) (addr string, b *fakeBackend) {
	t.Helper()
	b = newFakeBackend()
	s := New(Config{AllowedHosts: []string{allowedName}}, Deps{Backend: b, Clock: b.clock, Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# metrics\n")
	})})
	s.SetReady(true)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		b.d.Close()
	})
	return srv.Listener.Addr().String(), b
}

// TestHostCheckOverSockets: over a real admin listener with no token, a
// PATCH whose Host is a name not listed (what a page that rebinds its own
// name to 127.0.0.1 makes the browser send) is refused 421 with a text
// body naming the Host and the key, and the limits stay as they were;
// every other endpoint is refused the same way. IP literals, localhost (any
// case, trailing dot) and a listed name are answered, so probes by pod IP
// keep working.
func TestHostCheckOverSockets(t *testing.T) {
	addr, b := newHostServer(t)
	_, port, _ := net.SplitHostPort(addr)
	rateOf := func() float64 {
		t.Helper()
		code, _, body := rawExchange(t, addr, "GET /api/v1/limits HTTP/1.1\r\nHost: 127.0.0.1:"+port+"\r\n", "")
		var l struct{ Rate float64 }
		if code != 200 || json.Unmarshal([]byte(body), &l) != nil {
			t.Fatalf("GET /api/v1/limits: %d %s", code, body)
		}
		return l.Rate
	}
	before := rateOf()

	refused := []struct {
		host, target string // target "": origin-form
		hint         string // the name the body suggests listing; "": none
	}{
		{host: "attacker.example:" + port, hint: "attacker.example"},
		{host: "attacker.example", hint: "attacker.example"},
		{host: "Attacker.Example.:" + port, hint: "attacker.example"},
		{host: "127.0.0.1.nip.io:" + port, hint: "127.0.0.1.nip.io"},
		{host: "localhost.attacker.example", hint: "localhost.attacker.example"},
		{host: allowedName + ".attacker.example", hint: allowedName + ".attacker.example"},
		{host: "sub." + allowedName, hint: "sub." + allowedName},
		{host: "localhost..:" + port},
		{host: "[::1"},
		{host: "::1"},
		{host: "[127.0.0.1]:" + port},
		{host: "[localhost]"},
		{host: "127.0.0.1:http"},
		// The authority of an absolute-form target is the request's host
		// (RFC 9112 §3.2.2), whatever the Host header says.
		{host: "127.0.0.1:" + port, target: "http://attacker.example:" + port + "/api/v1/limits", hint: "attacker.example"},
	}
	for i, tc := range refused {
		target := tc.target
		if target == "" {
			target = "/api/v1/limits"
		}
		body := fmt.Sprintf(`{"rate":%d}`, 1000+i)
		code, h, msg := rawExchange(t, addr, "PATCH "+target+" HTTP/1.1\r\nHost: "+tc.host+"\r\n", body)
		if code != http.StatusMisdirectedRequest {
			t.Errorf("PATCH %s, Host %q: %d %q, want 421", target, tc.host, code, msg)
			continue
		}
		wantHost := tc.host
		if tc.target != "" {
			wantHost = "attacker.example:" + port
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(msg, fmt.Sprintf("got Host %q", wantHost)) || !strings.Contains(msg, "admin.allowed_hosts") {
			t.Errorf("Host %q: 421 with %s %q: want a text body naming the Host and admin.allowed_hosts", tc.host, ct, msg)
		}
		hint := fmt.Sprintf("add %q to admin.allowed_hosts", tc.hint)
		if tc.hint != "" && !strings.Contains(msg, hint) || tc.hint == "" && strings.Contains(msg, "to allow it") {
			t.Errorf("Host %q: body %q, want the hint %q", tc.host, msg, tc.hint)
		}
	}
	if got := rateOf(); got != before || b.sets != 0 {
		t.Fatalf("after refused PATCHes: rate %v (was %v), %d changes", got, before, b.sets)
	}

	// Every endpoint, open ones included, is refused to a foreign name.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/dashboard", "/dashboard/app.js", "/api/v1/limits", "/api/v1/queue", "/api/v1/stats", "/nope"} {
		if code, _, msg := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: attacker.example:"+port+"\r\n", ""); code != http.StatusMisdirectedRequest {
			t.Errorf("GET %s, Host attacker.example: %d %q, want 421", path, code, msg)
		}
	}

	// Answered: IP literals (any address: a probe by pod IP), localhost,
	// the listed name; with or without a port.
	allowed := []string{
		"127.0.0.1:" + port, "127.0.0.1", "[::1]:" + port, "[::1]", "10.1.2.3:9090", "[2001:db8::7]:9090", "[::ffff:127.0.0.1]",
		"localhost:" + port, "localhost", "LOCALHOST:" + port, "LocalHost", "localhost.:" + port, "localhost:",
		allowedName + ":" + port, allowedName, "PROXYD-ADMIN.Internal:" + port, allowedName + ".",
	}
	for i, host := range allowed {
		rate := 2000 + i
		code, _, msg := rawExchange(t, addr, "PATCH /api/v1/limits HTTP/1.1\r\nHost: "+host+"\r\n", fmt.Sprintf(`{"rate":%d}`, rate))
		if code != 200 {
			t.Errorf("PATCH, Host %q: %d %q, want 200", host, code, msg)
			continue
		}
		if got := rateOf(); got != float64(rate) {
			t.Errorf("PATCH, Host %q: rate %v afterwards, want %d", host, got, rate)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/dashboard"} {
		for _, host := range []string{"10.244.1.17:9090", "[fd00::17]:9090", "127.0.0.1"} {
			if code, _, msg := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n", ""); code != 200 {
				t.Errorf("GET %s, Host %q: %d %q, want 200", path, host, code, msg)
			}
		}
	}
	// No Host at all (HTTP/1.0), or an empty one: no browser sends that.
	if code, _, msg := rawExchange(t, addr, "GET /healthz HTTP/1.0\r\n", ""); code != 200 {
		t.Errorf("HTTP/1.0 without Host: %d %q, want 200", code, msg)
	}
	if code, _, msg := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost:\r\n", ""); code != 200 {
		t.Errorf("empty Host: %d %q, want 200", code, msg)
	}
}

// TestHostCheckWithToken: the Host check comes first, token or not, and a
// server without admin.allowed_hosts answers IP literals and localhost only.
func TestHostCheckWithToken(t *testing.T) {
	srv, b := newTestServer(t, "s3cret")
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	auth := "Authorization: Bearer s3cret\r\n"
	for host, want := range map[string]int{"attacker.example:" + port: 421, allowedName: 421, "localhost:" + port: 200, "127.0.0.1:" + port: 200} {
		if code, _, msg := rawExchange(t, srv.Listener.Addr().String(), "PATCH /api/v1/limits HTTP/1.1\r\nHost: "+host+"\r\n"+auth, `{"rate":7}`); code != want {
			t.Errorf("PATCH with the token, Host %q: %d %q, want %d", host, code, msg, want)
		}
	}
	if code, _, _ := rawExchange(t, srv.Listener.Addr().String(), "GET /healthz HTTP/1.1\r\nHost: attacker.example\r\n", ""); code != 421 {
		t.Errorf("GET /healthz, Host attacker.example: %d, want 421", code)
	}
	if l, _ := b.Limits(); l.Rate != 7 || b.sets != 2 {
		t.Errorf("rate %v after %d changes, want 7 after 2", l.Rate, b.sets)
	}
}

// TestHostCheckAllowed is the decision alone, for Host values a server
// would not let through the socket (non-ASCII) or that are awkward to
// send.
func TestHostCheckAllowed(t *testing.T) {
	h := newHostCheck([]string{"Kube-Admin.internal"})
	for host, want := range map[string]bool{
		"":                          true,
		"kube-admin.internal":       true,
		"KUBE-ADMIN.INTERNAL:1":     true,
		"kube-admin.internal.":      true,
		"\u212aube-admin.internal":  false, // Kelvin sign: strings.ToLower makes it "k"
		"[fe80::1%25eth0]:9090":     true,
		"[::1]:":                    true,
		"[::1]x":                    false,
		"[::1]:9x":                  false,
		"1.2.3.4:5:6":               false,
		":9090":                     false,
		".":                         false,
		"kube-admin.internal..":     false,
		"kube-admin":                false,
		"localhost\x00":             false,
		"locaLHOST.":                true,
		"0x7f.1":                    false, // not a literal netip parses; browsers send 127.0.0.1
		"2130706433":                false,
		"[v1.fe80::a+en1]":          false,
		"[::1]%00":                  false,
		"127.0.0.1\u00a0":           false,
		"kube-admin.internal:65536": true, // any port: the listener is the one it came in on
	} {
		if got := h.allowed(host); got != want {
			t.Errorf("allowed(%q) = %v, want %v", host, got, want)
		}
	}
	var zero hostCheck
	if !zero.allowed("localhost") || zero.allowed("kube-admin.internal") {
		t.Error("the zero hostCheck must answer localhost and nothing listed")
	}
}

// TestOpenAPIDocumentsMisdirected: every documented operation answers a
// foreign Host 421, and documents that answer.
func TestOpenAPIDocumentsMisdirected(t *testing.T) {
	_, ops := loadOpenAPI(t)
	s, _ := newSpecServer(t)
	for _, o := range ops {
		r := httptest.NewRequest(o.method, o.path, strings.NewReader(string(o.exampleBody(t))))
		r.Host = "attacker.example:9090"
		r.Header.Set("Authorization", "Bearer "+specToken)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusMisdirectedRequest {
			t.Errorf("%s %s, Host attacker.example: %d, want 421", o.method, o.path, w.Code)
		}
		if !o.documents(http.StatusMisdirectedRequest) {
			t.Errorf("%s %s: 421 is not among the documented responses %v", o.method, o.path, slices.Sorted(maps.Keys(o.op.Responses)))
		}
	}
}
