package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// TestHostQuotaOverSockets: a hosts rule with a quota of 5 per 1s admits 5
// requests at once; the 6th in the window waits until the first leaves
// it (its queue wait covers the rest of the second), while another
// destination is served at once.
func TestHostQuotaOverSockets(t *testing.T) {
	var upAddr string
	e := newEnv(t, func(s *setup) {
		s.cfg.Hosts = []config.HostRule{{Match: "quota.test", Quotas: []config.Quota{{Limit: 5, Per: time.Second}}}}
		s.fwd.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, upAddr) // every name is the test upstream
		}
	})
	o := e.newOrigin(nil)
	upAddr = strings.TrimPrefix(o.URL, "http://")
	_, port, _ := net.SplitHostPort(upAddr)
	url := func(host, path string) string { return "http://" + host + ":" + port + path }

	start := time.Now() // no admission under the quota before this
	for i := 1; i <= 5; i++ {
		res, _ := e.get(url("quota.test", fmt.Sprintf("/q%d", i)))
		wantStatus(t, res, http.StatusOK)
	}
	sixth := e.req(http.MethodGet, url("quota.test", "/q6"), nil)
	waiting := e.goDo(sixth)
	e.stats("the 6th request waiting on the quota", func(s dispatch.Stats) bool {
		return s.Depth == 1 && len(s.Hosts) == 1 && s.Hosts[0].Waiting == 1 && len(s.Hosts[0].Quotas) == 1 && s.Hosts[0].Quotas[0].Used == 5
	})
	// Another destination is not held by quota.test's window.
	res, id := e.get(url("other.test", "/free"))
	wantStatus(t, res, http.StatusOK)
	if w := e.record(id).QueueWait; w >= 500*time.Millisecond {
		t.Errorf("other destination waited %v behind quota.test's quota", w)
	}
	notYet(t, waiting, "the 6th request")
	o.never("/q6")

	wantStatus(t, recv(t, waiting, "the 6th request"), http.StatusOK)
	// It went no earlier than a second after the first admission, which
	// came after start, so its answer came a second after start at the
	// earliest. (Its recorded queue wait counts from its arrival at the
	// proxy, a moment after it was sent: a bound on it from the client's
	// clock fails whenever that moment outlasts the first admission's lag.)
	if got := time.Since(start); got < time.Second {
		t.Errorf("6th request answered %v after the first admission window opened, want at least 1s", got)
	}
	o.got("/q6")
}
