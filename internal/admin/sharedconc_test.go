package admin

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// hosts[].shared_concurrency through PATCH: refused (400, naming the key)
// without the shared store; accepted and shown by GET with it; a value
// that is not a boolean is named.
func TestPatchHostSharedConcurrency(t *testing.T) {
	const body = `{"hosts":[{"match":"a.example","concurrency":3},{"match":"b.example","concurrency":5,"shared_concurrency":true}]}`
	srv, _ := newTestServer(t, "")
	code, _, got := call(t, "PATCH", srv.URL+"/api/v1/limits", "", body)
	if code != 400 || !strings.Contains(got, "hosts[1].shared_concurrency: needs limits.store: redis") {
		t.Fatalf("without a shared store: %d %s", code, got)
	}

	b := newFakeBackend()
	defer b.d.Close()
	s := New(Config{}, Deps{Backend: b, Clock: b.clock, Store: func() (StoreStatus, bool) { return StoreStatus{Store: "redis", Up: true}, true }})
	redis := httptest.NewServer(s)
	defer redis.Close()
	code, _, got = call(t, "PATCH", redis.URL+"/api/v1/limits", "", body)
	if code != 200 || !strings.Contains(got, `{"match":"b.example","concurrency":5,"shared_concurrency":true}`) || strings.Contains(got, `"a.example","concurrency":3,"shared`) {
		t.Fatalf("with a shared store: %d %s", code, got)
	}
	if _, _, got = call(t, "GET", redis.URL+"/api/v1/limits", "", ""); !strings.Contains(got, `"shared_concurrency":true`) {
		t.Fatalf("GET after the PATCH: %s", got)
	}
	code, _, got = call(t, "PATCH", redis.URL+"/api/v1/limits", "", `{"hosts":[{"match":"b.example","shared_concurrency":"yes"}]}`)
	if code != 400 || !strings.Contains(got, `hosts[0].shared_concurrency: wrong type: got JSON string, want a boolean`) {
		t.Fatalf("a string: %d %s", code, got)
	}
}
