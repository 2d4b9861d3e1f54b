package admin

import (
	"slices"
	"strings"
	"testing"
)

// PATCH /api/v1/limits sets a hosts rule's cost, strictly; GET shows it
// with its defaults applied, and that answer PUT back changes nothing; a
// bad cost is a 400 naming the field, and nothing changes.
func TestPatchLimitsCost(t *testing.T) {
	srv, b := newTestServer(t, "")
	code, _, body := call(t, "PATCH", srv.URL+"/api/v1/limits", "",
		`{"hosts":[{"match":"api.openai.com","quotas":[{"limit":200000,"per":"1m","unit":"tokens"}],"cost":{"max_body":"512KiB","default":2000,"usage":["usage.total_tokens"]}},{"match":"b.example","cost":{"header":"x-cost","estimate":"default","max_body":65536}},{"match":"c.example","cost":null}]}`)
	if code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	for _, want := range []string{
		`{"match":"api.openai.com","quotas":[{"limit":200000,"per":"1m","unit":"tokens"}],"cost":{"header":"X-Proxy-Cost","estimate":"body","default":2000,"max_body":"512KiB","usage":["usage.total_tokens"]}}`,
		`{"match":"b.example","cost":{"header":"X-Cost","estimate":"default","default":1000,"max_body":"64KiB","usage":[]}}`,
		`{"match":"c.example"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("PATCH answer %s lacks %s", body, want)
		}
	}
	_, hosts := b.Limits()
	if p := hosts[0].Cost.Pricing(); p.MaxBody != 512<<10 || p.Default != 2000 || !slices.Equal(p.Usage, []string{"usage.total_tokens"}) {
		t.Fatalf("hosts[0].cost after PATCH: %+v", p)
	}
	if hosts[2].Cost != nil {
		t.Errorf("hosts[2].cost = %+v, want nil", hosts[2].Cost)
	}
	_, _, get := call(t, "GET", srv.URL+"/api/v1/limits", "", "")
	if get != body {
		t.Errorf("GET %s, want the PATCH answer %s", get, body)
	}
	if code, _, put := call(t, "PUT", srv.URL+"/api/v1/limits", "", get); code != 200 || put != get {
		t.Errorf("PUT of the GET answer: %d %s, want 200 %s", code, put, get)
	}

	for _, tc := range []struct{ body, want string }{
		{`{"hosts":[{"match":"a.example","cost":{"max_body":"1MB"}}]}`, `hosts[0].cost.max_body: invalid size \"1MB\" (want bytes as digits, e.g. 65536, or with KiB, MiB: 512KiB, 1MiB)`},
		{`{"hosts":[{"match":"a.example","cost":{"max_body":1.5}}]}`, `hosts[0].cost.max_body: wrong type: got JSON number 1.5, want a size (\"1MiB\", \"512KiB\") or an integer of bytes`},
		{`{"hosts":[{"match":"a.example","cost":{"max_body":0}}]}`, `hosts[0].cost.max_body: must be at least 1 byte`},
		{`{"hosts":[{"match":"a.example","cost":{"max_body":true}}]}`, `hosts[0].cost.max_body: wrong type: got JSON boolean, want a size`},
		{`{"hosts":[{"match":"a.example","cost":{"default":0}}]}`, `hosts[0].cost.default: must be a positive integer of tokens, got 0`},
		{`{"hosts":[{"match":"a.example","cost":{"default":"5"}}]}`, `hosts[0].cost.default: wrong type: got JSON string, want an integer`},
		{`{"hosts":[{"match":"a.example","cost":{"estimate":"guess"}}]}`, `hosts[0].cost.estimate: must be body or default, got \"guess\"`},
		{`{"hosts":[{"match":"a.example","cost":{"header":"X Cost"}}]}`, `hosts[0].cost.header: invalid header name \"X Cost\"`},
		{`{"hosts":[{"match":"a.example","cost":{"usage":"usage.total_tokens"}}]}`, `hosts[0].cost.usage: wrong type: got JSON string, want an array of strings`},
		{`{"hosts":[{"match":"a.example","cost":{"usage":["a",5]}}]}`, `hosts[0].cost.usage[1]: wrong type: got JSON number 5, want a string`},
		{`{"hosts":[{"match":"a.example","cost":{"usage":["a..b"]}}]}`, `hosts[0].cost.usage[0]: invalid usage path: \"a..b\": empty key`},
		{`{"hosts":[{"match":"a.example","cost":{"maxBody":5}}]}`, `hosts[0].cost.maxBody: unknown field`},
		{`{"hosts":[{"match":"a.example","cost":{"Header":"x"}}]}`, `hosts[0].cost.Header: unknown field (names are case-sensitive)`},
		{`{"hosts":[{"match":"a.example","cost":{"default":5,"default":6}}]}`, `hosts[0].cost.default: given twice`},
		{`{"hosts":[{"match":"a.example","cost":[1]}]}`, `hosts[0].cost: wrong type: got JSON array, want an object`},
	} {
		code, _, body := call(t, "PATCH", srv.URL+"/api/v1/limits", "", tc.body)
		if code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("PATCH %s: %d %s, want 400 naming %q", tc.body, code, body, tc.want)
		}
		if _, _, now := call(t, "GET", srv.URL+"/api/v1/limits", "", ""); now != get {
			t.Errorf("PATCH %s refused but changed the limits: %s", tc.body, now)
		}
	}
}
