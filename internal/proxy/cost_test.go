package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/outcome"
)

// Pricing requests in tokens over real sockets (cost.go; docs/shaping.md,
// "LLM APIs: pricing requests").

// costEnv is a proxy whose every destination name dials the one test
// upstream o: llm.test falls under a rule with a tokens quota (and the
// given cost), plain.test under a rule without one (its own cost header
// X-Cost), other names under no rule.
func costEnv(t *testing.T, handle http.HandlerFunc, c *config.Cost, opts ...func(*setup)) (*env, *origin, func(host, path string) string) {
	t.Helper()
	var upAddr string
	opts = append([]func(*setup){func(s *setup) {
		s.cfg.Hosts = []config.HostRule{
			{Match: "llm.test", Quotas: []config.Quota{{Limit: 100000, Per: time.Minute, Unit: config.QuotaTokens}}, Cost: c},
			{Match: "plain.test", Cost: &config.Cost{Header: "X-Cost"}},
		}
		s.fwd.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, upAddr)
		}
	}}, opts...)
	e := newEnv(t, opts...)
	o := e.newOrigin(handle)
	upAddr = strings.TrimPrefix(o.URL, "http://")
	_, port, _ := net.SplitHostPort(upAddr)
	return e, o, func(host, path string) string { return "http://" + host + ":" + port + path }
}

// tokensUsed is the first hosts rule's tokens quota's use now.
func (e *env) tokensUsed() int {
	for _, q := range e.disp.Stats().Hosts[0].Quotas {
		if q.Quota.Unit == config.QuotaTokens {
			return q.Used
		}
	}
	e.t.Fatal("no tokens quota")
	return 0
}

// The cost header: a valid one prices the request and is never
// forwarded; an invalid one, or two, is a 400 that is never forwarded; a
// cost above the quota's limit is refused at once without Retry-After.
// Under a rule without a tokens quota, and under none, the header is
// removed and ignored.
func TestCostHeader(t *testing.T) {
	t.Parallel()
	e, o, url := costEnv(t, nil, nil)

	res, id := e.get(url("llm.test", "/priced"), "X-Proxy-Cost", "250")
	wantStatus(t, res, http.StatusOK)
	if h := o.got("/priced").Header; h.Get("X-Proxy-Cost") != "" {
		t.Errorf("X-Proxy-Cost forwarded: %q", h)
	}
	if r := e.record(id); r.CostEstimate != 250 || r.CostRule != "llm.test" || r.CostReported {
		t.Errorf("record cost %d rule %q reported %v, want 250 under llm.test, no usage", r.CostEstimate, r.CostRule, r.CostReported)
	}
	if u := e.tokensUsed(); u != 250 {
		t.Errorf("tokens used %d, want 250 (no usage in the answer: the estimate stays)", u)
	}

	for _, tt := range []struct {
		name string
		hdr  []string
		want string
	}{
		{"letters", []string{"X-Proxy-Cost", "banana"}, `X-Proxy-Cost: invalid cost: \"banana\" is not a positive integer of tokens (digits only)`},
		{"zero", []string{"X-Proxy-Cost", "0"}, "X-Proxy-Cost: invalid cost: 0; want a positive integer of tokens"},
		{"two values", []string{"X-Proxy-Cost", "5", "X-Proxy-Cost", "6"}, "X-Proxy-Cost: more than one value"},
	} {
		res, _ := e.get(url("llm.test", "/bad-"+tt.name), tt.hdr...)
		wantAnswer(t, res, http.StatusBadRequest, proxyStatus("http_request_error", tt.want), false)
		o.never("/bad-" + tt.name)
	}

	res, id = e.get(url("llm.test", "/huge"), "X-Proxy-Cost", "100001")
	wantAnswer(t, res, http.StatusServiceUnavailable, proxyStatus("connection_limit_reached", "cost exceeds quota"), false)
	if r := e.record(id); r.Outcome != outcome.Rejected || r.Admitted {
		t.Errorf("record %+v, want rejected, never admitted", r)
	}
	o.never("/huge")

	// Not read where no tokens quota prices: removed and forwarded.
	for _, host := range []string{"plain.test", "other.test"} {
		res, id := e.get(url(host, "/"+host), "X-Proxy-Cost", "banana", "X-Cost", "7")
		wantStatus(t, res, http.StatusOK)
		h := o.got("/" + host).Header
		if h.Get("X-Proxy-Cost") != "" {
			t.Errorf("%s: X-Proxy-Cost forwarded", host)
		}
		if got, want := h.Get("X-Cost"), map[string]string{"plain.test": "", "other.test": "7"}[host]; got != want {
			t.Errorf("%s: X-Cost forwarded as %q, want %q (a rule's own header is removed under that rule only)", host, got, want)
		}
		if r := e.record(id); r.CostEstimate != 0 {
			t.Errorf("%s: priced at %d", host, r.CostEstimate)
		}
	}
}

