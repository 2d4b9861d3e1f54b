package cost

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// The reference implementations below decode with encoding/json and split
// event streams line by line as the WHATWG algorithm is written; the fuzz
// targets check the streaming scanner against them.

// tooDeep says whether b may nest deeper than the scanner follows
// (maxDepth); the reference, encoding/json, goes to 10,000.
func tooDeep(b []byte) bool {
	return bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) >= maxDepth
}

// refPick sets in v the numbers doc holds at t's paths.
func refPick(t *trie, n int32, doc any, v *values) {
	switch x := doc.(type) {
	case map[string]any:
		for k, val := range x {
			c := t.child(n, []byte(k))
			if c < 0 {
				continue
			}
			if num, ok := val.(json.Number); ok && t.nodes[c].slot >= 0 {
				if cnt, ok := parseCount([]byte(num)); ok {
					v.n[t.nodes[c].slot] = cnt
					v.set |= 1 << t.nodes[c].slot
				}
			}
			refPick(t, c, val, v)
		}
	}
}

func refDecode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// refEstimate is Estimate through encoding/json.
func refEstimate(body []byte) (int64, bool) {
	if !json.Valid(body) {
		return 0, false
	}
	doc, err := refDecode(body)
	if err != nil {
		return 0, false
	}
	var v values
	refPick(estimateTrie, 0, doc, &v)
	n := int64(len(body) / 4)
	for slot := range slotGeminiMaxOutput + 1 {
		if v.set&(1<<slot) != 0 {
			return n + v.n[slot], true
		}
	}
	return n, true
}

// refJSON is a JSON Meter through encoding/json: a sequence of values,
// the elements of a top-level array each a document, the last number of a
// slot winning; the values before the first error count.
func refJSON(p *Paths, body []byte) (int64, bool) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var got values
	for {
		var doc any
		if err := d.Decode(&doc); err != nil {
			break
		}
		var v values
		if arr, ok := doc.([]any); ok {
			for _, e := range arr {
				refPick(p.t, 0, e, &v)
			}
		} else {
			refPick(p.t, 0, doc, &v)
		}
		got.merge(&v)
	}
	return p.total(&got)
}

// refSSE is an event-stream Meter written as the WHATWG algorithm reads:
// split into lines, fields, events; each event's data decoded whole.
func refSSE(p *Paths, body []byte) (int64, bool) {
	body = bytes.TrimPrefix(body, []byte("\xEF\xBB\xBF"))
	var got values
	var data []byte
	hasData := false
	for len(body) > 0 {
		i := bytes.IndexAny(body, "\r\n")
		if i < 0 {
			break // an unterminated last line is discarded
		}
		line := body[:i]
		if body[i] == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			i++
		}
		body = body[i+1:]
		if len(line) == 0 {
			if hasData && json.Valid(data) {
				if doc, err := refDecode(data); err == nil {
					var v values
					refPick(p.t, 0, doc, &v)
					got.merge(&v)
				}
			}
			data, hasData = data[:0], false
			continue
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		if string(field) == "data" {
			hasData = true
			data = append(append(data, value...), '\n')
		}
	}
	return p.total(&got)
}

func FuzzEstimate(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":300}`,
		`{"generationConfig":{"maxOutputTokens":8}}`,
		`{"max\u005ftokens":1e2}`, `[1,2]`, `"x"`, `-0.5e-3`, `{"a":[true,false,null]}`, `{`, "\"\x01\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if tooDeep(body) {
			Estimate(body) // must not panic; the reference nests deeper
			return
		}
		n, ok := Estimate(body)
		wn, wok := refEstimate(body)
		if n != wn || ok != wok {
			t.Fatalf("Estimate(%q) = %d, %v; encoding/json says %d, %v", body, n, ok, wn, wok)
		}
	})
}

