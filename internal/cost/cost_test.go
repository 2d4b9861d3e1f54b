package cost

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestEstimate(t *testing.T) {
	tests := []struct {
		name string
		body string
		add  int64 // expected on top of len(body)/4
		ok   bool
	}{
		{"openai chat max_tokens", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":300}`, 300, true},
		{"openai max_completion_tokens", `{"model":"o3","max_completion_tokens":5000,"messages":[]}`, 5000, true},
		{"openai responses max_output_tokens", `{"model":"gpt-4.1","input":"hi","max_output_tokens":64}`, 64, true},
		{"anthropic", `{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`, 1024, true},
		{"gemini", `{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"temperature":0.2,"maxOutputTokens":800}}`, 800, true},
		{"no limit: the prompt only", `{"messages":[{"role":"user","content":"hello there"}]}`, 0, true},
		{"max_tokens first of all", `{"max_output_tokens":7,"max_completion_tokens":9,"max_tokens":11}`, 11, true},
		{"then max_completion_tokens", `{"max_output_tokens":7,"max_completion_tokens":9}`, 9, true},
		{"null falls through", `{"max_tokens":null,"max_output_tokens":7}`, 7, true},
		{"negative ignored", `{"max_tokens":-5}`, 0, true},
		{"fraction ignored, integral float taken", `{"max_tokens":2.5,"max_completion_tokens":3e2}`, 300, true},
		{"a string is not a number", `{"max_tokens":"300"}`, 0, true},
		{"nested is not top-level", `{"messages":[{"max_tokens":300}],"options":{"max_tokens":5}}`, 0, true},
		{"escaped key", `{"max\u005ftokens":42}`, 42, true},
		{"repeated key: last wins", `{"max_tokens":1,"max_tokens":2}`, 2, true},
		{"whitespace around", " \n\t{\"max_tokens\": 10}\r\n", 10, true},
		{"top-level array", `[{"max_tokens":10}]`, 0, true},
		{"empty", ``, 0, false},
		{"not JSON", `model=gpt&max_tokens=5`, 0, false},
		{"truncated", `{"max_tokens":10,"messages":[`, 0, false},
		{"trailing garbage", `{"max_tokens":10} x`, 0, false},
		{"two values", `{"max_tokens":10}{"max_tokens":1}`, 0, false},
		{"control character in a string", "{\"a\":\"x\ny\",\"max_tokens\":1}", 0, false},
		{"leading zero", `{"max_tokens":010}`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := Estimate([]byte(tt.body))
			want := int64(0)
			if tt.ok {
				want = int64(len(tt.body)/4) + tt.add
			}
			if n != want || ok != tt.ok {
				t.Errorf("Estimate(%q) = %d, %v; want %d, %v", tt.body, n, ok, want, tt.ok)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  string
	}{
		{"1", 1, ""},
		{"20000", 20000, ""},
		{"9007199254740992", 1 << 53, ""},
		{"", 0, "invalid cost: empty; want a positive integer of tokens"},
		{"0", 0, "invalid cost: 0; want a positive integer of tokens"},
		{"000", 0, "invalid cost: 0; want a positive integer of tokens"},
		{"-5", 0, `invalid cost: "-5" is not a positive integer of tokens (digits only)`},
		{"+5", 0, `invalid cost: "+5" is not a positive integer of tokens (digits only)`},
		{"1.5", 0, `invalid cost: "1.5" is not a positive integer of tokens (digits only)`},
		{" 5", 0, `invalid cost: " 5" is not a positive integer of tokens (digits only)`},
		{"5k", 0, `invalid cost: "5k" is not a positive integer of tokens (digits only)`},
		{"9007199254740993", 0, `invalid cost: "9007199254740993" is too large (at most 9007199254740992)`},
		{"99999999999999999999999", 0, `invalid cost: "99999999999999999999999" is too large (at most 9007199254740992)`},
		{strings.Repeat("x", 100), 0, `invalid cost: "` + strings.Repeat("x", 32) + `"… is not a positive integer of tokens (digits only)`},
	} {
		n, err := ParseHeader(tt.in)
		got := ""
		if err != nil {
			got = err.Error()
			if !errors.Is(err, ErrInvalidCost) {
				t.Errorf("ParseHeader(%q) error %v does not wrap ErrInvalidCost", tt.in, err)
			}
		}
		if n != tt.want || got != tt.err {
			t.Errorf("ParseHeader(%q) = %d, %q; want %d, %q", tt.in, n, got, tt.want, tt.err)
		}
	}
}

// meterCase is a response body and the usage a Meter must find in it.
type meterCase struct {
	name  string
	ct    string
	paths []string
	body  string
	want  int64
	ok    bool
}

var jsonCases = []meterCase{
	{name: "openai chat", body: `{"id":"c","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"Hi \"there\" \u00e9"}}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}`, want: 21, ok: true},
	{name: "openai responses", body: `{"object":"response","output":[],"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}`, want: 12, ok: true},
	{name: "anthropic", body: `{"type":"message","content":[{"type":"text","text":"x"}],"usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,"output_tokens":4}}`, want: 154, ok: true},
	{name: "anthropic without cache", body: `{"usage":{"input_tokens":10,"output_tokens":4}}`, want: 14, ok: true},
	{name: "gemini", body: `{"candidates":[{"content":{"parts":[{"text":"x"}]}}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"totalTokenCount":7}}`, want: 7, ok: true},
	{name: "gemini streamGenerateContent array", body: `[{"usageMetadata":{"totalTokenCount":3}},` + "\n" + `{"usageMetadata":{"totalTokenCount":9}}]`, want: 9, ok: true},
	{name: "newline-delimited: last wins", ct: "application/x-ndjson", body: "{\"usage\":{\"total_tokens\":1}}\n{\"usage\":{\"total_tokens\":2}}\n", want: 2, ok: true},
	{name: "usage nested deeper is not usage", body: `{"choices":[{"usage":{"total_tokens":5}}],"data":{"usage":{"total_tokens":6}}}`},
	{name: "usage null", body: `{"usage":null}`},
	{name: "no usage", body: `{"id":"x"}`},
	{name: "string count ignored", body: `{"usage":{"total_tokens":"21"}}`},
	{name: "truncated", body: `{"usage":{"total_tokens":21}`},
	{name: "html error page", ct: "text/html", body: `<html><body>{"usage":{"total_tokens":21}}</body></html>`},
	{name: "configured paths summed", paths: []string{"meta.billed.in", "meta.billed.out"}, body: `{"meta":{"billed":{"in":10,"out":5,"other":99}},"usage":{"total_tokens":1}}`, want: 15, ok: true},
	{name: "configured path absent", paths: []string{"cost"}, body: `{"usage":{"total_tokens":1}}`},
	{name: "configured top-level number", paths: []string{"tokens"}, body: `{"tokens":1.0e3}`, want: 1000, ok: true},
	{name: "media type parameters", ct: "application/json; charset=utf-8", body: `{"usage":{"total_tokens":3}}`, want: 3, ok: true},
}

var sseCases = []meterCase{
	{name: "openai include_usage", body: "" +
		"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n" +
		"data: [DONE]\n\n", want: 11, ok: true},
	{name: "openai without include_usage", body: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n"},
	{name: "anthropic messages", body: "" +
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":8}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", want: 25 + 3 + 4 + 15, ok: true},
	{name: "anthropic cumulative input in message_delta", body: "" +
		"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n" +
		"data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":30,\"output_tokens\":15}}\n\n", want: 45, ok: true},
	{name: "gemini alt=sse", body: "" +
		"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"usageMetadata\":{\"promptTokenCount\":4,\"totalTokenCount\":5}}\r\n\r\n" +
		"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":6,\"totalTokenCount\":10}}\r\n\r\n", want: 10, ok: true},
	{name: "openai responses stream", body: "" +
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n" +
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"total_tokens\":7}}}\n\n", want: 7, ok: true},
	{name: "multi-line data, comments, CR line ends", body: "" +
		": keep-alive\r" +
		"data: {\"usage\":\rdata: {\"total_tokens\"\rdata: :\rdata:33}}\r\r" +
		"data: [DONE]\r\r", want: 33, ok: true},
	{name: "data without a space, field without a colon", body: "data\ndata:{\"usage\":{\"total_tokens\":4}}\n\n", want: 4, ok: true},
	{name: "a later event without usage keeps it", body: "data: {\"usage\":{\"total_tokens\":4}}\n\ndata: {\"usage\":null}\n\n", want: 4, ok: true},
	{name: "last event not ended: discarded", body: "data: {\"usage\":{\"total_tokens\":4}}\n\ndata: {\"usage\":{\"total_tokens\":9}}\n", want: 4, ok: true},
	{name: "byte order mark", body: "\xEF\xBB\xBFdata: {\"usage\":{\"total_tokens\":4}}\n\n", want: 4, ok: true},
	{name: "half a byte order mark is data", body: "\xEF\xBBdata: {\"usage\":{\"total_tokens\":4}}\n\n"},
	{name: "not data fields", body: "event: {\"usage\":{\"total_tokens\":4}}\nid: 1\ndatum: {\"usage\":{\"total_tokens\":5}}\n\n"},
	{name: "two values in one event", body: "data: {\"usage\":{\"total_tokens\":4}}\ndata: {\"usage\":{\"total_tokens\":5}}\n\n"},
	{name: "configured paths in events", paths: []string{"x.n"}, body: "data: {\"x\":{\"n\":2}}\n\ndata: {\"x\":{\"n\":3}}\n\n", want: 3, ok: true},
}

// allCases are jsonCases and sseCases with their media types defaulted.
func allCases() []meterCase {
	var out []meterCase
	for _, c := range jsonCases {
		if c.ct == "" {
			c.ct = "application/json"
		}
		out = append(out, c)
	}
	for _, c := range sseCases {
		if c.ct == "" {
			c.ct = "text/event-stream"
		}
		out = append(out, c)
	}
	return append(out, meterCase{name: "media type case and parameters", ct: "Text/Event-Stream; charset=utf-8", body: "data: {\"usage\":{\"total_tokens\":4}}\n\n", want: 4, ok: true})
}

// meter runs body through a fresh Meter in the given chunks.
func meter(t testing.TB, ct string, paths []string, chunks ...[]byte) (int64, bool) {
	p, err := CompilePaths(paths)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMeter(ct, p)
	for _, c := range chunks {
		if n, err := m.Write(c); n != len(c) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(c))
		}
	}
	return m.Usage()
}

// Every case gives its usage whole, split in two at every byte boundary,
// byte by byte, and in random chunks.
func TestMeter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tt := range allCases() {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			check := func(how string, chunks ...[]byte) {
				t.Helper()
				if n, ok := meter(t, tt.ct, tt.paths, chunks...); n != tt.want || ok != tt.ok {
					t.Fatalf("%s: Usage() = %d, %v; want %d, %v", how, n, ok, tt.want, tt.ok)
				}
			}
			check("whole", b)
			for i := range len(b) + 1 {
				check("split at "+strconv.Itoa(i), b[:i], b[i:])
			}
			bytewise := make([][]byte, len(b))
			for i := range b {
				bytewise[i] = b[i : i+1]
			}
			check("byte by byte", bytewise...)
			for range 50 {
				check("random chunks", randomChunks(r, b)...)
			}
		})
	}
}

