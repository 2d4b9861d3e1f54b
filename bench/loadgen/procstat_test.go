package loadgen

import (
	"math"
	"os"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	in := []byte("cpu  165428 3 41081 194144 995 7 2303 4668 11 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2\n")
	c, err := ParseProcStat(in)
	if err != nil {
		t.Fatal(err)
	}
	want := CPUTimes{User: 165428, Nice: 3, System: 41081, Idle: 194144, IOWait: 995, IRQ: 7, SoftIRQ: 2303, Steal: 4668}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if _, err := ParseProcStat([]byte("intr 1\n")); err == nil {
		t.Error("no cpu line: want an error")
	}
}

func TestShare(t *testing.T) {
	before := CPUTimes{User: 100, Idle: 100}
	after := CPUTimes{User: 160, System: 20, Idle: 110, Steal: 10} // 100 ticks
	s := Share(before, after, 50)
	approx := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if !approx(s.Steal, 0.10) || !approx(s.Busy, 0.80) || !approx(s.Ours, 0.50) || !approx(s.Other, 0.30) {
		t.Errorf("share = %+v", s)
	}
	if (Share(after, after, 0) != CPUShare{}) {
		t.Error("no ticks: want a zero share")
	}
}

func TestParsePIDStat(t *testing.T) {
	in := []byte("4242 (nginx: worker (x)) S 4240 4240 4240 0 -1 4194624 100 0 0 0 123 45 0 0 20 0 1 0 1 2 3\n")
	pg, ticks, err := ParsePIDStat(in)
	if err != nil || pg != 4240 || ticks != 168 {
		t.Errorf("got pgrp %d ticks %d err %v; want 4240, 168", pg, ticks, err)
	}
	if _, _, err := ParsePIDStat([]byte("12 (x) S 1")); err == nil {
		t.Error("short line: want an error")
	}
}

func TestReadOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("/proc not found: reading CPU steal needs Linux procfs")
	}
	if _, err := ReadCPU(); err != nil {
		t.Error(err)
	}
	rss, err := RSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("RSS = %d, %v", rss, err)
	}
	if GroupCPU(0xfffffff) != 0 {
		t.Error("GroupCPU of a group that does not exist: want 0")
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS([]byte("Name:\tx\nVmRSS:\t   2048 kB\n"))
	if err != nil || got != 2<<20 {
		t.Errorf("got %d, %v; want 2 MiB", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("no VmRSS: want an error")
	}
}