// Any bytes, as JSON or as an event stream, in any chunks: no panic, the
// same usage whatever the chunks, and the reference's usage.
func FuzzMeterGarbage(f *testing.F) {
	for _, c := range allCases() {
		f.Add([]byte(c.body), c.ct == "text/event-stream", uint64(len(c.body)), c.paths != nil)
	}
	f.Add([]byte("data: {\"usage\":{\"total_tokens\":1}}\r\n\r"), true, uint64(3), false)
	f.Add([]byte("\xEF\xBB\xEFdata:1\n\n"), true, uint64(1), false)
	f.Fuzz(func(t *testing.T, body []byte, sse bool, seed uint64, configured bool) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		var paths []string
		if configured {
			paths = []string{"usage.total_tokens", "a", "a.b", "x.y.z"}
		}
		p, err := CompilePaths(paths)
		if err != nil {
			t.Fatal(err)
		}
		wn, wok := meter(t, ct, paths, body)
		if !tooDeep(body) {
			rn, rok := refJSON(p, body)
			if sse {
				rn, rok = refSSE(p, body)
			}
			if wn != rn || wok != rok {
				t.Fatalf("%s %q: Usage() = %d, %v; the reference says %d, %v", ct, body, wn, wok, rn, rok)
			}
		}
		r := rand.New(rand.NewPCG(seed, seed>>32))
		for range 4 {
			if n, ok := meter(t, ct, paths, randomChunks(r, body)...); n != wn || ok != wok {
				t.Fatalf("%s %q in random chunks: Usage() = %d, %v; whole %d, %v", ct, body, n, ok, wn, wok)
			}
		}
		if len(body) <= 256 {
			for i := range len(body) + 1 {
				if n, ok := meter(t, ct, paths, body[:i], body[i:]); n != wn || ok != wok {
					t.Fatalf("%s %q split at %d: Usage() = %d, %v; whole %d, %v", ct, body, i, n, ok, wn, wok)
				}
			}
		}
	})
}

// Well-formed responses of every built-in shape, JSON and streamed, with
// any text and counts: the exact usage, split at every byte boundary and
// in random chunks.
func FuzzMeterWellFormed(f *testing.F) {
	f.Add(uint8(0), "Hello, world", int64(9), int64(12), int64(0), int64(0), uint64(1))
	f.Add(uint8(1), "a\nb \"q\" \u00e9 \x00", int64(100), int64(3), int64(0), int64(0), uint64(7))
	f.Add(uint8(3), "streamed", int64(25), int64(15), int64(3), int64(4), uint64(2))
	f.Add(uint8(5), "", int64(1), int64(0), int64(0), int64(0), uint64(3))
	f.Add(uint8(6), "data: [DONE]\n\n", int64(1<<40), int64(7), int64(0), int64(0), uint64(4))
	f.Fuzz(func(t *testing.T, shape uint8, text string, in, out, cc, cr int64, seed uint64) {
		clamp := func(n int64) int64 { return max(0, n) % 1_000_000_001 }
		in, out, cc, cr = clamp(in), clamp(out), clamp(cc), clamp(cr)
		r := rand.New(rand.NewPCG(seed, 99))
		body, ct, want := wellFormed(t, shape%8, text, in, out, cc, cr, r)
		check := func(how string, chunks ...[]byte) {
			t.Helper()
			if n, ok := meter(t, ct, nil, chunks...); n != want || !ok {
				t.Fatalf("shape %d %s: Usage() = %d, %v; want %d, true\n%s", shape%8, how, n, ok, want, body)
			}
		}
		check("whole", body)
		for i := range len(body) + 1 {
			check("split", body[:i], body[i:])
		}
		for range 8 {
			check("random chunks", randomChunks(r, body)...)
		}
	})
}

