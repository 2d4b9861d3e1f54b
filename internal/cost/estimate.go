package cost

import (
	"errors"
	"fmt"
	"strconv"
)

// Slots of the estimate's fields, in the order they are preferred.
const (
	slotMaxTokens           = iota // OpenAI (legacy), Anthropic
	slotMaxCompletionTokens        // OpenAI chat completions
	slotMaxOutputTokens            // OpenAI responses
	slotGeminiMaxOutput            // Gemini generationConfig.maxOutputTokens
)

var estimateTrie = func() *trie {
	t := newTrie()
	t.add([]string{"max_tokens"}, slotMaxTokens)
	t.add([]string{"max_completion_tokens"}, slotMaxCompletionTokens)
	t.add([]string{"max_output_tokens"}, slotMaxOutputTokens)
	t.add([]string{"generationConfig", "maxOutputTokens"}, slotGeminiMaxOutput)
	return t
}()

// Estimate prices a request body before it is sent, the way the providers
// estimate it themselves (docs/shaping.md, "LLM APIs: pricing requests"):
// len(body)/4 for the prompt plus the most the answer may use, the first
// present of the top-level max_tokens, max_completion_tokens and
// max_output_tokens, else Gemini's generationConfig.maxOutputTokens, else
// 0. ok is false when body is not exactly one JSON value (RFC 8259; what
// encoding/json's Valid accepts): the caller then uses cost.default.
//
// It scans the body once without decoding it (no maps, no strings
// built), so it does not allocate; it is safe for concurrent use.
func Estimate(body []byte) (n int64, ok bool) {
	var s scanner
	s.init(estimateTrie, false, false)
	s.write(body)
	if !s.finish() {
		return 0, false
	}
	n = int64(len(body) / 4)
	for slot := range slotGeminiMaxOutput + 1 {
		if s.cur.set&(1<<slot) != 0 {
			// Each is at most 2^53, len(body)/4 far less: no overflow.
			return n + s.cur.n[slot], true
		}
	}
	return n, true
}

// ErrInvalidCost is wrapped by ParseHeader's errors.
var ErrInvalidCost = errors.New("invalid cost")

// MaxCost is the largest cost ParseHeader accepts: 2^53, far above any
// quota (docs/configuration.md, "Quotas": a limit is at most 10^9), so a
// larger value can only be a mistake.
const MaxCost = 1 << 53

// ParseHeader reads the caller's estimate of a request's cost in tokens
// (hosts[].cost.header, X-Proxy-Cost): a positive decimal integer, digits
// only, at most MaxCost. The error wraps ErrInvalidCost and says why, in
// words fit for a 400's Proxy-Status details.
func ParseHeader(v string) (int64, error) {
	if v == "" {
		return 0, fmt.Errorf("%w: empty; want a positive integer of tokens", ErrInvalidCost)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %s is not a positive integer of tokens (digits only)", ErrInvalidCost, quoteClip(v))
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil || n > MaxCost:
		return 0, fmt.Errorf("%w: %s is too large (at most %d)", ErrInvalidCost, quoteClip(v), int64(MaxCost))
	case n == 0:
		return 0, fmt.Errorf("%w: 0; want a positive integer of tokens", ErrInvalidCost)
	}
	return n, nil
}

// quoteClip quotes at most 32 bytes of v, so an error never echoes a long
// header.
func quoteClip(v string) string {
	if len(v) <= 32 {
		return strconv.Quote(v)
	}
	return strconv.Quote(v[:32]) + "…"
}
