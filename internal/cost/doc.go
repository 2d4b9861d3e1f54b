// Package cost prices LLM API requests in tokens before they are sent and
// reads what they actually used from the response as it streams
// (docs/shaping.md, "LLM APIs: pricing requests"; the keys are
// hosts[].cost in docs/configuration.md). It knows nothing of HTTP
// beyond a Content-Type string: the proxy reads the body, calls Estimate
// or ParseHeader, and feeds the response to a Meter.
//
//   - Estimate(body): len(body)/4 plus the first of the top-level
//     max_tokens, max_completion_tokens and max_output_tokens (else Gemini's
//     generationConfig.maxOutputTokens), the providers' own estimate; ok is
//     false when the body is not one JSON value (then cost.default applies).
//   - ParseHeader(v): the caller's own estimate (X-Proxy-Cost), a positive
//     integer; the error says why not, for a 400 with Proxy-Status.
//   - Meter: an io.Writer fed a copy of each chunk written to the client;
//     Usage() after the body ended. JSON bodies (OpenAI usage.total_tokens,
//     Anthropic usage.input_tokens + output_tokens + cache tokens, Gemini
//     usageMetadata.totalTokenCount, or the configured paths' sum) and
//     text/event-stream bodies (OpenAI's final chunk with
//     stream_options.include_usage, Anthropic's message_start and
//     cumulative message_delta, Gemini's last usageMetadata; the last
//     number of each path wins).
//
// # One scanner
//
// Both are one incremental JSON tokenizer (scan.go): a push state machine
// over bytes that can stop at any byte and resume with the next chunk, and
// that picks non-negative integers out of the document at the paths of a
// small trie. It validates as encoding/json does (FuzzEstimate checks that
// it accepts exactly what json.Valid accepts, nesting up to 512), so
// "not JSON" means the same as everywhere else. Strings, most of an LLM
// body, are skipped eight bytes at a time. Nothing is decoded into maps or
// strings: a 100 KiB chat request is priced in about 0.12 ms without
// allocating, 4 to 6 times faster than json.Valid alone and 6 to 10 times
// faster than json.Unmarshal into a map (BenchmarkEstimate, side by side).
//
// # Bounded memory, no delay
//
// A Meter keeps no part of the body: only the container stack (kinds as
// bits, up to 512 levels; deeper is given up as not JSON), the key being
// read (384 bytes as written: a 64-byte path key with every byte escaped)
// and the number being read (32 bytes). The event-stream parser feeds each
// event's data lines straight into the tokenizer as they arrive (a line
// break between them, as the WHATWG algorithm joins them), so an event of
// any size costs the same ~1.5 KB Meter: there is no buffer to cap and no
// size beyond which usage is missed. Buffering the body and decoding it at
// the end was rejected: a megabyte per streaming response held for its
// whole life, and a cap that silently loses the usage of large answers.
// Write scans the chunk and returns: called after the chunk was written to
// the client it delays no byte (under 1 µs per event, 40 to 90 µs per
// 64 KiB of JSON, one 1.5 KB allocation per response: BenchmarkMeterSSE,
// BenchmarkMeterJSON; buffering and json.Unmarshal take 8 to 15 times as
// long and 225 KB).
//
// # Which number wins
//
// A JSON body may be a sequence of values (newline-delimited JSON) and a
// top-level array's elements are documents (Gemini's streamGenerateContent
// without alt=sse); an event stream is a sequence of events. Each
// document or event sets the paths it holds, the last one winning per
// path; an event whose data is not one JSON value ("[DONE]") or a value
// cut short counts for nothing; an event not ended by a blank line is
// discarded, as the WHATWG parser does. For the built-in shapes the total
// is OpenAI's total_tokens when present (chat completions, responses,
// also under response. in the responses stream's response.completed),
// else the Anthropic fields' sum (input, output, cache creation, cache
// read; message.usage in message_start, usage in message_delta), else
// Gemini's totalTokenCount. Configured paths (hosts[].cost.usage) are
// summed instead.
//
// Not read: compressed bodies (the Meter sees what the client sees; with
// Content-Encoding the usage is missed and the estimate kept), and
// values in arrays below the top level.
//
// # Invariants, checked by the fuzz targets
//
// No input panics; Estimate equals an encoding/json reference on any
// bytes; a Meter's usage is the same whatever the chunking and equals a
// reference that decodes whole (encoding/json, the WHATWG line algorithm);
// well-formed OpenAI, Anthropic and Gemini responses, JSON and streamed,
// give exactly their usage when split at every byte boundary.
package cost
