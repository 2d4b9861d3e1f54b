// Package headers parses and formats the HTTP header values proxyd reads
// and writes. It knows nothing of the proxy: every function takes strings,
// an http.Header or durations and returns plain values, time is an argument
// (Backpressure takes now), and there is no state, so everything here is
// safe for concurrent use.
//
// Read side:
//
//   - ParsePriority / ParsePriorityValues: the RFC 9218 §4 Priority field,
//     an RFC 8941 Dictionary; u outside 0..7 or of the wrong type is ignored
//     (RFC 9218 §4.1), as is an invalid field (RFC 8941 §4.2).
//   - ParseUrgency: the custom urgency header (X-Priority), an integer 0..7.
//   - ParseTimeout: the caller's budget (X-Proxy-Timeout), a Go duration or
//     plain seconds, positive and finite.
//   - Backpressure: Retry-After (RFC 9110 §10.2.3) and retry-after-ms on a
//     429 or 503, and every exhausted quota dimension ProviderSignals reads
//     (docs/shaping.md, "Upstream back-pressure").
//   - ProviderSignals (provider.go): each quota dimension a response
//     states, one parser per family: X-RateLimit-* (GitHub), OpenAI's
//     x-ratelimit-*-{requests,tokens} (durations, ParseResetDuration),
//     Anthropic's anthropic-ratelimit-* (RFC 3339), and the IETF RateLimit
//     fields (draft-ietf-httpapi-ratelimit-headers, the Dictionary and the
//     List-of-policies forms). Field names are pre-scanned once
//     (familiesIn) so that a response without them costs no lookups.
//   - RateLimitPolicies: the IETF RateLimit-Policy field (q, qu, w).
//
// Write side: ProxyStatus (RFC 9209 §2, with details as an RFC 8941 §4.1.6
// String), RetryAfterSeconds (RFC 9110 §10.2.3 delay-seconds, rounded up)
// and ServerTiming (W3C Server Timing; docs/clients.md, "When proxyd says no").
//
// Structured fields are handled by a small, complete RFC 8941 parser (sf.go)
// that follows the §4.2 algorithms: Dictionaries, Lists, Inner Lists,
// parameters, and every bare item type (Integer, Decimal, String, Token,
// Byte Sequence, Boolean, plus RFC 9651 Date and Display String, so that a
// peer using them in a member we do not read does not void the field). It
// validates the whole field before anything in it is used, visits members
// through a callback instead of building maps, and keeps parameters as
// validated text looked up on demand, so parsing a Priority field does not
// allocate.
//
// Invariants, checked by the fuzz targets: no input makes any function
// panic; an urgency reported ok is within 0..7; ParseTimeout returns a
// positive duration or an error wrapping ErrInvalidTimeout, ParseUrgency a
// value in 0..7 or an error wrapping ErrInvalidUrgency; ProxyStatus always
// yields printable ASCII that parses back as an RFC 8941 List whose details
// parameter is a String; Backpressure's time, when ok, lies in
// (now, now+maxPause], and it pauses exactly on the exhausted Signals;
// a Signal's counts are -1 or non-negative and its reset unknown or after
// now; reset durations, RFC 3339 resets and RateLimit-Policy members
// round-trip.
package headers
