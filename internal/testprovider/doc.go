// Package testprovider is a mock LLM provider for tests and proxybench:
// an http.Handler that answers OpenAI chat completions (JSON, or
// server-sent events when the request has "stream": true) and enforces
// requests per minute and tokens per minute the way OpenAI documents its
// rate limits (https://platform.openai.com/docs/guides/rate-limits).
//
// # Limits
//
// Each limit (Config.RPM, Config.TPM per Config.Period, one minute unless
// a test shortens it) is a bucket that holds at most the limit and is
// replenished continuously at limit/Period: OpenAI's "replenished
// continuously" model rather than a fixed window, because it is the one
// its headers describe (x-ratelimit-reset-* is the time until the bucket
// is full again) and the stricter one for a client: a burst that a fixed
// window would take at its start is refused here. Anything that never
// puts more than the limit in a window of Period (a proxyd quota) fits it.
//
// A request takes 1 from the requests bucket and its estimate from the
// tokens bucket, both or neither: len(body)/4 (bytes; characters for the
// ASCII bodies tests send) plus max_tokens (or max_completion_tokens) —
// OpenAI's own estimate at admission. When the answer is produced, the
// estimate is replaced by the actual usage: the difference is given back
// or charged, and the bucket may go into debt (below 0), which delays the
// next requests. A request whose estimate exceeds the tokens limit is
// refused as too large (429 without retry-after: waiting will not help).
//
// Every answer carries x-ratelimit-{limit,remaining,reset}-{requests,tokens}
// for the limits set (reset as OpenAI writes it: "1s", "6m0s", "12ms"); a
// 429 beyond a limit adds retry-after (whole seconds, rounded up) and an
// OpenAI error body naming the dimension.
//
// # Answers
//
// The actual usage is prompt_tokens = len(body)/4 plus completion_tokens,
// which the request chooses: the test field "mock_completion_tokens", else
// max_tokens (or max_completion_tokens), else 16. The message has four
// bytes of text per completion token (at most 1 MiB). A streamed answer is
// Config.Events content chunks (the test field "mock_events" overrides),
// each flushed on its own, Config.EventDelay apart on Config.Clock; then
// the finish chunk, then — with stream_options.include_usage — a chunk
// with "choices": [] and the usage (earlier chunks carry "usage": null, as
// OpenAI's do), then "data: [DONE]". The usage correction is applied
// before the usage is written, so a client that has read it sees it in
// Stats; a stream the client leaves is corrected when the handler returns.
//
// Counters (Stats) are what tests assert on: requests received, admitted,
// refused per dimension, tokens estimated at admission and tokens used.
// A Provider is safe for concurrent use.
package testprovider
