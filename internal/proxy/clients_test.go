package proxy_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/outcome"
)

// withUsers turns proxy authentication on with name:password pairs
// (setup option); hashes use bcrypt's minimum cost to keep tests fast.
func withUsers(pairs ...string) func(*setup) {
	return func(s *setup) {
		var b strings.Builder
		for i := 0; i+1 < len(pairs); i += 2 {
			h, err := bcrypt.GenerateFromPassword([]byte(pairs[i+1]), bcrypt.MinCost)
			if err != nil {
				s.t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s:%s\n", pairs[i], h)
		}
		u, err := auth.Parse("test.htpasswd", []byte(b.String()))
		if err != nil {
			s.t.Fatal(err)
		}
		s.users = u
		s.cfg.Auth.Htpasswd = "test.htpasswd"
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// docs/configuration.md, "Clients: `auth`, `clients`, `fairness`": without
// valid credentials, 407 with Proxy-Authenticate; with them, forwarded, and
// the credentials never reach the upstream; CONNECT is authenticated the
// same way, and so are the requests of an intercepted tunnel (by their
// CONNECT).
func TestProxyAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withUsers("alice", "s3cret", "bob", "pa:ss"), intercepting("127.0.0.1"))
	o := e.newOrigin(nil)
	for _, tc := range []struct {
		name, cred, reason string
		status             int
	}{
		{"none", "", outcome.AuthMissing, 407},
		{"wrong password", basic("alice", "nope"), outcome.AuthInvalid, 407},
		{"unknown user", basic("mallory", "s3cret"), outcome.AuthInvalid, 407},
		{"not basic", "Bearer s3cret", outcome.AuthInvalid, 407},
		{"alice", basic("alice", "s3cret"), "", 200},
		{"bob, colon in the password", basic("bob", "pa:ss"), "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.cred != "" {
				hdr = []string{"Proxy-Authorization", tc.cred}
			}
			res, id := e.get(o.URL+"/"+strings.ReplaceAll(tc.name, " ", "-"), hdr...)
			if tc.status == 407 {
				wantAnswer(t, res, 407, proxyStatus("http_request_denied", ""), false)
				if got := res.resp.Header.Get("Proxy-Authenticate"); got != `Basic realm="proxyd"` {
					t.Errorf("Proxy-Authenticate %q", got)
				}
				r := e.wantRecord(id, outcome.Denied, 407)
				if r.Host != strings.TrimPrefix(o.URL, "http://") {
					t.Errorf("Record of a 407: host %q, want the request's", r.Host)
				}
				if r.AuthFailed != tc.reason || r.Admitted {
					t.Errorf("Record: AuthFailed %q admitted %v, want %q, not admitted", r.AuthFailed, r.Admitted, tc.reason)
				}
				return
			}
			wantStatus(t, res, 200)
			got := o.got("/" + strings.ReplaceAll(tc.name, " ", "-"))
			if v := got.Header.Get("Proxy-Authorization"); v != "" {
				t.Errorf("Proxy-Authorization forwarded: %q", v)
			}
			r := e.wantRecord(id, outcome.Forwarded, 200)
			user, _, _ := strings.Cut(tc.name, ",")
			if r.Client != user || r.ClientLabel != outcome.ClientOther {
				t.Errorf("Record client %q label %q, want %q, other", r.Client, r.ClientLabel, user)
			}
		})
	}
	for _, l := range e.logs.All() {
		for k, v := range l.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, "s3cret") || strings.Contains(s, basic("alice", "s3cret")[6:])) {
				t.Errorf("credentials in the log (%s=%q)", k, s)
			}
		}
	}

	// CONNECT: 407 without credentials; with them, the tunnel (intercepted)
	// carries requests that need none of their own.
	tc, body := e.connect("127.0.0.1:443", "X-Request-Id: connect-noauth")
	wantAnswer(t, tc.result(body), 407, proxyStatus("http_request_denied", ""), false)
	tlsOrigin := e.newTLSOrigin(nil)
	e.trustOrigin(tlsOrigin)
	c := e.interceptClient(false)
	c.Transport.(*http.Transport).GetProxyConnectHeader = func(context.Context, *url.URL, string) (http.Header, error) {
		return http.Header{"Proxy-Authorization": {basic("alice", "s3cret")}, "X-Request-Id": {"connect-auth"}}, nil
	}
	req := e.req(http.MethodGet, tlsOrigin.URL+"/inside", nil)
	wantStatus(t, roundTrip(c, req), 200)
	if r := e.wantRecord(idOf(req), outcome.Forwarded, 200); r.Client != "alice" || r.Tunnel != "connect-auth" {
		t.Errorf("request in the tunnel: client %q tunnel %q, want alice, connect-auth", r.Client, r.Tunnel)
	}
	bad := e.interceptClient(false)
	bad.Transport.(*http.Transport).GetProxyConnectHeader = func(context.Context, *url.URL, string) (http.Header, error) {
		return http.Header{"Proxy-Authorization": {basic("alice", "wrong")}}, nil
	}
	if res := roundTrip(bad, e.req(http.MethodGet, tlsOrigin.URL+"/never", nil)); res.err == nil {
		t.Errorf("a tunnel opened with wrong credentials: %v", res)
	}
	tlsOrigin.never("/never")
}

