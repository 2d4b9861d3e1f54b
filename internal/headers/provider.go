package headers

import (
	"net/http"
	"strings"
	"time"
)

// Provider rate-limit signals (docs/shaping.md, "Provider rate-limit
// headers"): what a response says is left of the provider's quotas, read
// by one parser per header family. Backpressure pauses a destination on
// the exhausted ones; ProviderSignals returns them all.

// Unit is what a provider's quota counts.
type Unit uint8

const (
	UnitRequests Unit = iota + 1
	UnitTokens
	// UnitOther is an IETF quota unit that is neither (content-bytes,
	// concurrent-requests, or one we do not know).
	UnitOther
)

func (u Unit) String() string {
	switch u {
	case UnitRequests:
		return "requests"
	case UnitTokens:
		return "tokens"
	case UnitOther:
		return "other"
	}
	return "unknown"
}

// Family is the header convention a Signal was read from.
type Family uint8

const (
	// FamilyXRateLimit is X-RateLimit-Limit, -Remaining, -Reset (epoch or
	// delta seconds) and -Resource: GitHub and many others.
	FamilyXRateLimit Family = iota + 1
	// FamilyOpenAI is x-ratelimit-{limit,remaining,reset}-{requests,tokens}
	// with resets as Go-like durations (OpenAI, Azure OpenAI).
	FamilyOpenAI
	// FamilyAnthropic is anthropic-ratelimit-{requests,tokens,input-tokens,
	// output-tokens}-{limit,remaining,reset} with RFC 3339 resets.
	FamilyAnthropic
	// FamilyIETF is draft-ietf-httpapi-ratelimit-headers: RateLimit (List
	// or older Dictionary form), RateLimit-Limit/-Remaining/-Reset, with
	// limits and units from RateLimit-Policy.
	FamilyIETF
)

func (f Family) String() string {
	switch f {
	case FamilyXRateLimit:
		return "x-ratelimit"
	case FamilyOpenAI:
		return "openai"
	case FamilyAnthropic:
		return "anthropic"
	case FamilyIETF:
		return "ietf"
	}
	return "unknown"
}

// Signal is one dimension of a provider's quota as a response states it.
type Signal struct {
	Family Family
	// Name tells the dimensions of one response apart: "requests",
	// "tokens", "input-tokens", "output-tokens" (OpenAI, Anthropic); the
	// policy name (IETF List form; the member key in the Dictionary form,
	// "" for its remaining/reset members and for RateLimit-Remaining);
	// X-RateLimit-Resource ("core", "search"…) or "" (X-RateLimit).
	Name string
	Unit Unit
	// Remaining and Limit are counts, -1 when unknown.
	Remaining, Limit int64
	// Reset is when Remaining goes back to Limit; zero when unknown. When
	// set it is after now: a reset that is not (in the past, "0s") means
	// the window the counts describe has ended, so neither Reset nor
	// Remaining is reported.
	Reset time.Time
}

// known reports whether s says anything.
func (s Signal) known() bool { return s.Remaining >= 0 || s.Limit >= 0 || !s.Reset.IsZero() }

// exhausted reports whether s pauses its destination: nothing left until
// a known reset.
func (s Signal) exhausted() bool { return s.Remaining == 0 && !s.Reset.IsZero() }

// ProviderSignals returns every quota dimension h states, in the order
// X-RateLimit, OpenAI, Anthropic, IETF (and within a family in header
// order), or nil. Counts are non-negative integers (digits only, or RFC
// 8941 Integers for IETF); anything else in a field, or a field that does
// not fit, is ignored as absent. now converts relative resets and drops
// past ones.
func ProviderSignals(h http.Header, now time.Time) []Signal {
	if len(h) == 0 {
		return nil
	}
	var out []Signal
	visitFamilies(h, now, false, func(s Signal) { out = append(out, s) })
	return out
}

