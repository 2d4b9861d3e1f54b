package upstream

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{
			name: "fixed list",
			in: http.Header{
				"Connection":          {"keep-alive"},
				"Proxy-Connection":    {"keep-alive"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Authenticate":  {"Basic"},
				"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
				"Te":                  {"trailers, deflate"},
				"Trailer":             {"X-Sum"},
				"Transfer-Encoding":   {"chunked"},
				"Upgrade":             {"websocket"},
				"Accept":              {"*/*"},
			},
			want: http.Header{"Accept": {"*/*"}},
		},
		{
			name: "named in Connection, several lines, odd spacing and case",
			in: http.Header{
				"Connection":   {"x-secret ,  X-Other", ",, close"},
				"X-Secret":     {"1"},
				"X-Other":      {"2"},
				"X-End-To-End": {"3"},
			},
			want: http.Header{"X-End-To-End": {"3"}},
		},
		{
			name: "nothing to remove",
			in:   http.Header{"Authorization": {"Bearer t"}, "Content-Type": {"text/plain"}},
			want: http.Header{"Authorization": {"Bearer t"}, "Content-Type": {"text/plain"}},
		},
		{name: "empty", in: http.Header{}, want: http.Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			RemoveHopByHop(h)
			if !reflect.DeepEqual(h, tt.want) {
				t.Errorf("got %v, want %v", h, tt.want)
			}
		})
	}
}

// inbound returns a server-side style request as the proxy receives it.
func inbound(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Header = http.Header{
		"Connection":          {"X-Hop, keep-alive"},
		"X-Hop":               {"hop"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Connection":    {"keep-alive"},
		"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
		"Te":                  {"trailers"},
		"Upgrade":             {"h2c"},
		"X-Priority":          {"1"},
		"X-Proxy-Timeout":     {"2s"},
		"Priority":            {"u=1"},
		"Authorization":       {"Bearer secret"},
		"Via":                 {"1.0 fred, 1.1 p.example.net"},
		"User-Agent":          {"curl/8"},
	}
	return r
}

func TestOutbound(t *testing.T) {
	in := inbound(http.MethodPost, "http://origin.example/a?b=c", strings.NewReader("hello"))
	in.Close = true
	target := mustURL(t, "http://upstream.example:8081/v1/a?b=c")

	// Snapshot everything Outbound could touch.
	wantIn := *in
	wantInURL := *in.URL
	wantInHeader := in.Header.Clone()

	ctx := context.WithValue(context.Background(), struct{}{}, "x")
	out := Outbound(ctx, in, target, []string{"x-priority", "X-Proxy-Timeout"})

	if out.Context() != ctx {
		t.Error("out does not carry ctx")
	}
	if out.URL.String() != target.String() || out.URL == target {
		t.Errorf("URL = %v (same pointer %v), want a copy of %v", out.URL, out.URL == target, target)
	}
	if out.Host != "upstream.example:8081" || out.RequestURI != "" || out.Close {
		t.Errorf("Host %q RequestURI %q Close %v", out.Host, out.RequestURI, out.Close)
	}
	if out.Body != in.Body || out.ContentLength != 5 {
		t.Errorf("body not streamed as is: Body %v ContentLength %d", out.Body, out.ContentLength)
	}
	want := http.Header{
		"Priority":      {"u=1"},
		"Authorization": {"Bearer secret"},
		"Via":           {"1.0 fred, 1.1 p.example.net, 1.1 proxyd"},
		"User-Agent":    {"curl/8"},
	}
	if !reflect.DeepEqual(out.Header, want) {
		t.Errorf("out.Header =\n%v\nwant\n%v", out.Header, want)
	}

	// in is untouched.
	if !reflect.DeepEqual(in.Header, wantInHeader) {
		t.Errorf("in.Header modified: %v", in.Header)
	}
	if *in.URL != wantInURL || in.Host != wantIn.Host || in.RequestURI != wantIn.RequestURI ||
		!in.Close || in.Body != wantIn.Body || in.Context() != wantIn.Context() {
		t.Errorf("in modified: %+v", in)
	}
	out.Header.Set("X-New", "1")
	if in.Header.Get("X-New") != "" {
		t.Error("out.Header aliases in.Header")
	}
}

func TestOutboundBody(t *testing.T) {
	target := mustURL(t, "http://upstream.example/")
	tests := []struct {
		name     string
		in       *http.Request
		wantNil  bool
		wantLen  int64
		sameBody bool
	}{
		{name: "no body", in: httptest.NewRequest("GET", "/", nil), wantNil: true},
		{name: "empty body", in: httptest.NewRequest("POST", "/", http.NoBody), wantNil: true},
		// A client-style request: 0 with a body means unknown; keep it.
		{name: "zero length, some body", in: zeroLength(strings.NewReader("abc")), wantLen: 0, sameBody: true},
		{name: "known length", in: httptest.NewRequest("POST", "/", strings.NewReader("abc")), wantLen: 3, sameBody: true},
		{name: "unknown length", in: httptest.NewRequest("POST", "/", io.LimitReader(strings.NewReader("abc"), 3)), wantLen: -1, sameBody: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Outbound(context.Background(), tt.in, target, nil)
			if tt.wantNil {
				if out.Body != nil || out.GetBody != nil {
					t.Errorf("Body %v, want nil (golang.org/issue/16036)", out.Body)
				}
				if tt.in.Body == nil {
					t.Error("in.Body set to nil")
				}
				return
			}
			if out.Body != tt.in.Body || out.ContentLength != tt.wantLen {
				t.Errorf("Body %v ContentLength %d, want in's body and %d", out.Body, out.ContentLength, tt.wantLen)
			}
		})
	}
}

