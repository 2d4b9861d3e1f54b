package cost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// chatRequest is an OpenAI chat request of about size bytes: a system
// prompt and turns of prose, max_tokens last (the worst place for a
// scanner).
func chatRequest(size int) []byte {
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var msgs []msg
	turn := strings.Repeat("The quick brown fox jumps over the lazy dog; \"quoted\" and caf\u00e9.\n", 20)
	for n := 0; n < size; n += len(turn) + 40 {
		msgs = append(msgs, msg{Role: []string{"user", "assistant"}[len(msgs)%2], Content: turn})
	}
	b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs, "temperature": 0.2, "max_tokens": 4096})
	return b
}

// The estimate's scanner side by side with the ways it was not written:
// json.Valid (the floor: validating alone), a json.Decoder walking
// Tokens, and json.Unmarshal into a map.
func BenchmarkEstimate(b *testing.B) {
	body := chatRequest(100 << 10)
	want, _ := Estimate(body)
	run := func(name string, f func([]byte) int64) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if got := f(body); got != want && got != -1 {
					b.Fatalf("%s = %d, want %d", name, got, want)
				}
			}
		})
	}
	run("scanner", func(body []byte) int64 { n, _ := Estimate(body); return n })
	run("json.Valid", func(body []byte) int64 { json.Valid(body); return -1 })
	run("Decoder.Token", func(body []byte) int64 {
		d := json.NewDecoder(bytes.NewReader(body))
		depth := 0
		key, isKey := "", false
		var max int64
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			switch v := tok.(type) {
			case json.Delim:
				if v == '{' || v == '[' {
					depth++
				} else {
					depth--
				}
				isKey = depth == 1 && v == '{'
				continue
			case string:
				if depth == 1 && isKey {
					key, isKey = v, false
					continue
				}
			case float64:
				if depth == 1 && key == "max_tokens" {
					max = int64(v)
				}
			}
			isKey = depth == 1
		}
		return int64(len(body)/4) + max
	})
	run("Unmarshal map", func(body []byte) int64 {
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		return int64(len(body)/4) + int64(m["max_tokens"].(float64))
	})
}

// openAIResponse is a chat completion of about size bytes with its usage
// last.
func openAIResponse(size int) []byte {
	text := strings.Repeat("Lorem ipsum dolor sit amet, \"consectetur\" adipiscing elit.\n", size/60)
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion",
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": 100, "completion_tokens": size / 4, "total_tokens": 100 + size/4},
	})
	return b
}

// openAIStream is an OpenAI chat stream of n content events and the usage
// event.
func openAIStream(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token %d and some more\"},\"finish_reason\":null}],\"usage\":null}\n\n", i)
	}
	b.WriteString("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":200,\"total_tokens\":209}}\n\ndata: [DONE]\n\n")
	return b.Bytes()
}

// benchMeter feeds body to a Meter in chunks of chunk bytes (a proxy's
// copy buffer, or one event per write for a stream).
func benchMeter(b *testing.B, ct string, body []byte, chunks [][]byte, want int64) {
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		m := NewMeter(ct, nil)
		for _, c := range chunks {
			m.Write(c)
		}
		if n, ok := m.Usage(); n != want || !ok {
			b.Fatalf("Usage() = %d, %v; want %d", n, ok, want)
		}
	}
}

func chunked(body []byte, size int) [][]byte {
	var out [][]byte
	for len(body) > 0 {
		n := min(size, len(body))
		out = append(out, body[:n])
		body = body[n:]
	}
	return out
}

// A 64 KiB JSON response written in 32 KiB copies, the Meter beside the
// alternative it replaces (buffer the body, then json.Unmarshal the usage).
func BenchmarkMeterJSON(b *testing.B) {
	body := openAIResponse(64 << 10)
	want := int64(100 + (64<<10)/4)
	b.Run("meter", func(b *testing.B) { benchMeter(b, "application/json", body, chunked(body, 32<<10), want) })
	b.Run("buffer+Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var buf bytes.Buffer
			for _, c := range chunked(body, 32<<10) {
				buf.Write(c)
			}
			var v struct {
				Usage struct {
					Total int64 `json:"total_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(buf.Bytes(), &v); err != nil || v.Usage.Total != want {
				b.Fatal(err, v.Usage.Total)
			}
		}
	})
}

// A 200-event OpenAI stream, one write per event (as a proxy flushing
// each event sees it).
func BenchmarkMeterSSE(b *testing.B) {
	body := openAIStream(200)
	var events [][]byte
	for e := range bytes.SplitAfterSeq(body, []byte("\n\n")) {
		events = append(events, e)
	}
	benchMeter(b, "text/event-stream", body, events, 209)
}
