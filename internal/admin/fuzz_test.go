package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/proxyd/proxyd/internal/config"
)

// limitsSeeds are the bodies of api_test.go, valid and not.
var limitsSeeds = []string{
	`{"rate":50,"concurrency":8,"max_wait":"10s"}`,
	`{"rate":5,"burst":2,"concurrency":1,"queue_size":10,"max_wait":"1m","hosts":[{"match":"*.example.com","rate":1,"concurrency":2}]}`,
	`{"rate":1,"burst":1,"concurrency":1,"queue_size":1,"max_wait":"1s","hosts":[]}`,
	`{"rate":0,"burst":1,"concurrency":0,"queue_size":1,"max_wait":"1ns","hosts":[{"match":"[2001:db8::1]:443","burst":3}]}`,
	`{"rate":`, `[1,2]`, ``, `{"rate":1}{"rate":2}`, `{"rat":5}`,
	`{"hosts":[{"match":"a.com"},{"match":"b.com","rps":1}]}`, `{"hosts":[{"match":"a.com","rate":"x"}]}`,
	`{"hosts":[5]}`, `{"hosts":{}}`, `{"rate":"fast"}`, `{"rate":-1}`, `{"burst":0}`, `{"concurrency":-2}`,
	`{"queue_size":0}`, `{"max_wait":"soon"}`, `{"max_wait":"0s"}`, `{"max_wait":30}`, `{"hosts":[{"match":"*."}]}`,
	`{"rate":5}`, `{"rate":1e12}`, `{"queue_size":1000000000000}`, `{"max_wait":"8760h"}`, `{"burst":1.5}`,
	`null`, `"rate"`, `5`, `{"rate":1}}`, `{"Rate":50}`, `{"QUEUE_SIZE":5}`, `{"rate":1,"rate":2}`,
	`{"rate":null,"rate":2}`, `{"hosts":[],"hosts":[{"match":"a.com"}]}`, `{"hosts":[{"Match":"a.com"}]}`,
	`{"hosts":[{"match":"a.com"},{"match":"b.com","rate":1,"rate":2}]}`, `{"hosts":[null]}`, `{"rate":1e400}`,
	`{"burst":99999999999999999999}`, `{"queue_size":-99999999999999999999}`, `{"hosts":[{"match":"a.com","rate":-1e999}]}`,
	`{"hosts":[{"match":"a.com","concurrency":99999999999999999999}]}`, `{"hosts":[{"match":"a.com","rate":1e300}]}`,
	`{"hosts":[{"match":"a.com","burst":2000000000}]}`,
	`{"rate":1,"burst":1,"concurrency":1,"queue_size":1,"max_wait":"1s","hosts":[{"match":"a.com","concurrency":2000000000}]}`,
	`{"rate":-1,"hosts":[{"match":""}]}`,
	`{"rate":-1,"max_wait":"soon","Burst":3,"queue_size":0,"hosts":[5,{"match":"*.","rps":1,"rate":-2}]}`,
	`{"rate":"fast","burst":1.5,"concurrency":true}`, `{"rate":-1,"burst":1,"concurrency":1,"max_wait":null}`,
	`{"hosts":[{"match":"*.a.com"},{"match":"*.a.com"}]}`, `{"max_wait":"1h2m3.000000004s","rate":-0}`,
}

// fuzzServer is an admin server over a backend with no dispatcher (so no
// goroutines), answering requestHost.
func fuzzServer() (*Server, *fakeBackend) {
	b := &fakeBackend{l: config.Default().Limits, hosts: []config.HostRule{}}
	return New(Config{AllowedHosts: []string{requestHost}}, Deps{Backend: b}), b
}

func sendLimits(s *Server, method string, body []byte) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(method, "/api/v1/limits", bytes.NewReader(body)))
	return w
}

// checkLimitsUpdate is the oracle of both fuzz targets: body sent with
// method to a fresh server either
//   - is accepted (200): the new limits and host rules are a valid
//     configuration, the answer is their GET form, and that GET form sent
//     back with PUT to another fresh server gives exactly the same limits;
//   - or is refused (400, or 413 for a body over 64 KiB) with a non-empty
//     error, and nothing changed.
func checkLimitsUpdate(t *testing.T, method string, body []byte) {
	s, b := fuzzServer()
	w := sendLimits(s, method, body)
	l, hosts := b.Limits()
	switch w.Code {
	case http.StatusOK:
		cfg := config.Default()
		cfg.Limits, cfg.Hosts = l, hosts
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s %q accepted, but the result is invalid: %v", method, body, err)
		}
		get := sendLimits(s, http.MethodGet, nil)
		if get.Code != http.StatusOK || !bytes.Equal(get.Body.Bytes(), w.Body.Bytes()) {
			t.Fatalf("%s %q: answered %s, GET then gives %d %s", method, body, w.Body, get.Code, get.Body)
		}
		s2, b2 := fuzzServer()
		b2.l.Rate, b2.l.Burst = 7, 3 // PUT replaces whatever was there
		put := sendLimits(s2, http.MethodPut, get.Body.Bytes())
		l2, hosts2 := b2.Limits()
		if put.Code != http.StatusOK || !sameLimits(l2, l) || !slices.EqualFunc(hosts2, hosts, sameRule) || !bytes.Equal(put.Body.Bytes(), get.Body.Bytes()) {
			t.Fatalf("%s %q gave %s; PUT of its GET form gave %d %s (limits %+v %+v, want %+v %+v)", method, body, get.Body, put.Code, put.Body, l2, hosts2, l, hosts)
		}
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		var e struct {
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == nil || *e.Error == "" {
			t.Fatalf("%s %q: %d with body %q: want {\"error\": <non-empty>}", method, body, w.Code, w.Body)
		}
		if !sameLimits(l, config.Default().Limits) || len(hosts) != 0 || b.sets != 0 || b.dirty {
			t.Fatalf("%s %q refused (%s) but changed the limits: %+v %+v (%d sets, dirty %v)", method, body, w.Body, l, hosts, b.sets, b.dirty)
		}
	default:
		t.Fatalf("%s %q: status %d %s", method, body, w.Code, w.Body)
	}
}

// FuzzLimitsPatch: PATCH /api/v1/limits never panics, and either applies a
// valid change whose GET form round-trips through PUT, or refuses with a
// message and changes nothing.
func FuzzLimitsPatch(f *testing.F) {
	for _, s := range limitsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkLimitsUpdate(t, http.MethodPatch, body) })
}

// FuzzLimitsPut is FuzzLimitsPatch for PUT.
func FuzzLimitsPut(f *testing.F) {
	for _, s := range limitsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkLimitsUpdate(t, http.MethodPut, body) })
}