// visitFamilies runs the parser of every family whose fields h may hold.
// pausing says that only exhausted dimensions matter (Backpressure): a
// parser may then skip one whose remaining count is not 0 unread.
func visitFamilies(h http.Header, now time.Time, pausing bool, visit func(Signal)) {
	f := familiesIn(h)
	if f&(1<<FamilyXRateLimit) != 0 {
		xRateLimitSignals(h, now, pausing, visit)
	}
	if f&(1<<FamilyOpenAI) != 0 {
		openAISignals(h, now, pausing, visit)
	}
	if f&(1<<FamilyAnthropic) != 0 {
		anthropicSignals(h, now, pausing, visit)
	}
	if f&(1<<FamilyIETF) != 0 {
		ietfSignals(h, now, pausing, visit)
	}
}

// scanFields is the most fields familiesIn looks through; past it every
// family is tried (a lookup per field name each).
const scanFields = 32

// familiesIn returns a bit (1<<Family) for each family whose fields may be
// in h: one pass over the names of a typical response is several times
// cheaper than looking up the two dozen names the parsers read (see
// BenchmarkBackpressure). Names are canonical (http.CanonicalHeaderKey),
// as the parsers expect.
func familiesIn(h http.Header) (f uint8) {
	if len(h) > scanFields {
		return 0xff
	}
	for k := range h {
		if len(k) < len("Ratelimit") {
			continue
		}
		switch k[0] {
		case 'X':
			if rest, ok := strings.CutPrefix(k, "X-Ratelimit-"); ok {
				if strings.HasSuffix(rest, "-Requests") || strings.HasSuffix(rest, "-Tokens") {
					f |= 1 << FamilyOpenAI
				} else {
					f |= 1 << FamilyXRateLimit
				}
			}
		case 'A':
			if strings.HasPrefix(k, "Anthropic-Ratelimit-") {
				f |= 1 << FamilyAnthropic
			}
		case 'R':
			if strings.HasPrefix(k, "Ratelimit") {
				f |= 1 << FamilyIETF
			}
		}
	}
	return f
}

// resolve finishes a signal: a reset that is not after now ends the
// window (see Signal.Reset).
func resolve(s Signal, resetSeen bool, now time.Time, visit func(Signal)) {
	if resetSeen && !s.Reset.After(now) {
		s.Reset, s.Remaining = time.Time{}, -1
	}
	if s.known() {
		visit(s)
	}
}