// clients entries: max_priority lowers a request's urgency (not refused),
// queue_size refuses only its own client, and the metric label is the
// entry's name.
func TestClientPolicies(t *testing.T) {
	t.Parallel()
	two := 2
	e := newEnv(t, withUsers("batch", "b", "web", "w"), func(s *setup) {
		s.cfg.Limits.Concurrency = 1
		s.cfg.Clients = []config.Client{{Name: "batch", MaxPriority: &two, QueueSize: 2}}
	})
	o := e.newOrigin(nil)
	_, held := o.hold("", "Proxy-Authorization", basic("web", "w"))
	var batch []<-chan result
	for i := range 2 {
		batch = append(batch, e.goDo(e.req(http.MethodGet, fmt.Sprintf("%s/b%d", o.URL, i), nil, "Proxy-Authorization", basic("batch", "b"), "Priority", "u=0")))
		e.waitDepth(i + 1)
	}
	// Its third is refused "client queue full"; web's is queued.
	res, id := e.get(o.URL+"/b2", "Proxy-Authorization", basic("batch", "b"))
	wantAnswer(t, res, 503, proxyStatus("connection_limit_reached", "client queue full"), true)
	e.wantRecord(id, outcome.Rejected, 503)
	web := e.goDo(e.req(http.MethodGet, o.URL+"/w0", nil, "Proxy-Authorization", basic("web", "w"), "Priority", "u=1"))
	s := e.stats("three waiting", func(s dispatch.Stats) bool { return s.Depth == 3 })
	// batch asked for u=0 and was lowered to 2; web's u=1 goes first.
	if s.ByPriority[0] != 0 || s.ByPriority[2] != 2 || s.ByPriority[1] != 1 {
		t.Errorf("waiting by priority %v, want batch's two at 2 and web's at 1", s.ByPriority)
	}
	o.release()
	wantStatus(t, recv(t, held, "the held request"), 200)
	wantStatus(t, recv(t, web, "web"), 200)
	for _, ch := range batch {
		wantStatus(t, recv(t, ch, "batch"), 200)
	}
	var order []string
	for _, p := range o.paths() {
		if p != "/hold" {
			order = append(order, p)
		}
	}
	if strings.Join(order, " ") != "/w0 /b0 /b1" {
		t.Errorf("upstream order %v, want web's urgent request first", order)
	}
	for _, r := range e.recordsOf(http.MethodGet) {
		if r.Client == "batch" && r.ClientLabel != "batch" || r.Client == "web" && r.ClientLabel != outcome.ClientOther {
			t.Errorf("client %q labelled %q", r.Client, r.ClientLabel)
		}
		if r.Client == "batch" && r.Status == 200 && r.Priority != 2 {
			t.Errorf("batch request at urgency %d, want lowered to 2", r.Priority)
		}
	}
}

// Without auth, a client is its source address, and clients entries match
// it by CIDR.
func TestClientByAddress(t *testing.T) {
	t.Parallel()
	five := 5
	e := newEnv(t, func(s *setup) {
		s.cfg.Clients = []config.Client{{Name: "127.0.0.0/8", MaxPriority: &five}}
	})
	o := e.newOrigin(nil)
	res, id := e.get(o.URL+"/x", "Priority", "u=0")
	wantStatus(t, res, 200)
	r := e.record(id)
	if r.Client != "127.0.0.1" || r.ClientLabel != "127.0.0.0/8" || r.Priority != 5 {
		t.Errorf("Record client %q label %q priority %d, want 127.0.0.1, 127.0.0.0/8, 5", r.Client, r.ClientLabel, r.Priority)
	}
}
