package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestQueueTableShowsPausesAndRules(t *testing.T) {
	in := `{"depth":3,"in_flight":1,"by_priority":{"0":1,"1":0,"2":0,"3":2,"4":0,"5":0,"6":0,"7":0},"oldest_wait_seconds":0.5,
	"paused":[{"destination":"api.example.com:443","until":"2026-11-22T01:30:05Z","remaining_seconds":4.25}],
	"hosts":[{"match":"*.example.com","in_flight":1,"waiting":2}]}`
	var out bytes.Buffer
	if err := writeQueueTable(&out, []byte(in)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"PAUSED DESTINATION", "api.example.com:443  2026-11-22T01:30:05Z  4.2s",
		"HOST RULE", "*.example.com", "depth",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), `"destination"`) {
		t.Errorf("paused printed as raw JSON:\n%s", out.String())
	}
	// Without pauses or rules, no empty sections.
	out.Reset()
	if err := writeQueueTable(&out, []byte(`{"depth":0,"in_flight":0,"by_priority":{},"oldest_wait_seconds":0,"paused":[],"hosts":[]}`)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "PAUSED") || strings.Contains(out.String(), "HOST RULE") {
		t.Errorf("empty sections printed:\n%s", out.String())
	}
}
