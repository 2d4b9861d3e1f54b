package admin

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// oldestBackend has requests of priorities 1 and 6 waiting.
type oldestBackend struct{ *fakeBackend }

func (b oldestBackend) Stats() dispatch.Stats {
	s := b.fakeBackend.Stats()
	s.OldestWaitByPriority[1] = 250 * time.Millisecond
	s.OldestWaitByPriority[6] = 12 * time.Second
	return s
}

// TestStatsOldestWaitByPriority: /api/v1/stats carries the oldest wait of
// every priority in seconds, 0 where none waits.
func TestStatsOldestWaitByPriority(t *testing.T) {
	s := New(Config{Token: specToken, AllowedHosts: []string{requestHost}},
		Deps{Backend: oldestBackend{newSpecBackend()}, Clock: clock.NewFake(statsNow)})
	var st struct {
		Oldest map[string]float64 `json:"oldest_wait_seconds_by_priority"`
	}
	if err := json.Unmarshal(serve(s, "GET", "/api/v1/stats", specToken, nil).Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"0": 0, "1": 0.25, "2": 0, "3": 0, "4": 0, "5": 0, "6": 12, "7": 0}
	if len(st.Oldest) != len(want) {
		t.Fatalf("oldest_wait_seconds_by_priority = %v, want %v", st.Oldest, want)
	}
	for k, v := range want {
		if st.Oldest[k] != v {
			t.Errorf("oldest_wait_seconds_by_priority[%s] = %v, want %v", k, st.Oldest[k], v)
		}
	}
}