// count parses a non-negative decimal count ("0", "00", "42"), with
// optional surrounding whitespace; -1 when v is not one or does not fit
// an int64.
func count(v string) int64 {
	v = trimOWS(v)
	if v == "" {
		return -1
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isDigit(c) || n > (1<<63-1-int64(c-'0'))/10 {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// ---- X-RateLimit (GitHub and others) ----

// xRateLimitSignals reads X-RateLimit-Limit, -Remaining and -Reset: a
// Unix time in seconds, or a delay in seconds when below 10^9, fractions
// accepted (docs/shaping.md).
func xRateLimitSignals(h http.Header, now time.Time, pausing bool, visit func(Signal)) {
	rem := first(h, "X-Ratelimit-Remaining")
	if pausing && count(rem) != 0 {
		return
	}
	reset, lim := first(h, "X-Ratelimit-Reset"), first(h, "X-Ratelimit-Limit")
	if rem == "" && reset == "" && lim == "" {
		return
	}
	s := Signal{Family: FamilyXRateLimit, Name: trimOWS(first(h, "X-Ratelimit-Resource")), Unit: UnitRequests,
		Remaining: count(rem), Limit: count(lim)}
	resetSeen := false
	if d, ok := plainSeconds(reset); ok {
		resetSeen = true
		if d < epochThreshold {
			s.Reset = now.Add(d)
		} else {
			s.Reset = time.Unix(0, int64(d))
		}
	}
	resolve(s, resetSeen, now, visit)
}

// ---- OpenAI / Azure OpenAI ----

var openAIKeys = [...]struct{ name, remaining, reset, limit string }{
	{"requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests", "X-Ratelimit-Limit-Requests"},
	{"tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens", "X-Ratelimit-Limit-Tokens"},
}

// openAISignals reads x-ratelimit-{remaining,reset,limit}-{requests,tokens},
// resets as durations (ParseResetDuration).
func openAISignals(h http.Header, now time.Time, pausing bool, visit func(Signal)) {
	dimensionSignals(h, now, pausing, FamilyOpenAI, openAIKeys[:], func(v string) (time.Time, bool) {
		d, ok := ParseResetDuration(v)
		return now.Add(d), ok
	}, visit)
}

// dimensionSignals reads a family that states each dimension in its own
// remaining, reset and limit fields (keys; the first dimension counts
// requests, the others tokens), its resets parsed by parseReset.
func dimensionSignals(h http.Header, now time.Time, pausing bool, family Family, keys []struct{ name, remaining, reset, limit string },
	parseReset func(string) (time.Time, bool), visit func(Signal)) {
	for i, k := range keys {
		rem := first(h, k.remaining)
		if pausing && count(rem) != 0 {
			continue
		}
		reset, lim := first(h, k.reset), first(h, k.limit)
		if rem == "" && reset == "" && lim == "" {
			continue
		}
		s := Signal{Family: family, Name: k.name, Unit: UnitTokens, Remaining: count(rem), Limit: count(lim)}
		if i == 0 {
			s.Unit = UnitRequests
		}
		t, resetSeen := parseReset(reset)
		if resetSeen {
			s.Reset = t
		}
		resolve(s, resetSeen, now, visit)
	}
}

// ParseResetDuration parses OpenAI's reset durations: Go-like durations
// without sign or spaces ("6m0s", "1.5s", "12ms", "1h2m3.5s", "0s"), one or
// more decimal numbers each followed by a unit among h, m, s, ms, us (or
// µs) and ns, with optional whitespace around the whole. Anything else,
// and a value too large for a time.Duration, is not ok. The result is
// never negative, and Duration.String output parses back to the same
// value.
func ParseResetDuration(v string) (time.Duration, bool) {
	v = trimOWS(v)
	if !isDurationSyntax(v) {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

// ---- Anthropic ----

var anthropicKeys = [...]struct{ name, remaining, reset, limit string }{
	{"requests", "Anthropic-Ratelimit-Requests-Remaining", "Anthropic-Ratelimit-Requests-Reset", "Anthropic-Ratelimit-Requests-Limit"},
	{"tokens", "Anthropic-Ratelimit-Tokens-Remaining", "Anthropic-Ratelimit-Tokens-Reset", "Anthropic-Ratelimit-Tokens-Limit"},
	{"input-tokens", "Anthropic-Ratelimit-Input-Tokens-Remaining", "Anthropic-Ratelimit-Input-Tokens-Reset", "Anthropic-Ratelimit-Input-Tokens-Limit"},
	{"output-tokens", "Anthropic-Ratelimit-Output-Tokens-Remaining", "Anthropic-Ratelimit-Output-Tokens-Reset", "Anthropic-Ratelimit-Output-Tokens-Limit"},
}

// anthropicSignals reads anthropic-ratelimit-{requests,tokens,input-tokens,
// output-tokens}-{remaining,reset,limit}, resets as RFC 3339 times.
func anthropicSignals(h http.Header, now time.Time, pausing bool, visit func(Signal)) {
	dimensionSignals(h, now, pausing, FamilyAnthropic, anthropicKeys[:], parseRFC3339, visit)
}

// parseRFC3339 parses an RFC 3339 date-time ("2025-01-02T03:04:05Z",
// fractional seconds and numeric offsets accepted).
func parseRFC3339(v string) (time.Time, bool) {
	v = trimOWS(v)
	if v == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// ---- retry-after-ms ----

// retryAfterMs parses retry-after-ms (OpenAI, Anthropic): a non-negative
// number of milliseconds, digits with an optional fraction ("1500",
// "12.5"); sub-nanosecond digits are dropped.
func retryAfterMs(v string) (time.Duration, bool) {
	v = trimOWS(v)
	if !isDecimalNumber(v) {
		return 0, false
	}
	d, ok := parseDecimalSeconds(v) // v thousand-fold
	if !ok {
		return 0, false
	}
	return d / 1000, true
}

// retryAfterBoth combines Retry-After and retry-after-ms on a 429 or 503
// (docs/shaping.md): within a second of each other they are one delay
// stated at two precisions, and the precise retry-after-ms wins; otherwise
// each counts and the later wins.
func retryAfterBoth(h http.Header, now time.Time, consider func(time.Time)) {
	ra, raOK := retryAfter(first(h, "Retry-After"), now)
	ms, msOK := retryAfterMs(first(h, "Retry-After-Ms"))
	switch {
	case raOK && msOK:
		msAt := now.Add(ms)
		if diff := ra.Sub(msAt); diff > -time.Second && diff < time.Second {
			consider(msAt)
			return
		}
		consider(ra)
		consider(msAt)
	case raOK:
		consider(ra)
	case msOK:
		consider(now.Add(ms))
	}
}

// ---- IETF RateLimit ----

// ietfSignals reads the draft-ietf-httpapi-ratelimit-headers fields:
// RateLimit-Remaining/-Reset/-Limit (drafts up to -06, RFC 8941 Items,
// reset in delta seconds), and RateLimit, either the List of policies
// (`"default";r=0;t=30`, r remaining, t seconds to reset) or the older
// Dictionary (`limit=100, remaining=0, reset=30`, whose members may carry
// r and t parameters too). Limits and units of named policies come from
// RateLimit-Policy. An invalid field yields nothing.
func ietfSignals(h http.Header, now time.Time, pausing bool, visit func(Signal)) {
	if rem := first(h, "Ratelimit-Remaining"); !pausing || itemCount(rem) == 0 {
		if reset, lim := first(h, "Ratelimit-Reset"), first(h, "Ratelimit-Limit"); rem != "" || reset != "" || lim != "" {
			s := Signal{Family: FamilyIETF, Unit: UnitRequests, Remaining: itemCount(rem), Limit: itemCount(lim)}
			resetSeen := false
			if m, err := parseItem(reset); err == nil {
				if d, ok := itemSeconds(m.value); ok {
					s.Reset, resetSeen = now.Add(d), true
				}
			}
			resolve(s, resetSeen, now, visit)
		}
	}

	vals := h["Ratelimit"]
	if len(vals) == 0 {
		return
	}
	field := joinLines(vals)
	policies := h["Ratelimit-Policy"]
	fromParams := func(name string, m member) {
		r, hasR := m.param("r")
		t, hasT := m.param("t")
		if !hasR && !hasT {
			return
		}
		s := Signal{Family: FamilyIETF, Name: name, Unit: UnitRequests, Remaining: -1, Limit: -1}
		if hasR {
			s.Remaining = nonNegative(r)
		}
		resetSeen := false
		if hasT {
			if d, ok := itemSeconds(t); ok {
				s.Reset, resetSeen = now.Add(d), true
			}
		}
		if name != "" && len(policies) > 0 {
			if p, ok := findPolicy(policies, name); ok {
				s.Limit, s.Unit = p.Quota, p.Unit
			}
		}
		resolve(s, resetSeen, now, visit)
	}
	nop := func(member) {}
	if parseList(field, nop) == nil {
		_ = parseList(field, func(m member) { fromParams(itemName(m.value), m) })
		return
	}
	// The older Dictionary: validated whole first (parseDictionary may
	// visit members before a later error), duplicates resolved last-wins.
	var remaining, resetItem, limit bareItem
	var hasRem, hasReset, hasLimit bool
	err := parseDictionary(field, func(key string, m member) {
		switch key {
		case "remaining":
			remaining, hasRem = m.value, true
		case "reset":
			resetItem, hasReset = m.value, true
		case "limit":
			limit, hasLimit = m.value, true
		}
	})
	if err != nil {
		return
	}
	if hasRem || hasReset || hasLimit {
		s := Signal{Family: FamilyIETF, Unit: UnitRequests, Remaining: -1, Limit: -1}
		if hasRem {
			s.Remaining = nonNegative(remaining)
		}
		if hasLimit {
			s.Limit = nonNegative(limit)
		}
		resetSeen := false
		if hasReset {
			if d, ok := itemSeconds(resetItem); ok {
				s.Reset, resetSeen = now.Add(d), true
			}
		}
		resolve(s, resetSeen, now, visit)
	}
	_ = parseDictionary(field, func(key string, m member) { fromParams(key, m) })
}

// itemCount parses an RFC 8941 Item that is a non-negative Integer
// (parameters ignored); -1 otherwise.
func itemCount(v string) int64 {
	if v == "" {
		return -1
	}
	m, err := parseItem(v)
	if err != nil {
		return -1
	}
	return nonNegative(m.value)
}

// nonNegative returns b when it is a non-negative Integer, else -1.
func nonNegative(b bareItem) int64 {
	if n, ok := b.integer(); ok && n >= 0 {
		return n
	}
	return -1
}

// itemName is the name of a policy: a String or a Token; "" otherwise.
func itemName(b bareItem) string {
	if b.kind == kindString || b.kind == kindToken {
		return b.str
	}
	return ""
}

// RateLimitPolicy is one quota policy of a RateLimit-Policy field
// (draft-ietf-httpapi-ratelimit-headers).
type RateLimitPolicy struct {
	// Name is the policy's name (a String, or a Token), which RateLimit
	// members refer to; "" in the older unnamed form (`100;w=60`).
	Name string
	// Quota is q: how many units the window allows (never negative).
	Quota int64
	// Unit is qu: requests when absent or "requests", tokens for
	// "tokens", other units (content-bytes, concurrent-requests) UnitOther.
	Unit Unit
	// Window is w, in seconds; 0 when absent.
	Window time.Duration
}

// RateLimitPolicies parses the RateLimit-Policy field (lines combined with
// ", "): a List whose members are either named policies with parameters
// q (Integer quota, required), qu (String unit) and w (window in seconds),
// `"default";q=100;w=60`, or, in the drafts up to -06, an Integer quota
// with a w parameter, `100;w=60`. A member without a valid quota is
// skipped; an invalid field yields nil. A policy alone never pauses
// anything: it says how large a quota is, not what is left of it.
func RateLimitPolicies(h http.Header) []RateLimitPolicy {
	vals := h["Ratelimit-Policy"]
	if len(vals) == 0 {
		return nil
	}
	field := joinLines(vals)
	if parseList(field, func(member) {}) != nil {
		return nil
	}
	var out []RateLimitPolicy
	_ = parseList(field, func(m member) {
		if p, ok := policyOf(m); ok {
			out = append(out, p)
		}
	})
	return out
}

// policyOf reads one RateLimit-Policy member.
func policyOf(m member) (RateLimitPolicy, bool) {
	p := RateLimitPolicy{Unit: UnitRequests, Quota: -1}
	switch m.value.kind {
	case kindString, kindToken:
		p.Name = m.value.str
		if q, ok := m.param("q"); ok {
			p.Quota = nonNegative(q)
		}
	case kindInteger:
		p.Quota = nonNegative(m.value)
	}
	if p.Quota < 0 {
		return RateLimitPolicy{}, false
	}
	if qu, ok := m.param("qu"); ok {
		switch {
		case qu.kind != kindString && qu.kind != kindToken:
			p.Unit = UnitOther
		case qu.str == "requests":
		case qu.str == "tokens":
			p.Unit = UnitTokens
		default:
			p.Unit = UnitOther
		}
	}
	if w, ok := m.param("w"); ok {
		if d, ok := itemSeconds(w); ok {
			p.Window = d
		}
	}
	return p, true
}

// findPolicy returns the named policy of the RateLimit-Policy lines; the
// last of several with that name wins.
func findPolicy(vals []string, name string) (RateLimitPolicy, bool) {
	field := joinLines(vals)
	if parseList(field, func(member) {}) != nil {
		return RateLimitPolicy{}, false
	}
	var found RateLimitPolicy
	ok := false
	_ = parseList(field, func(m member) {
		if itemName(m.value) != name {
			return
		}
		if p, valid := policyOf(m); valid {
			found, ok = p, true
		}
	})
	return found, ok
}
