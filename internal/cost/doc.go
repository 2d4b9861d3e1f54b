// Package cost prices LLM API requests in tokens before they are sent and
// reads what they actually used from the response as it streams
// (docs/shaping.md, "LLM APIs: pricing requests"; the keys are
// hosts[].cost in docs/configuration.md). It knows nothing of HTTP
// beyond a Content-Type and a Content-Encoding string: the proxy reads
// the body, calls Estimate or ParseHeader, and feeds the response to a
// Meter, or to an Inflater in front of one when it is compressed.
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
//   - Inflater: in front of a Meter for a gzip or deflate body (its
//     Content-Encoding), fed the compressed chunks; see "Compressed
//     bodies".
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
// Not read: values in arrays below the top level, and bodies in an
// encoding Go's standard library cannot decode (br, zstd; below).
//
// # Compressed bodies
//
// The OpenAI and Anthropic SDKs send Accept-Encoding: gzip, so their
// answers often come compressed; the proxy forwards them as they are, and
// an Inflater feeds the Meter the decoded bytes (gzip, x-gzip, deflate as
// zlib or raw). compress/flate pulls from an io.Reader and cannot stop at
// the end of a chunk and resume with the next, so the Inflater decodes in
// a goroutine of its own, started with the body's first byte: Write
// copies the compressed chunk into a queue under a mutex and returns (the
// copy to the client never waits for the decoder); the decoder takes the
// whole queue at a time (two buffers swapped) and inflates it into the
// Meter. Usage (the body ended) or Close (it was abandoned) ends the input
// and waits for the decoder to finish what it was given; no decoder
// outlives its body (goleak).
//
// Bounded: a decoder more than InflateBehind (128 KiB) compressed bytes
// behind gives up rather than queue more (ErrBehind), and so does a body
// that inflates more than 64 times past its first MiB (ErrInflation, a
// decompression bomb), so the queue, the decoding work left when the
// body ends, and the memory (two queues, a pooled 32 KiB window and
// 16 KiB buffer) are bounded. A body that gave up, or is corrupt (bad
// checksum, trailing garbage), reports no usage: the estimate stays. The
// price (BenchmarkMeteredCopy in internal/proxy, side by side): a 64 KiB
// gzip JSON answer metered takes about 2.4 times the plain metered copy
// (44 against 18 µs: the inflating), a gzip stream of 200 events about
// 1.7 times (165 against 98 µs: a goroutine handoff per event), with 3 KB
// and 12 KB allocated per response.
//
// br and zstd are not decoded: the standard library has no decoder, and
// a dependency for them (andybalholm/brotli, klauspost/compress) was not
// worth it while the SDKs ask for gzip; their usage is missed and the
// estimate kept (NewInflater's ErrEncoding), as for more than one coding.
//
// # Invariants, checked by the fuzz targets
//
// No input panics; Estimate equals an encoding/json reference on any
// bytes; a Meter's usage is the same whatever the chunking and equals a
// reference that decodes whole (encoding/json, the WHATWG line algorithm);
// well-formed OpenAI, Anthropic and Gemini responses, JSON and streamed,
// give exactly their usage when split at every byte boundary, and so do
// they gzip- and deflate-compressed, through an Inflater, split at every
// byte boundary of the compressed body (FuzzInflateWellFormed); an
// Inflater never panics on garbage and answers the same whatever the
// chunking (FuzzInflateGarbage).
package cost