func zeroLength(r io.Reader) *http.Request {
	in := httptest.NewRequest("POST", "/", r)
	in.ContentLength = 0
	return in
}

func TestOutboundViaAndUserAgent(t *testing.T) {
	target := mustURL(t, "http://upstream.example/")
	tests := []struct {
		name         string
		major, minor int
		header       http.Header
		wantVia      string
		wantUA       []string
	}{
		{"http/1.1", 1, 1, http.Header{}, "1.1 proxyd", []string{""}},
		{"http/1.0", 1, 0, http.Header{}, "1.0 proxyd", []string{""}},
		{"http/2", 2, 0, http.Header{}, "2 proxyd", []string{""}},
		{"unknown version", 0, 0, http.Header{}, "1.1 proxyd", []string{""}},
		{"two prior lines", 1, 1, http.Header{"Via": {"1.0 a", "1.1 b (x, y)"}, "User-Agent": {"k"}},
			"1.0 a, 1.1 b (x, y), 1.1 proxyd", []string{"k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := httptest.NewRequest("GET", "/", nil)
			in.ProtoMajor, in.ProtoMinor, in.Header = tt.major, tt.minor, tt.header
			out := Outbound(context.Background(), in, target, nil)
			if got := out.Header["Via"]; len(got) != 1 || got[0] != tt.wantVia {
				t.Errorf("Via = %q, want %q", got, tt.wantVia)
			}
			if got := out.Header["User-Agent"]; !slices.Equal(got, tt.wantUA) {
				t.Errorf("User-Agent = %q, want %q", got, tt.wantUA)
			}
			if !IsLoop(out.Header) {
				t.Error("IsLoop(out) = false after AppendVia")
			}
		})
	}
}

func TestIsLoop(t *testing.T) {
	tests := []struct {
		via  []string
		want bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"1.1 proxyd"}, true},
		{[]string{"HTTP/1.1 proxyd"}, true},
		{[]string{"1.0 fred, 1.1 proxyd"}, true},
		{[]string{"1.0 fred", "1.1 proxyd"}, true},
		{[]string{"1.1 proxyd (proxyd/1.0)"}, true},
		{[]string{"1.1 proxyd:8080"}, true},
		{[]string{"2 PROXYD"}, true},
		{[]string{"  1.1\tproxyd  ,1.0 x"}, true},
		{[]string{"1.0 fred (a comment, with a comma), 1.1 proxyd"}, true},
		{[]string{"1.0 fred (nested (comment, 1.1 proxyd) x), 1.1 b"}, false},
		{[]string{`1.0 fred (escaped \) paren, 1.1 proxyd)`}, false},
		{[]string{"1.1 fred (via 1.1 proxyd)"}, false},
		{[]string{"1.1 proxyd2"}, false},
		{[]string{"1.1 myproxyd"}, false},
		{[]string{"proxyd"}, false},
		{[]string{"proxyd 1.1"}, false},
		{[]string{"1.1 p.example.net, 1.0 fred"}, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.via != nil {
			h["Via"] = tt.via
		}
		if got := IsLoop(h); got != tt.want {
			t.Errorf("IsLoop(Via: %q) = %v, want %v", tt.via, got, tt.want)
		}
	}
}

