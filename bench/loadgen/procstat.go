package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CPUTimes are the host's cumulative CPU counters from the first line of
// /proc/stat, in clock ticks (USER_HZ, 100 per second on Linux).
type CPUTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

// Total is every tick counted (guest time is already inside User/Nice).
func (c CPUTimes) Total() uint64 {
	return c.User + c.Nice + c.System + c.Idle + c.IOWait + c.IRQ + c.SoftIRQ + c.Steal
}

// Busy is every tick not idle, not waiting for I/O and not stolen.
func (c CPUTimes) Busy() uint64 {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ
}

// ParseProcStat reads the aggregate "cpu" line of a /proc/stat text.
func ParseProcStat(b []byte) (CPUTimes, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		var v [8]uint64
		for i := 0; i < len(v) && i+1 < len(f); i++ {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
			}
			v[i] = n
		}
		return CPUTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
	}
	return CPUTimes{}, errors.New("/proc/stat: no cpu line")
}

// ReadCPU reads the host's CPU counters.
func ReadCPU() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	return ParseProcStat(b)
}

// CPUShare is how a span of host CPU time was spent, as fractions of all
// ticks in the span (all cores together).
type CPUShare struct {
	Steal float64 // taken by the hypervisor
	Busy  float64 // used by any process on this host
	Ours  float64 // used by the processes the caller measured
	Other float64 // Busy - Ours: used by processes the caller did not start
}

// Share compares two host samples and the caller's own ticks used in
// between.
func Share(before, after CPUTimes, oursTicks uint64) CPUShare {
	total := float64(after.Total() - before.Total())
	if total <= 0 {
		return CPUShare{}
	}
	s := CPUShare{
		Steal: float64(after.Steal-before.Steal) / total,
		Busy:  float64(after.Busy()-before.Busy()) / total,
		Ours:  float64(oursTicks) / total,
	}
	s.Other = max(0, s.Busy-s.Ours)
	return s
}

// ParsePIDStat returns the process group and utime+stime (clock ticks) of
// a /proc/PID/stat text.
func ParsePIDStat(b []byte) (pgrp int, ticks uint64, err error) {
	// The command name is in parentheses and may hold spaces; fields
	// start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); pgrp is field 5, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, errors.New("stat: too few fields")
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, fmt.Errorf("stat: pgrp: %w", err)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("stat: times: %w", err)
	}
	return pg, u + s, nil
}

// GroupCPU sums the CPU ticks of every live process whose process group is
// one of pgids (a child started with Setpgid leads its own group, and its
// workers, such as nginx's, stay in it). Processes that exited are not
// counted, so sample around a span in which the group lives throughout.
func GroupCPU(pgids ...int) uint64 {
	if len(pgids) == 0 {
		return 0
	}
	want := make(map[int]bool, len(pgids))
	for _, p := range pgids {
		want[p] = true
	}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var sum uint64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		pg, t, err := ParsePIDStat(b)
		if err == nil && want[pg] {
			sum += t
		}
	}
	return sum
}

// SelfCPU is this process's own CPU ticks (utime+stime).
func SelfCPU() uint64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	_, t, _ := ParsePIDStat(b)
	return t
}

// RSS is the resident set size of process pid in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		f := strings.Fields(line[len("VmRSS:"):])
		if len(f) < 1 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("status: no VmRSS line")
}
