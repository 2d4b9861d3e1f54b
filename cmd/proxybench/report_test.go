package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
)

func TestTableMarkdown(t *testing.T) {
	tbl := &table{
		title:  "Scenario 1",
		header: []string{"target", "mode", "req/s"},
		right:  []bool{false, false, true},
		notes:  []string{"Medians over 5 rounds."},
	}
	tbl.add("direct", "direct", "12974")
	tbl.add("proxyd", "forward", "3187")
	tbl.add("a|b", "short") // a pipe is escaped; a missing cell is empty
	want := "### Scenario 1\n\n" +
		"| target | mode    | req/s |\n" +
		"| ------ | ------- | ----: |\n" +
		"| direct | direct  | 12974 |\n" +
		"| proxyd | forward |  3187 |\n" +
		"| a\\|b   | short   |       |\n" +
		"\nMedians over 5 rounds.\n"
	if got := tbl.markdown(); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestTableMarkdownWideRunes(t *testing.T) {
	// Widths count runes, not bytes: "×" and "µ" are one column each.
	tbl := &table{header: []string{"× direct", "µs"}, right: []bool{true, true}}
	tbl.add("0.35×", "140.8")
	want := "| × direct |    µs |\n" +
		"| -------: | ----: |\n" +
		"|    0.35× | 140.8 |\n"
	if got := tbl.markdown(); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestReportMarkdownAndJSON(t *testing.T) {
	var js bytes.Buffer
	r := &reporter{jsonOut: []io.Writer{&js}}
	var h loadgen.Histogram
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	m := measurement{Scenario: "throughput", Kind: "run", Target: "proxyd", Mode: "forward", Concurrency: 32, RPS: 3187.5}
	m.setLatency(&h)
	m.setShare(loadgen.CPUShare{Steal: 0.01, Other: 0.2})
	r.emit(m)
	var back measurement
	if err := json.Unmarshal(bytes.TrimSpace(js.Bytes()), &back); err != nil {
		t.Fatalf("JSON line %q: %v", js.String(), err)
	}
	// Quantiles are within a bucket (1/128) above the exact value; the max
	// is exact.
	within := func(got, exact float64) bool { return got >= exact && got <= exact*(1+1.0/128) }
	if !within(back.P50, 50) || !within(back.P99, 99) || back.Max != 100 || !back.Noisy || back.RPS != 3187.5 {
		t.Errorf("JSON round trip: %+v", back)
	}
	if strings.Count(js.String(), "\n") != 1 {
		t.Errorf("want exactly one line, got %q", js.String())
	}

	r.verdict(verdict{target: "Forward ≥ 1.5× squid", measured: "0.97×"})
	r.verdict(verdict{target: "Rate ±1%", measured: "+0.04%", met: true})
	r.verdict(verdict{target: "Gateway ≥ nginx", skipped: "nginx not run"})
	r.note("tinyproxy is not installed: skipped")
	md := r.markdown("## header\n\n")
	for _, want := range []string{
		"## header\n",
		"| Forward ≥ 1.5× squid | 0.97×    | no                          |",
		"| Rate ±1%             | +0.04%   | yes                         |",
		"| Gateway ≥ nginx      |          | not measured: nginx not run |",
		"### Notes\n\n- tinyproxy is not installed: skipped\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tc := range tests {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input")
			}
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtNum(12974.4), "12974"}, {fmtNum(42.26), "42.3"}, {fmtNum(0.5), "0.50"},
		{fmtNum(0.712), "0.71"}, {fmtNum(15.14), "15.1"}, {fmtNum(683.7), "684"},
		{fmtPct(0.0004), "+0.04%"}, {fmtPct(-0.0123), "-1.23%"},
		{fmtRatio(1.5), "1.50×"}, {fmtKiB(22118.4), "21.6 KiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParseGauges(t *testing.T) {
	text := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 10012\n" +
		"go_memstats_stack_inuse_bytes 1.6384e+08\ngo_gc_duration_seconds{quantile=\"0.5\"} 0.001\nproxyd_inflight_requests 3\n"
	got := parseGauges(text, "go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes")
	if len(got) != 2 || got["go_goroutines"] != 10012 || got["go_memstats_stack_inuse_bytes"] != 1.6384e8 {
		t.Errorf("parseGauges = %v", got)
	}
}
