// Package loadgen is proxybench's load generator: closed-loop and
// open-loop HTTP load with several request classes at once, latency
// histograms, and host CPU accounting to tell a quiet run from a noisy one.
//
// # Closed and open loop
//
// A closed loop (RunClosed) keeps c requests outstanding: each worker sends
// its next request when the previous one is answered. It measures
// throughput, but it hides queueing: when the server slows down the loop
// slows with it and offers less load, so latency under overload is
// understated (coordinated omission).
//
// An open loop (RunOpen) sends requests at fixed arrival times, whatever
// happens to the ones before: arrival i of a class with rate r is due at
// start + i/r. Latency is measured from that scheduled time, not from when
// the request actually left, so a late generator or a slow server shows up
// in the latency instead of silently lowering the offered load. This is
// what overload and priority tests need.
//
// # Classes
//
// Every request belongs to a Class: a name, the headers that mark it
// (for example "Priority: u=1"), and its share of the load (workers in a
// closed loop, a rate in an open loop). Each class has its own Histogram of
// the latency of 2xx answers, its status counts and its errors.
//
// # Histograms
//
// Histogram is log-linear (as HdrHistogram): exact below 128 ns, then 128
// sub-buckets per power of two, so every recorded value is off by less
// than 1/128 (0.8%). Quantiles return the highest value equivalent to the
// bucket holding the rank, clamped to the exact minimum and maximum.
//
// # Noise
//
// Absolute figures on a small shared machine swing by 2× between runs.
// ReadCPU reads the host's CPU counters from /proc/stat (and ProcCPU the
// CPU time of given processes) so that a caller can report, per run, the
// share of CPU stolen by the hypervisor and the share used by processes it
// did not start, and flag runs where either was high.
package loadgen