// wellFormed builds a response of a built-in shape: 0 OpenAI chat JSON,
// 1 OpenAI chat stream, 2 Anthropic JSON, 3 Anthropic stream, 4 Gemini
// JSON, 5 Gemini stream, 6 Gemini streamGenerateContent array, 7 OpenAI
// responses stream. Streams use LF or CRLF line ends, and one data line
// per event or the JSON indented over many data lines.
func wellFormed(t *testing.T, shape uint8, text string, in, out, cc, cr int64, r *rand.Rand) ([]byte, string, int64) {
	type m = map[string]any
	pieces := splitText(text, r)
	eol := "\n"
	if r.IntN(2) == 0 {
		eol = "\r\n"
	}
	indent := r.IntN(2) == 0
	var b bytes.Buffer
	event := func(name string, v any) {
		if name != "" {
			b.WriteString("event: " + name + eol)
		}
		if r.IntN(4) == 0 {
			b.WriteString(": comment" + eol)
		}
		var data []byte
		var err error
		if indent {
			data, err = json.MarshalIndent(v, "", " ")
		} else {
			data, err = json.Marshal(v)
		}
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			b.WriteString("data: " + line + eol)
		}
		b.WriteString(eol)
	}
	whole := func(v any) []byte {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	const sse = "text/event-stream"
	switch shape {
	case 0:
		return whole(m{"choices": []m{{"message": m{"content": text}}}, "usage": m{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out}}), "application/json", in + out
	case 1:
		for _, p := range pieces {
			event("", m{"choices": []m{{"delta": m{"content": p}}}, "usage": nil})
		}
		event("", m{"choices": []m{}, "usage": m{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out}})
		b.WriteString("data: [DONE]" + eol + eol)
		return b.Bytes(), sse, in + out
	case 2:
		return whole(m{"content": []m{{"type": "text", "text": text}}, "usage": m{"input_tokens": in, "output_tokens": out, "cache_creation_input_tokens": cc, "cache_read_input_tokens": cr}}), "application/json", in + out + cc + cr
	case 3:
		event("message_start", m{"type": "message_start", "message": m{"content": []m{}, "usage": m{"input_tokens": in, "output_tokens": 1, "cache_creation_input_tokens": cc, "cache_read_input_tokens": cr}}})
		for i, p := range pieces {
			event("content_block_delta", m{"type": "content_block_delta", "delta": m{"type": "text_delta", "text": p}})
			if i%3 == 2 {
				event("message_delta", m{"type": "message_delta", "usage": m{"output_tokens": i}})
			}
		}
		event("message_delta", m{"type": "message_delta", "delta": m{"stop_reason": "end_turn"}, "usage": m{"output_tokens": out}})
		event("message_stop", m{"type": "message_stop"})
		return b.Bytes(), sse, in + out + cc + cr
	case 4:
		return whole(m{"candidates": []m{{"content": m{"parts": []m{{"text": text}}}}}, "usageMetadata": m{"promptTokenCount": in, "candidatesTokenCount": out, "totalTokenCount": in + out}}), "application/json", in + out
	case 5, 6:
		var chunks []any
		for i, p := range pieces {
			chunks = append(chunks, m{"candidates": []m{{"content": m{"parts": []m{{"text": p}}}}}, "usageMetadata": m{"promptTokenCount": in, "totalTokenCount": in + int64(i)}})
		}
		chunks = append(chunks, m{"candidates": []m{}, "usageMetadata": m{"promptTokenCount": in, "candidatesTokenCount": out, "totalTokenCount": in + out}})
		if shape == 6 {
			return whole(chunks), "application/json", in + out
		}
		for _, c := range chunks {
			event("", c)
		}
		return b.Bytes(), sse, in + out
	default:
		for _, p := range pieces {
			event("response.output_text.delta", m{"type": "response.output_text.delta", "delta": p})
		}
		event("response.completed", m{"type": "response.completed", "response": m{"usage": m{"input_tokens": in, "output_tokens": out, "total_tokens": in + out}}})
		return b.Bytes(), sse, in + out
	}
}

// splitText cuts s into a few pieces (at least one).
func splitText(s string, r *rand.Rand) []string {
	var out []string
	for len(s) > 0 && len(out) < 20 {
		n := 1 + r.IntN(len(s))
		out = append(out, s[:n])
		s = s[n:]
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// The references agree with the table: they are worth comparing against.
func TestReferences(t *testing.T) {
	for _, c := range allCases() {
		p, err := CompilePaths(c.paths)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		var ok bool
		if isEventStream(c.ct) {
			n, ok = refSSE(p, []byte(c.body))
		} else {
			n, ok = refJSON(p, []byte(c.body))
		}
		if n != c.want || ok != c.ok {
			t.Errorf("%s: reference = %d, %v; want %d, %v", c.name, n, ok, c.want, c.ok)
		}
	}
}
