package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/proxyd/proxyd/bench/loadgen"
)

// table is a Markdown table with a title and notes under it.
type table struct {
	title  string
	header []string
	// right-aligns column i when right[i] is true (numbers).
	right []bool
	rows  [][]string
	notes []string
}

// add appends a row; missing cells are empty, extra ones an error of the
// caller's (they are dropped).
func (t *table) add(cells ...string) {
	row := make([]string, len(t.header))
	copy(row, cells)
	t.rows = append(t.rows, row)
}

// markdown renders t with its columns padded to line up in plain text too.
func (t *table) markdown() string {
	var b strings.Builder
	if t.title != "" {
		fmt.Fprintf(&b, "### %s\n\n", t.title)
	}
	width := make([]int, len(t.header))
	for i, h := range t.header {
		width[i] = max(3, len([]rune(h)))
	}
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(escapeCell(c))))
		}
	}
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			c = escapeCell(c)
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i < len(t.right) && t.right[i] {
				fmt.Fprintf(&b, " %s%s |", pad, c)
			} else {
				fmt.Fprintf(&b, " %s%s |", c, pad)
			}
		}
		b.WriteString("\n")
	}
	line(t.header)
	b.WriteString("|")
	for i := range t.header {
		dash := strings.Repeat("-", width[i])
		if i < len(t.right) && t.right[i] {
			dash = dash[:len(dash)-1] + ":"
		}
		fmt.Fprintf(&b, " %s |", dash)
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		line(r)
	}
	for _, n := range t.notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String()
}

// escapeCell keeps a cell on one line and out of the table's syntax.
func escapeCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// measurement is one JSON line: one run of one target, or one summary.
// Latencies are in milliseconds.
type measurement struct {
	Scenario    string             `json:"scenario"`
	Kind        string             `json:"kind"` // "run" or "summary"
	Target      string             `json:"target"`
	Mode        string             `json:"mode,omitempty"`
	Concurrency int                `json:"c,omitempty"`
	Round       int                `json:"round,omitempty"`
	Class       string             `json:"class,omitempty"`
	Limit       float64            `json:"limit,omitempty"`
	OfferedRPS  float64            `json:"offered_rps,omitempty"`
	RPS         float64            `json:"rps,omitempty"`
	AdmittedRPS float64            `json:"admitted_rps,omitempty"`
	RatioDirect float64            `json:"ratio_to_direct,omitempty"`
	P50         float64            `json:"p50_ms,omitempty"`
	P90         float64            `json:"p90_ms,omitempty"`
	P99         float64            `json:"p99_ms,omitempty"`
	Max         float64            `json:"max_ms,omitempty"`
	Sent        int64              `json:"sent,omitempty"`
	OK          int64              `json:"ok,omitempty"`
	Status      map[int]int64      `json:"status,omitempty"`
	Errors      int64              `json:"errors,omitempty"`
	FirstError  string             `json:"first_error,omitempty"`
	Canceled    int64              `json:"canceled,omitempty"`
	Overflow    int64              `json:"overflow,omitempty"`
	CPUPerReqUS float64            `json:"cpu_us_per_req,omitempty"`
	LagP99      float64            `json:"generator_lag_p99_ms,omitempty"`
	Steal       float64            `json:"steal"`
	OtherCPU    float64            `json:"other_cpu"`
	Noisy       bool               `json:"noisy"`
	Values      map[string]float64 `json:"values,omitempty"`
}

// noisyAt are the thresholds past which a run is flagged noisy: the
// hypervisor stole more than 5% of the host's CPU, or processes the harness
// did not start used more than 10% of it.
const (
	noisySteal = 0.05
	noisyOther = 0.10
)

func (m *measurement) setShare(s loadgen.CPUShare) {
	m.Steal, m.OtherCPU = round3(s.Steal), round3(s.Other)
	m.Noisy = s.Steal > noisySteal || s.Other > noisyOther
}

// setLatency fills the latency fields from h.
func (m *measurement) setLatency(h *loadgen.Histogram) {
	m.P50, m.P90, m.P99, m.Max = ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99)), ms(h.Max())
}

// setClass fills counts and latency from a class result.
func (m *measurement) setClass(c *loadgen.ClassResult) {
	m.Sent, m.OK, m.Errors, m.FirstError = c.Sent, c.OK, c.Errors, c.FirstError
	m.Canceled, m.Overflow = c.Canceled, c.Overflow
	m.Status = c.Status
	m.setLatency(&c.Latency)
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// verdict is proxyd's standing against one target of the issue.
type verdict struct {
	target   string
	measured string
	met      bool
	skipped  string // why it could not be measured, if so
}

// reporter prints measurements as JSON lines as they come and keeps the
// tables and verdicts for the final Markdown.
type reporter struct {
	mu       sync.Mutex
	jsonOut  []io.Writer
	tables   []*table
	verdicts []verdict
	notes    []string
}

func (r *reporter) emit(m measurement) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.jsonOut {
		_, _ = w.Write(append(b, '\n'))
	}
}

func (r *reporter) table(t *table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tables = append(r.tables, t)
}

func (r *reporter) verdict(v verdict) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verdicts = append(r.verdicts, v)
}

func (r *reporter) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// markdown renders the report: the verdicts first, then every table, then
// the notes (skipped peers, errors).
func (r *reporter) markdown(header string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString(header)
	if len(r.verdicts) > 0 {
		t := &table{title: "proxyd against the targets", header: []string{"target", "measured", "met"}}
		for _, v := range r.verdicts {
			met := "no"
			switch {
			case v.skipped != "":
				met = "not measured: " + v.skipped
			case v.met:
				met = "yes"
			}
			t.add(v.target, v.measured, met)
		}
		b.WriteString(t.markdown())
		b.WriteString("\n")
	}
	for _, t := range r.tables {
		b.WriteString(t.markdown())
		b.WriteString("\n")
	}
	if len(r.notes) > 0 {
		b.WriteString("### Notes\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// median of xs (0 when empty); xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Number formats for tables. fmtNum prints rates and milliseconds with
// about three significant digits.
func fmtNum(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.2f", f)
}

func fmtRatio(f float64) string { return fmt.Sprintf("%.2f×", f) }

func fmtPct(f float64) string { return fmt.Sprintf("%+.2f%%", f*100) }

func fmtShare(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }

func fmtKiB(bytes float64) string { return fmt.Sprintf("%.1f KiB", bytes/1024) }
