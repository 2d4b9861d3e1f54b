package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// proxyd_provider_remaining is the lowest remaining of the live provider
// caps per hosts rule and unit, "other" for destinations under no rule:
// never a raw host.
func TestProviderRemainingGauge(t *testing.T) {
	cfg := config.Default()
	cfg.Hosts = []config.HostRule{{Match: "*.openai.com"}}
	dcfg, err := dispatch.ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := dispatch.New(dcfg, dispatch.Deps{})
	defer d.Close()
	until := time.Now().Add(time.Hour)
	d.Cap("api.openai.com:443", dispatch.CapRequests, 40, until)
	d.Cap("eu.openai.com:443", dispatch.CapRequests, 7, until)
	d.Cap("eu.openai.com:443", dispatch.CapTokens, 9000, until)
	d.Cap("a.example:443", dispatch.CapRequests, 12, until)
	d.Cap("b.example:443", dispatch.CapRequests, 30, until)
	reg := prometheus.NewRegistry()
	if _, err := New(reg, Deps{Stats: d.Stats}); err != nil {
		t.Fatal(err)
	}
	expected := `
# HELP proxyd_provider_remaining The fewest units a provider's response left to its destination, less proxyd's admissions since, over the live caps of the destinations under a hosts rule (rule: the match, or other).
# TYPE proxyd_provider_remaining gauge
proxyd_provider_remaining{rule="*.openai.com",unit="requests"} 7
proxyd_provider_remaining{rule="*.openai.com",unit="tokens"} 9000
proxyd_provider_remaining{rule="other",unit="requests"} 12
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "proxyd_provider_remaining"); err != nil {
		t.Fatal(err)
	}
}
