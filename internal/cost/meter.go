package cost

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
)

// MaxUsagePaths is the most paths a Paths may hold (hosts[].cost.usage).
const MaxUsagePaths = 16

// Paths is a compiled set of usage paths: where in a response the tokens
// it used are counted (docs/configuration.md, "hosts[].cost"). A nil
// *Paths means the built-in shapes (Builtin). A Paths is immutable and
// safe for concurrent use; compile it once per rule, not per request.
type Paths struct {
	t       *trie
	builtin bool
}

// Slots of the built-in shapes.
const (
	slotTotal       = iota // OpenAI usage.total_tokens (chat, responses)
	slotInput              // Anthropic usage.input_tokens
	slotOutput             // Anthropic usage.output_tokens
	slotCacheCreate        // Anthropic usage.cache_creation_input_tokens
	slotCacheRead          // Anthropic usage.cache_read_input_tokens
	slotGemini             // Gemini usageMetadata.totalTokenCount
)

// builtin are the built-in shapes: OpenAI's chat completions and
// responses (total_tokens, also under response. in the responses API's
// response.completed event), Anthropic's messages (usage, and
// message.usage in the message_start event) and Gemini's
// generateContent (usageMetadata).
var builtin = func() *Paths {
	t := newTrie()
	t.add([]string{"usage", "total_tokens"}, slotTotal)
	t.add([]string{"response", "usage", "total_tokens"}, slotTotal)
	for _, prefix := range [][]string{{"usage"}, {"message", "usage"}} {
		for slot, k := range map[int]string{
			slotInput:       "input_tokens",
			slotOutput:      "output_tokens",
			slotCacheCreate: "cache_creation_input_tokens",
			slotCacheRead:   "cache_read_input_tokens",
		} {
			t.add(append(append([]string(nil), prefix...), k), slot)
		}
	}
	t.add([]string{"usageMetadata", "totalTokenCount"}, slotGemini)
	return &Paths{t: t, builtin: true}
}()

// Builtin returns the built-in shapes, the same as a nil *Paths.
func Builtin() *Paths { return builtin }

// ErrInvalidPath is wrapped by CompilePaths' errors.
var ErrInvalidPath = errors.New("invalid usage path")

// CompilePaths compiles dotted JSON paths ("usage.total_tokens"): the
// actual cost is the sum of the numbers found at them. Each path is one or
// more non-empty object keys separated by dots (a key holding a dot cannot
// be named; array elements are not entered); at most MaxUsagePaths, no
// path twice. An empty list gives the built-in shapes.
func CompilePaths(dotted []string) (*Paths, error) {
	if len(dotted) == 0 {
		return builtin, nil
	}
	if len(dotted) > MaxUsagePaths {
		return nil, fmt.Errorf("%w: at most %d paths, got %d", ErrInvalidPath, MaxUsagePaths, len(dotted))
	}
	t := newTrie()
	seen := make(map[string]bool, len(dotted))
	for i, d := range dotted {
		if err := CheckPath(d); err != nil {
			return nil, err
		}
		if seen[d] {
			return nil, fmt.Errorf("%w: %q given twice", ErrInvalidPath, d)
		}
		seen[d] = true
		t.add(strings.Split(d, "."), i)
	}
	return &Paths{t: t}, nil
}

// CheckPath says why d is not a usage path, or returns nil.
func CheckPath(d string) error {
	for k := range strings.SplitSeq(d, ".") {
		switch {
		case k == "":
			return fmt.Errorf("%w: %q: empty key (want keys separated by single dots, e.g. \"usage.total_tokens\")", ErrInvalidPath, d)
		case len(k) > maxKey:
			return fmt.Errorf("%w: %q: a key longer than %d bytes", ErrInvalidPath, d, maxKey)
		}
	}
	if n := strings.Count(d, ".") + 1; n > maxPathKeys {
		return fmt.Errorf("%w: %q: more than %d keys", ErrInvalidPath, d, maxPathKeys)
	}
	return nil
}

// A Meter counts the tokens a response reports having used while the
// response streams through it: feed it a copy of every chunk written to
// the client (Write), then read Usage once the body ended. It keeps no
// part of the body (see doc.go, "Bounded memory"), never fails a Write and
// scans each chunk as it comes, so it delays nothing when called after the
// chunk was written to the client.
//
// A JSON body (any media type but text/event-stream) is read as a
// sequence of JSON values, the elements of a top-level array each taken as
// a document (Gemini's streamGenerateContent); a text/event-stream body
// as server-sent events whose data is JSON. Where several documents or
// events report a number for the same path, the last one wins: OpenAI's
// final chunk with stream_options.include_usage, Anthropic's cumulative
// message_delta, Gemini's last usageMetadata.
//
// A Meter is not safe for concurrent use.
type Meter struct {
	p   *Paths
	sse bool
	js  scanner
	// got holds the numbers of the events committed (SSE).
	got values

	// Server-sent events (WHATWG HTML, "Parsing an event stream").
	line     uint8 // lnStart, ...
	cr       bool  // the last byte was a CR: a LF right after it is part of the same line end
	bom      uint8 // bytes of a leading UTF-8 BOM matched
	started  bool  // a byte other than a BOM's was seen
	hasData  bool  // the event has a data field
	field    [4]byte
	fieldLen int

	finished bool
	n        int64
	ok       bool
}

// Line states of a server-sent event stream.
const (
	lnStart     uint8 = iota // at the start of a line
	lnField                  // in a field name
	lnDataSpace              // after "data:": an optional space
	lnData                   // in a data field's value
	lnSkip                   // in a line of no interest (comment, event, id, retry)
)