func FuzzIsLoop(f *testing.F) {
	for _, s := range []string{"1.1 proxyd", "1.0 a (b, c), HTTP/1.1 proxyd:1", `1.0 a (\), 1.1 proxyd)`, "(((", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := IsLoop(http.Header{"Via": {v}})
		if got && !strings.Contains(strings.ToLower(v), Pseudonym) {
			t.Fatalf("IsLoop(%q) = true without %q in it", v, Pseudonym)
		}
		if strings.Count(v, "(") == 0 && strings.Count(v, "\\") == 0 {
			// Without comments, appending our entry always makes a loop.
			h := http.Header{"Via": {v}}
			AppendVia(h, 1, 1)
			if !IsLoop(h) {
				t.Fatalf("IsLoop(%q) = false after AppendVia", h["Via"])
			}
		}
	})
}

// TestHopByHopOnTheWire checks both directions through a real proxy.
func TestHopByHopOnTheWire(t *testing.T) {
	seen := make(chan http.Header, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		h := w.Header()
		h.Set("Connection", "X-Resp-Hop")
		h.Set("X-Resp-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "h2c")
		h.Set("X-End", "kept")
		io.WriteString(w, "ok")
	})
	f := newForwarder(t, Config{})
	px := newProxy(t, f, up.URL, nil)

	req, _ := http.NewRequest("GET", px.URL+"/p?q=1", nil)
	req.Header = inbound("GET", "/", nil).Header
	resp, err := px.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}

	got := <-seen
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Upgrade", "X-Priority", "X-Proxy-Timeout"} {
		if v, ok := got[k]; ok {
			t.Errorf("upstream saw %s: %q", k, v)
		}
	}
	if v := got.Get("Via"); v != "1.0 fred, 1.1 p.example.net, 1.1 proxyd" {
		t.Errorf("upstream saw Via %q", v)
	}
	for _, k := range []string{"Priority", "Authorization", "User-Agent"} {
		if got.Get(k) == "" {
			t.Errorf("upstream did not see %s", k)
		}
	}

	for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("client saw %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-End") != "kept" || resp.Header.Get("Via") != "1.1 proxyd" {
		t.Errorf("client headers %v", slices.Sorted(maps.Keys(resp.Header)))
	}
}

func BenchmarkOutbound(b *testing.B) {
	in := inbound("GET", "http://origin.example/a?b=c", nil)
	target := mustURL(b, "http://upstream.example/a?b=c")
	drop := []string{"X-Priority", "X-Proxy-Timeout"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		Outbound(ctx, in, target, drop)
	}
}

// TestIsHopByHopMatchesList keeps the fast switch and the documented list
// in step.
func TestIsHopByHopMatchesList(t *testing.T) {
	for _, k := range hopHeaders {
		if !isHopByHop(k) {
			t.Errorf("%s is in hopHeaders but not isHopByHop", k)
		}
	}
	for _, k := range []string{"Via", "Priority", "Content-Length", "Host", "Authorization"} {
		if isHopByHop(k) {
			t.Errorf("%s is not hop-by-hop", k)
		}
	}
}

func TestConnectionTokens(t *testing.T) {
	h := http.Header{"Connection": {"keep-alive, x-foo ,, ", "Upgrade,\tx-BAR"}}
	got := slices.Collect(connectionTokens(h))
	want := []string{"Keep-Alive", "X-Foo", "Upgrade", "X-Bar"}
	if !slices.Equal(got, want) {
		t.Errorf("connectionTokens = %q, want %q", got, want)
	}
	if got := slices.Collect(connectionTokens(http.Header{})); len(got) != 0 {
		t.Errorf("no Connection: %q", got)
	}
}

// The drop list may come in any case; a canonical one (as proxyd's policy
// compiles it) is used as is, with no allocation per request.
func TestCanonicalKeys(t *testing.T) {
	canon := []string{"X-Priority", "X-Proxy-Timeout"}
	if got := canonicalKeys(canon); &got[0] != &canon[0] {
		t.Errorf("a canonical list was copied")
	}
	if n := testing.AllocsPerRun(100, func() { canonicalKeys(canon) }); n != 0 {
		t.Errorf("%v allocations for a canonical list, want 0", n)
	}
	mixed := []string{"X-Priority", "x-proxy-timeout"}
	if got := canonicalKeys(mixed); !slices.Equal(got, canon) || mixed[1] != "x-proxy-timeout" {
		t.Errorf("canonicalKeys(%q) = %q (input now %q), want %q and the input untouched", mixed, got, mixed, canon)
	}
}
