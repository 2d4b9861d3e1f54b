package admin

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
)

// sameLimits compares limits, an empty quota list equal to none.
func sameLimits(a, b config.Limits) bool {
	if len(a.Quotas) == 0 {
		a.Quotas = nil
	}
	if len(b.Quotas) == 0 {
		b.Quotas = nil
	}
	return reflect.DeepEqual(a, b)
}

// PATCH /api/v1/limits changes quotas, global and per rule; GET shows them
// as configured; a bad quota is a 400 naming it, and nothing changes.
func TestPatchLimitsQuotas(t *testing.T) {
	srv, b := newTestServer(t, "")
	code, _, body := call(t, "PATCH", srv.URL+"/api/v1/limits", "",
		`{"quotas":[{"limit":500,"per":"1m"},{"limit":10000,"per":"24h","unit":"requests"}],"hosts":[{"match":"api.github.com","quotas":[{"limit":5000,"per":"1h"}]}]}`)
	if code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	for _, want := range []string{
		`"quotas":[{"limit":500,"per":"1m","unit":"requests"},{"limit":10000,"per":"24h","unit":"requests"}]`,
		`"hosts":[{"match":"api.github.com","quotas":[{"limit":5000,"per":"1h","unit":"requests"}]}]`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("PATCH answer %s lacks %s", body, want)
		}
	}
	l, hosts := b.Limits()
	if len(l.Quotas) != 2 || l.Quotas[0] != (config.Quota{Limit: 500, Per: time.Minute}) || len(hosts) != 1 || len(hosts[0].Quotas) != 1 || hosts[0].Quotas[0].Per != time.Hour {
		t.Fatalf("after PATCH: %+v %+v", l, hosts)
	}
	if _, _, get := call(t, "GET", srv.URL+"/api/v1/limits", "", ""); get != body {
		t.Errorf("GET %s, want the PATCH answer %s", get, body)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"quotas":[{"limit":5,"per":"90s7"}]}`, `quotas[0].per: not a duration: \"90s7\" (want e.g. \"1m\", \"1h\", \"24h\")"}`},
		{`{"quotas":[{"limit":5,"per":"0s"}]}`, `quotas[0].per: 0s is not a window: between 1s and 24h`},
		{`{"quotas":[{"limit":5,"per":"1m"},{"limit":-3,"per":"1m"}]}`, `quotas[1].limit: must be a positive integer, got -3`},
		{`{"quotas":[{"limit":5,"per":"1m","window":"1m"}]}`, `quotas[0].window: unknown field`},
		{`{"quotas":[{"limit":5,"per":"1m","unit":"tokens"}]}`, `quotas[0].unit: tokens is accepted only in hosts[].quotas`},
		{`{"quotas":{"limit":5}}`, `quotas: wrong type: got JSON object, want an array`},
		{`{"hosts":[{"match":"a.example","quotas":[{"limit":1.5,"per":"1m"}]}]}`, `hosts[0].quotas[0].limit: wrong type`},
		{`{"hosts":[{"match":"a.example","quotas":[{"limit":5,"per":"25h"}]}]}`, `hosts[0].quotas[0].per: 25h0m0s is not a window`},
	} {
		code, _, body := call(t, "PATCH", srv.URL+"/api/v1/limits", "", tc.body)
		if code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("PATCH %s: %d %s, want 400 naming %q", tc.body, code, body, tc.want)
		}
		if l2, _ := b.Limits(); !sameLimits(l2, l) {
			t.Errorf("PATCH %s refused but changed the limits: %+v", tc.body, l2)
		}
	}
}