// chatBody is an OpenAI chat request of about size bytes asking for
// maxTokens, of which the mock provider answers completion.
func chatBody(size, maxTokens, completion int, stream bool) string {
	const head = `{"model":"m","messages":[{"role":"user","content":"`
	tail := fmt.Sprintf(`"}],"max_tokens":%d,"mock_completion_tokens":%d,"stream":%v,"stream_options":{"include_usage":true}}`, maxTokens, completion, stream)
	return head + strings.Repeat("x", max(0, size-len(head)-len(tail))) + tail
}

// hashBody answers the sha-256 of the request body it read.
func hashBody(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(b)
	_, _ = fmt.Fprintf(w, "%d %s", len(b), hex.EncodeToString(sum[:]))
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return fmt.Sprintf("%d %s", len(s), hex.EncodeToString(sum[:]))
}

// opaque hides a reader's length: the client sends it chunked.
type opaque struct{ io.Reader }

// estimate: body prices a JSON body read before admission as len/4 +
// max_tokens, and forwards the same bytes: whole, with a length or
// chunked; a body over max_body (read in part or not at all) or not JSON
// is priced cost.default and forwarded whole; a retried PUT sends it
// again.
func TestCostBodyEstimate(t *testing.T) {
	t.Parallel()
	def, maxBody := int64(777), config.ByteSize(4096)
	var mu sync.Mutex
	attempts := map[string]int{}
	handle := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts[r.URL.Path]++
		n := attempts[r.URL.Path]
		mu.Unlock()
		if r.Method == http.MethodPut && n == 1 {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusBadGateway) // retried
			return
		}
		hashBody(w, r)
	}
	e, _, url := costEnv(t, handle, &config.Cost{Default: &def, MaxBody: &maxBody}, func(s *setup) {
		s.cfg.Upstream.Retry.Attempts = 1
		s.cfg.Upstream.Retry.On = []string{"502"}
		s.cfg.Upstream.Retry.BackoffBase, s.cfg.Upstream.Retry.BackoffMax = time.Millisecond, time.Millisecond
	})
	small := chatBody(1000, 300, 10, false)
	big := chatBody(10000, 300, 10, false)
	for _, tt := range []struct {
		name   string
		method string
		body   string
		chunk  bool
		want   int64
	}{
		{"json", http.MethodPost, small, false, int64(len(small)/4 + 300)},
		{"json chunked", http.MethodPost, small, true, int64(len(small)/4 + 300)},
		{"json retried", http.MethodPut, small, false, int64(len(small)/4 + 300)},
		{"json chunked retried", http.MethodPut, small, true, int64(len(small)/4 + 300)},
		{"over max_body", http.MethodPost, big, false, def},
		{"over max_body chunked", http.MethodPost, big, true, def},
		{"over max_body retried", http.MethodPut, big, false, def},
		{"not json", http.MethodPost, small[:len(small)-1], false, def},
		{"no body", http.MethodGet, "", false, def},
	} {
		var body io.Reader = strings.NewReader(tt.body)
		if tt.chunk {
			body = opaque{body}
		}
		if tt.body == "" {
			body = nil
		}
		path := "/" + strings.ReplaceAll(tt.name, " ", "-")
		r := e.req(tt.method, url("llm.test", path), body)
		res := e.do(r)
		wantStatus(t, res, http.StatusOK)
		if res.body != hashOf(tt.body) {
			t.Errorf("%s: upstream got %q, want %q", tt.name, res.body, hashOf(tt.body))
		}
		rec := e.record(idOf(r))
		if rec.CostEstimate != tt.want {
			t.Errorf("%s: priced %d, want %d", tt.name, rec.CostEstimate, tt.want)
		}
		if wantRetries := map[bool]int{true: 1}[tt.method == http.MethodPut]; rec.Retries != wantRetries {
			t.Errorf("%s: %d retries, want %d", tt.name, rec.Retries, wantRetries)
		}
	}
}

// A client that leaves while its body is read for the estimate is
// canceled and never forwarded, as one that leaves while it waits.
func TestCostBodyClientLeaves(t *testing.T) {
	t.Parallel()
	e, o, url := costEnv(t, hashBody, nil)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	target := url("llm.test", "/left")
	_, _ = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: llm.test\r\nX-Request-Id: left\r\nContent-Length: 1000\r\n\r\n{\"max_tokens\":", target)
	c.Close() // 985 bytes short
	r := e.wantRecord("left", outcome.Canceled, outcome.StatusClientClosed)
	if r.Admitted {
		t.Error("admitted")
	}
	o.never("/left")
}
