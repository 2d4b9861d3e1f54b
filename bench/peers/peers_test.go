package peers

import (
	"strings"
	"testing"
	"time"
)

// TestTemplatesRender fills every template and checks that each listens on
// loopback only and writes no access log.
func TestTemplatesRender(t *testing.T) {
	d := Data{Dir: t.TempDir(), Port: 18080, Upstream: "127.0.0.1:18081", Pool: 256,
		Rate: 1000, Burst: 10000, MaxConn: 10, ServiceTime: 10 * time.Millisecond, FDLimit: 20000}
	names := Names()
	if len(names) < 5 {
		t.Fatalf("templates: %v", names)
	}
	for _, n := range names {
		b, err := Text(n, d)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		s := string(b)
		if !strings.Contains(s, "127.0.0.1") || strings.Contains(s, "0.0.0.0") {
			t.Errorf("%s: does not listen on loopback only:\n%s", n, s)
		}
		if strings.Contains(s, "{{") {
			t.Errorf("%s: unfilled placeholder:\n%s", n, s)
		}
		if strings.Contains(n, "nginx") && !strings.Contains(s, "access_log off") {
			t.Errorf("%s: access log not off", n)
		}
		if strings.Contains(n, "squid") && !strings.Contains(s, "access_log none") {
			t.Errorf("%s: access log not off", n)
		}
		if _, err := Render(n, d); err != nil {
			t.Errorf("Render(%s): %v", n, err)
		}
	}
}
