package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// The rule label of proxyd_quota_* and proxyd_provider_remaining is a
// hosts rule's match, "global" for limits.quotas and "other" for
// destinations under no rule (docs/metrics.md, "Rule labels"). A rule
// whose match is literally one of those would share its series with them:
// "global" made /metrics fail (two proxyd_quota_used series with the same
// labels), "other" merged the rule's provider remaining with that of the
// destinations under no rule. Every configuration that validates gets
// distinct series; such a rule does not validate, and says why.
func TestRuleLabelsUnambiguous(t *testing.T) {
	for _, match := range []string{"global", "other", "GLOBAL", "global:443", "other:80", "*.other", "global.example"} {
		t.Run(match, func(t *testing.T) {
			cfg := config.Default()
			cfg.Limits.Quotas = []config.Quota{{Limit: 1000, Per: time.Minute}}
			cfg.Hosts = []config.HostRule{{Match: match, Quotas: []config.Quota{{Limit: 60, Per: time.Minute}}}}
			if err := cfg.Validate(); err != nil {
				var fe *config.FieldError
				if !errors.As(err, &fe) || fe.Key != "hosts[0].match" {
					t.Fatalf("Validate() = %v, want a problem with hosts[0].match", err)
				}
				return
			}
			dcfg, err := dispatch.ConfigOf(cfg)
			if err != nil {
				t.Fatal(err)
			}
			d := dispatch.New(dcfg, dispatch.Deps{})
			defer d.Close()
			// A destination under the rule (when one can be) and one under
			// none, both capped by their provider.
			until := time.Now().Add(time.Hour)
			d.Cap(underRule(match), dispatch.CapRequests, 5, until)
			d.Cap("nobody.example:443", dispatch.CapRequests, 9, until)
			reg := prometheus.NewRegistry()
			if _, err := New(reg, Deps{Stats: d.Stats}); err != nil {
				t.Fatal(err)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatalf("/metrics fails: %v", err)
			}
			series := map[string]int{}
			for _, mf := range mfs {
				switch mf.GetName() {
				case "proxyd_quota_used", "proxyd_provider_remaining":
					series[mf.GetName()] = len(mf.GetMetric())
				}
			}
			if series["proxyd_quota_used"] != 2 || series["proxyd_provider_remaining"] != 2 {
				t.Fatalf("series %v, want 2 quotas (global and the rule's) and 2 provider remaining (the rule's and other)", series)
			}
		})
	}
}

// underRule is a destination the hosts rule match covers.
func underRule(match string) string {
	switch match {
	case "*.other":
		return "api.other:443"
	case "global:443":
		return "global:443"
	case "other:80":
		return "other:80"
	}
	return match + ":443"
}