// NewMeter returns a Meter for a response of the given Content-Type that
// counts at p (nil: the built-in shapes).
func NewMeter(contentType string, p *Paths) *Meter {
	if p == nil {
		p = builtin
	}
	m := &Meter{p: p, sse: isEventStream(contentType)}
	m.js.init(p.t, !m.sse, !m.sse)
	return m
}

// isEventStream says whether a Content-Type is text/event-stream, with
// any parameters (media types are case-insensitive, RFC 9110 §8.3.1).
func isEventStream(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

var newline = []byte{'\n'}

// Write scans p. It always returns len(p), nil, so that an io.MultiWriter
// or a TeeReader never stops the copy because of it.
func (m *Meter) Write(p []byte) (int, error) {
	if m.finished {
		return len(p), nil
	}
	if !m.sse {
		m.js.write(p)
		return len(p), nil
	}
	m.writeSSE(p)
	return len(p), nil
}

func (m *Meter) writeSSE(p []byte) {
	// A leading UTF-8 BOM is skipped; bytes that only began one are the
	// stream's first bytes after all.
	const bom = "\xEF\xBB\xBF"
	i := 0
	for !m.started && i < len(p) {
		if p[i] != bom[m.bom] {
			m.started = true
			m.scanSSE([]byte(bom[:m.bom]))
			break
		}
		i++
		if m.bom++; int(m.bom) == len(bom) {
			m.started = true
		}
	}
	m.scanSSE(p[i:])
}

// scanSSE parses p, the next bytes of an event stream after its BOM.
func (m *Meter) scanSSE(p []byte) {
	i := 0
	for i < len(p) {
		c := p[i]
		if m.cr {
			m.cr = false
			if c == '\n' {
				i++
				continue
			}
		}
		switch m.line {
		case lnData:
			j := endOfLine(p[i:])
			m.js.write(p[i : i+j])
			i += j
			if i < len(p) {
				m.js.write(newline)
				m.endLine(p[i])
				i++
			}
			continue
		case lnSkip:
			j := endOfLine(p[i:])
			i += j
			if i < len(p) {
				m.endLine(p[i])
				i++
			}
			continue
		}
		i++
		eol := c == '\n' || c == '\r'
		switch m.line {
		case lnStart:
			if eol {
				m.dispatch()
				m.endLine(c)
				continue
			}
			m.line, m.fieldLen = lnField, 0
			fallthrough
		case lnField:
			switch {
			case eol: // a field with no value
				if m.isData() {
					m.hasData = true
					m.js.write(newline)
				}
				m.endLine(c)
			case c == ':':
				if m.isData() {
					m.hasData = true
					m.line = lnDataSpace
				} else {
					m.line = lnSkip // a comment (empty name), event, id, retry
				}
			default:
				if m.fieldLen < len(m.field) {
					m.field[m.fieldLen] = c
				}
				m.fieldLen++
			}
		case lnDataSpace:
			m.line = lnData
			if c != ' ' {
				i-- // read c again as the value's first byte
			}
		}
	}
}

func (m *Meter) isData() bool { return m.fieldLen == 4 && string(m.field[:]) == "data" }

// endLine ends a line at its end byte c (CR or LF).
func (m *Meter) endLine(c byte) {
	m.line = lnStart
	m.cr = c == '\r'
}

// endOfLine is the index of the first CR or LF in p, or len(p).
func endOfLine(p []byte) int {
	j := bytes.IndexByte(p, '\n')
	if j < 0 {
		j = len(p)
	}
	if k := bytes.IndexByte(p[:j], '\r'); k >= 0 {
		return k
	}
	return j
}

// dispatch ends an event (a blank line): its data, if it is one JSON
// value, adds what it reports.
func (m *Meter) dispatch() {
	if !m.hasData {
		return
	}
	if m.js.finish() {
		m.got.merge(&m.js.cur)
	}
	m.js.reset()
	m.hasData = false
}

// Usage returns the tokens the response reported, and whether it
// reported any. Call it when the body has ended: it ends the scan (what is
// written later is ignored), and an event or JSON value cut short counts
// for nothing, as the WHATWG event-stream parser discards an event not
// followed by a blank line.
func (m *Meter) Usage() (n int64, ok bool) {
	if !m.finished {
		m.finished = true
		var v *values
		if m.sse {
			v = &m.got
		} else {
			m.js.finish()
			v = &m.js.done
		}
		m.n, m.ok = m.p.total(v)
	}
	return m.n, m.ok
}

// total is the cost that v reports: for the built-in shapes OpenAI's
// total, else Anthropic's input, output and cache tokens, else Gemini's
// total; for configured paths the sum of those found.
func (p *Paths) total(v *values) (int64, bool) {
	if v.set == 0 {
		return 0, false
	}
	if p.builtin {
		const anthropic = 1<<slotInput | 1<<slotOutput | 1<<slotCacheCreate | 1<<slotCacheRead
		switch {
		case v.set&(1<<slotTotal) != 0:
			return v.n[slotTotal], true
		case v.set&anthropic != 0:
			return sum(v, anthropic), true
		default:
			return v.n[slotGemini], true
		}
	}
	return sum(v, math.MaxUint32), true
}

// sum adds the numbers of the slots in mask that v holds; each is at most
// 2^53 and there are at most maxSlots, so it cannot overflow.
func sum(v *values, mask uint32) int64 {
	var n int64
	for i := range maxSlots {
		if v.set&mask&(1<<i) != 0 {
			n += v.n[i]
		}
	}
	return n
}
