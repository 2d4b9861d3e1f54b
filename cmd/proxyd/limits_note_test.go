package main

import (
	"encoding/json"
	"testing"
)

// TestLimitsSetSaysTheBurstStays: "limits set --rate 2" keeps the burst
// of 10, and says what that means (issue 25: ten requests still went at
// once, with nothing to tell why).
func TestLimitsSetSaysTheBurstStays(t *testing.T) {
	p := startLimitsProxyd(t, "limits: {rate: 100, burst: 10}\n")
	url := "http://" + p.admin
	const note = "rate 2/s, burst 10: up to 10 requests may go at once, then 2 a second; set --burst to change\n"
	for _, tc := range []struct {
		args []string
		note string // "" = none
	}{
		{[]string{"--rate", "2"}, note},
		{[]string{"--rate", "2", "--concurrency", "5"}, note},
		{[]string{"--rate", "2", "--burst", "2"}, ""}, // the user chose the burst
		{[]string{"--burst", "10"}, ""},               // the rate did not change
		{[]string{"--rate", "20"}, ""},                // burst 10 is less than a second's worth
		{[]string{"--rate", "0"}, ""},                 // unlimited: no bucket
	} {
		code, out, errOut := cli(t, nil, append([]string{"limits", "set", "--admin-url", url}, tc.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		_, got, _ := cli(t, nil, "limits", "get", "--admin-url", url)
		want := got
		if tc.note != "" {
			want += "\n" + tc.note
		}
		if out != want {
			t.Errorf("%v printed:\n%s\nwant:\n%s", tc.args, out, want)
		}
	}
	// JSON stays JSON.
	code, out, errOut := cli(t, nil, "limits", "set", "--admin-url", url, "-o", "json", "--rate", "2")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc["burst"] != 10.0 {
		t.Fatalf("set -o json: exit %d: %s%s", code, out, errOut)
	}
}
