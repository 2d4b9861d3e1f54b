package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.scenarios, scenarios) || !slices.Equal(o.peers, knownPeers) {
		t.Errorf("scenarios %v, peers %v", o.scenarios, o.peers)
	}
	if !slices.Equal(o.tp.conc, []int{32, 128}) || !slices.Equal(o.rate.limits, []int{100, 1000, 10000}) || !slices.Equal(o.scale, []int{10000, 100000}) {
		t.Errorf("conc %v, limits %v, scale %v", o.tp.conc, o.rate.limits, o.scale)
	}
	if o.prio.limit != 1000 || o.prio.urgent != 400 || o.prio.bulk != 1600 || o.prio.duration != 10*time.Second {
		t.Errorf("priority: %+v", o.prio)
	}
}

func TestParseFlagsQuickKeepsExplicitFlags(t *testing.T) {
	o, err := parseFlags([]string{"--quick", "--rounds", "4", "--scenario", "rate,throughput", "--peers", "nginx,squid"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.tp.rounds != 4 || o.tp.duration != 500*time.Millisecond || o.rate.duration != 3*time.Second {
		t.Errorf("rounds %d, duration %v, rate duration %v", o.tp.rounds, o.tp.duration, o.rate.duration)
	}
	// Lists keep the harness's order, not the command line's.
	if !slices.Equal(o.scenarios, []string{"throughput", "rate"}) || !slices.Equal(o.peers, []string{"squid", "nginx"}) {
		t.Errorf("scenarios %v, peers %v", o.scenarios, o.peers)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "latency"},
		{"--peers", "envoy"},
		{"--c", "32,x"},
		{"--limits", "-5"},
		{"--rounds", "0"},
		{"--rate-duration", "1s", "--rate-skip", "2s"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): want an error", args)
		}
	}
	o, err := parseFlags([]string{"--peers", "none"}, io.Discard)
	if err != nil || len(o.peers) != 0 {
		t.Errorf("--peers none: %v, %v", o.peers, err)
	}
}

func TestUrgencyOf(t *testing.T) {
	for in, want := range map[string]int{"u=1": 1, "u=5, i": 5, "i, u=0": 0, "u=9": 8, "": 8, "u=12": 8} {
		if got := urgencyOf(in); got != want {
			t.Errorf("urgencyOf(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestFindPeerMissing(t *testing.T) {
	if p, ok := findPeer("proxybench-no-such-peer"); ok {
		t.Errorf("findPeer found %q", p)
	}
}

func TestPeerArgsForeground(t *testing.T) {
	// Every known peer runs in the foreground, so that stopping its
	// process group stops it.
	for _, name := range knownPeers {
		args := peerArgs(name, "/bin/"+name, "/tmp/x.conf", "/tmp/d")
		if len(args) < 3 || args[0] != "/bin/"+name {
			t.Errorf("%s: %q", name, args)
		}
	}
}
