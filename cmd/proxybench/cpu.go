package main

import (
	"github.com/proxyd/proxyd/bench/loadgen"
)

// userHZ is the kernel's clock tick for /proc CPU times (USER_HZ, 100 on
// every Linux the harness targets).
const userHZ = 100

// cpuSample is the host's CPU counters and the ticks used by the harness
// and its children at one moment.
type cpuSample struct {
	host   loadgen.CPUTimes
	ours   uint64 // the harness and every live child group
	target uint64 // the groups under test
}

// liveGroups lists the process groups of every child still running.
func liveGroups() []int {
	procs.Lock()
	defer procs.Unlock()
	out := make([]int, 0, len(procs.live))
	for p := range procs.live {
		out = append(out, p.pid())
	}
	return out
}

// sampleCPU reads the counters; target lists the process groups under
// test (nil for none).
func sampleCPU(target []int) cpuSample {
	h, _ := loadgen.ReadCPU()
	return cpuSample{
		host:   h,
		ours:   loadgen.SelfCPU() + loadgen.GroupCPU(liveGroups()...),
		target: loadgen.GroupCPU(target...),
	}
}

// cpuBetween is the host share and the target's CPU seconds between two
// samples.
func cpuBetween(a, b cpuSample) (loadgen.CPUShare, float64) {
	var ours uint64
	if b.ours > a.ours {
		ours = b.ours - a.ours
	}
	var tgt uint64
	if b.target > a.target {
		tgt = b.target - a.target
	}
	return loadgen.Share(a.host, b.host, ours), float64(tgt) / userHZ
}