// randomChunks cuts b into chunks of random sizes.
func randomChunks(r *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1 + r.IntN(min(len(b), 1+r.IntN(64)))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// Writes after Usage are ignored, and Usage answers the same again.
func TestMeterUsageEnds(t *testing.T) {
	m := NewMeter("application/json", nil)
	m.Write([]byte(`{"usage":{"total_tokens":5}}`))
	if n, ok := m.Usage(); n != 5 || !ok {
		t.Fatalf("Usage() = %d, %v", n, ok)
	}
	m.Write([]byte(`{"usage":{"total_tokens":6}}`))
	if n, ok := m.Usage(); n != 5 || !ok {
		t.Fatalf("Usage() after a late write = %d, %v; want 5, true", n, ok)
	}
}

func TestCompilePaths(t *testing.T) {
	var seventeen []string
	for i := range 17 {
		seventeen = append(seventeen, "p"+strconv.Itoa(i))
	}
	for _, tt := range []struct {
		paths []string
		err   string
	}{
		{nil, ""},
		{[]string{"usage.total_tokens"}, ""},
		{[]string{"a", "b.c"}, ""},
		{[]string{""}, `invalid usage path: "": empty key (want keys separated by single dots, e.g. "usage.total_tokens")`},
		{[]string{"usage..x"}, `invalid usage path: "usage..x": empty key (want keys separated by single dots, e.g. "usage.total_tokens")`},
		{[]string{".x"}, `invalid usage path: ".x": empty key (want keys separated by single dots, e.g. "usage.total_tokens")`},
		{[]string{"a", "a"}, `invalid usage path: "a" given twice`},
		{[]string{strings.Repeat("k", 65)}, `invalid usage path: "` + strings.Repeat("k", 65) + `": a key longer than 64 bytes`},
		{seventeen, "invalid usage path: at most 16 paths, got 17"},
	} {
		_, err := CompilePaths(tt.paths)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.err {
			t.Errorf("CompilePaths(%q) = %q, want %q", tt.paths, got, tt.err)
		}
	}
}
