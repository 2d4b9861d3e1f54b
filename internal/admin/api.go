package admin

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// Backend is what the admin API reads and tunes: the running proxy.
type Backend interface {
	// Limits returns the live limits and host rules.
	Limits() (config.Limits, []config.HostRule)
	// UpdateLimits calls change with copies of the live limits and host
	// rules and, when change returns nil, applies the changed copies
	// whole, at once, to requests already waiting — all under the
	// backend's own lock, so that no other change (a reload) lands in
	// between. change validates what it asks for (the admin API owns that
	// validation; the backend does not repeat it). When change returns an
	// error, nothing changes and UpdateLimits returns that error.
	UpdateLimits(change func(l *config.Limits, hosts *[]config.HostRule) error) error
	// Stats returns a snapshot of the queue.
	Stats() dispatch.Stats
}

// maxBody bounds an API request body.
const maxBody = 64 << 10

// limitsDoc is the JSON form of the live limits (docs/admin-api.md, "The Limits object"): the config's
// names.
type limitsDoc struct {
	Rate        float64           `json:"rate"`
	Burst       int               `json:"burst"`
	Concurrency int               `json:"concurrency"`
	QueueSize   int               `json:"queue_size"`
	MaxWait     string            `json:"max_wait"`
	Quotas      []config.Quota    `json:"quotas"`
	Hosts       []config.HostRule `json:"hosts"`
}

func docOf(l config.Limits, hosts []config.HostRule) limitsDoc {
	if hosts == nil {
		hosts = []config.HostRule{}
	}
	quotas := l.Quotas
	if quotas == nil {
		quotas = []config.Quota{}
	}
	return limitsDoc{
		Quotas:      quotas,
		Rate:        l.Rate,
		Burst:       l.Burst,
		Concurrency: l.Concurrency,
		QueueSize:   l.QueueSize,
		MaxWait:     l.MaxWait.String(),
		Hosts:       hosts,
	}
}

// queueDoc is GET /api/v1/queue.
type queueDoc struct {
	Depth             int            `json:"depth"`
	InFlight          int            `json:"in_flight"`
	ByPriority        map[string]int `json:"by_priority"`
	OldestWaitSeconds float64        `json:"oldest_wait_seconds"`
	TunnelsOpen       int            `json:"tunnels_open"`
	WaitingTunnels    int            `json:"waiting_tunnels"`
	Draining          bool           `json:"draining"`
	Paused            []pausedDoc    `json:"paused"`
	Hosts             []hostDoc      `json:"hosts"`
}

// pausedDoc is a destination held back by upstream back-pressure.
type pausedDoc struct {
	Destination      string  `json:"destination"`
	Until            string  `json:"until"`
	RemainingSeconds float64 `json:"remaining_seconds"`
}

// hostDoc is a hosts rule's live state.
type hostDoc struct {
	Match    string `json:"match"`
	InFlight int    `json:"in_flight"`
	Waiting  int    `json:"waiting"`
}

func (s *Server) getLimits(w http.ResponseWriter, _ *http.Request) {
	l, hosts := s.backend.Limits()
	writeJSON(w, http.StatusOK, docOf(l, hosts))
}

func (s *Server) getQueue(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, queueDocOf(s.backend.Stats(), s.clock.Now()))
}

// queueDocOf is the JSON form of the queue's state at now.
func queueDocOf(st dispatch.Stats, now time.Time) queueDoc {
	doc := queueDoc{
		Depth:             st.Depth,
		InFlight:          st.InFlight,
		ByPriority:        make(map[string]int, len(st.ByPriority)),
		OldestWaitSeconds: st.OldestWait.Seconds(),
		TunnelsOpen:       st.Tunnels,
		WaitingTunnels:    st.Waiting[dispatch.Tunnel],
		Draining:          st.Draining,
	}
	for u, n := range st.ByPriority {
		doc.ByPriority[strconv.Itoa(u)] = n
	}
	doc.Paused = make([]pausedDoc, 0, len(st.Paused))
	for _, p := range st.Paused {
		doc.Paused = append(doc.Paused, pausedDoc{
			Destination:      p.Dest,
			Until:            p.Until.UTC().Format(time.RFC3339Nano),
			RemainingSeconds: max(0, p.Until.Sub(now).Seconds()),
		})
	}
	doc.Hosts = make([]hostDoc, 0, len(st.Hosts))
	for _, h := range st.Hosts {
		doc.Hosts = append(doc.Hosts, hostDoc{Match: h.Match, InFlight: h.InFlight, Waiting: h.Waiting})
	}
	return doc
}

// updateLimits serves PATCH (partial) and PUT (whole). The body is read
// and decoded first; the merge with the live limits, its validation and
// the swap then happen in one backend.UpdateLimits call, under the
// backend's lock, so concurrent PATCHes (and reloads) each apply to the
// result of the one before. Every problem found — fields that cannot be
// read, fields PUT lacks, invalid values — is reported in one 400.
func (s *Server) updateLimits(whole bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, status, err := readPatch(w, r)
		if err != nil {
			writeError(w, status, err.Error())
			return
		}
		var oldL, l config.Limits
		var oldHosts, hosts []config.HostRule
		store := s.storeKind()
		err = s.backend.UpdateLimits(func(cur *config.Limits, curHosts *[]config.HostRule) error {
			oldL, oldHosts = *cur, slices.Clone(*curHosts)
			l, hosts = p.apply(*cur, *curHosts)
			problems := slices.Clone(p.problems)
			if whole {
				problems = append(problems, p.missing()...)
			}
			problems = append(problems, split(l.Validate())...)
			problems = append(problems, p.hostProblems(config.ValidateHosts(hosts))...)
			problems = append(problems, p.hostProblems(config.CheckSharedConcurrency(store, l, hosts))...)
			for i := len(p.problems); i < len(problems); i++ {
				problems[i] = errors.New(clipQuoted(problems[i].Error()))
			}
			if len(problems) > 0 {
				return errors.New(joinProblems(problems))
			}
			*cur, *curHosts = l, hosts
			return nil
		})
		if err != nil {
			writeError(w, http.StatusBadRequest, clip(oneLine(err), maxProblems*maxProblemLen))
			return
		}
		s.log.Info("limits changed through the admin API",
			zap.String("method", r.Method),
			zap.Any("old", docOf(oldL, oldHosts)),
			zap.Any("new", docOf(l, hosts)))
		writeJSON(w, http.StatusOK, docOf(l, hosts))
	}
}

// Bounds on what a 400 answer echoes, so that a 60 KB field does not come
// back as a 60 KB error.
const (
	maxQuote      = 200 // bytes of one user-supplied string quoted in a problem
	maxProblemLen = 600 // bytes of one problem, whatever it quotes
	maxProblems   = 10  // problems listed; the rest are only counted
)

// The field names, exactly as docs/admin-api.md ("The Limits object") and the configuration file spell
// them. encoding/json would match them case-insensitively.
var (
	limitsFields = []string{"rate", "burst", "concurrency", "queue_size", "max_wait", "quotas", "hosts"}
	hostFields   = []string{"match", "rate", "burst", "concurrency", "quotas", "cost", "shared_concurrency"}
)

// limitsPatch is a decoded PATCH or PUT body: nil fields are absent (or
// null).
type limitsPatch struct {
	rate                          *float64
	burst, concurrency, queueSize *int
	maxWait                       *time.Duration
	quotas                        *[]config.Quota
	hosts                         *[]config.HostRule
	// sent holds every field given with a value other than null, readable
	// or not: PUT needs them all.
	sent map[string]bool
	// notObject holds the indexes of hosts entries that are not JSON
	// objects: they are reported as such and not validated as rules.
	notObject map[int]bool
	// problems are the fields that could not be read, in body order.
	problems []error
}

// readPatch reads and decodes the request body. A body that is too large
// (413), empty, not JSON, more than one JSON value or not a JSON object
// (400) is answered at once: nothing more can be said about it. A field
// that cannot be read is a problem in p.problems, to be reported together
// with the validation's.
func readPatch(w http.ResponseWriter, r *http.Request) (p *limitsPatch, status int, err error) {
	tooLarge := func(err error) (*limitsPatch, int, error) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body: larger than %d bytes: %w", maxBody, err)
	}
	bad := func(err error) (*limitsPatch, int, error) { return nil, http.StatusBadRequest, err }
	// A declared length over the limit is refused before reading a byte.
	// Connection: close keeps net/http from reading (to discard) the body
	// before it sends the answer.
	if r.ContentLength > maxBody {
		w.Header().Set("Connection", "close")
		return tooLarge(&http.MaxBytesError{Limit: maxBody})
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(err)
		}
		return bad(fmt.Errorf("body: %v", err))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return bad(errors.New("body: empty; want a JSON object"))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return bad(jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return bad(fmt.Errorf("body: invalid JSON at byte %d: %v", se.Offset, se))
		}
		return bad(errors.New("body: more than one JSON value"))
	}
	// null is not "no change": the body is a JSON object (docs/admin-api.md, "PATCH /api/v1/limits").
	if k := jsonKind(obj); k != "object" {
		return bad(fmt.Errorf("body: wrong type: got JSON %s, want a JSON object", k))
	}
	ms, err := members(obj)
	if err != nil {
		return bad(jsonError(err))
	}
	p = &limitsPatch{sent: make(map[string]bool), notObject: make(map[int]bool)}
	eachKnown("", ms, limitsFields, &p.problems, func(m member) {
		if jsonKind(m.value) == "null" {
			return // absent
		}
		p.sent[m.name] = true
		if err := p.set(m.name, m.value); err != nil {
			p.problems = append(p.problems, err)
		}
	})
	return p, 0, nil
}

// set reads one top-level field.
func (p *limitsPatch) set(name string, v json.RawMessage) error {
	switch name {
	case "rate":
		return readFloat(name, v, &p.rate)
	case "burst":
		return readInt(name, v, &p.burst)
	case "concurrency":
		return readInt(name, v, &p.concurrency)
	case "queue_size":
		return readInt(name, v, &p.queueSize)
	case "max_wait":
		var s *string
		if err := readString(name, v, &s); err != nil {
			return err
		}
		d, err := time.ParseDuration(*s)
		if err != nil {
			return fmt.Errorf("max_wait: not a duration: %s (want e.g. \"30s\")", quote(*s))
		}
		p.maxWait = &d
	case "quotas":
		qs := p.readQuotas(name, v)
		p.quotas = &qs
	case "hosts":
		if k := jsonKind(v); k != "array" {
			return wrongType(name, v, "an array")
		}
		hosts, err := p.readHosts(v)
		if err != nil {
			return err
		}
		p.hosts = &hosts
	}
	return nil
}

// readHosts reads the hosts array (v is one), one entry at a time, so
// that problems carry the index: "hosts[1].rate: wrong type: …",
// "hosts[0].rps: unknown field". An entry that is not an object keeps its
// place as an empty rule, so that the indexes of the validation's problems
// stay right.
func (p *limitsPatch) readHosts(v json.RawMessage) ([]config.HostRule, error) {
	var entries []json.RawMessage
	if err := json.Unmarshal(v, &entries); err != nil {
		return nil, jsonError(err)
	}
	hosts := make([]config.HostRule, len(entries))
	for i, e := range entries {
		key := fmt.Sprintf("hosts[%d]", i)
		if jsonKind(e) != "object" {
			p.notObject[i] = true
			p.problems = append(p.problems, wrongType(key, e, "an object"))
			continue
		}
		ms, err := members(e)
		if err != nil {
			return nil, jsonError(err)
		}
		h := &hosts[i]
		eachKnown(key+".", ms, hostFields, &p.problems, func(m member) {
			var err error
			name := key + "." + m.name
			switch m.name {
			case "match":
				var s *string
				if err = readString(name, m.value, &s); err == nil && s != nil {
					h.Match = *s
				}
			case "rate":
				err = readFloat(name, m.value, &h.Rate)
			case "burst":
				err = readInt(name, m.value, &h.Burst)
			case "concurrency":
				err = readInt(name, m.value, &h.Concurrency)
			case "quotas":
				h.Quotas = p.readQuotas(name, m.value)
			case "cost":
				h.Cost = p.readCost(name, m.value)
			case "shared_concurrency":
				err = readBool(name, m.value, &h.SharedConcurrency)
			}
			if err != nil {
				p.problems = append(p.problems, err)
			}
		})
	}
	return hosts, nil
}

// apply merges the fields read into l and hosts.
func (p *limitsPatch) apply(l config.Limits, hosts []config.HostRule) (config.Limits, []config.HostRule) {
	if p.rate != nil {
		l.Rate = *p.rate
	}
	if p.burst != nil {
		l.Burst = *p.burst
	}
	if p.concurrency != nil {
		l.Concurrency = *p.concurrency
	}
	if p.queueSize != nil {
		l.QueueSize = *p.queueSize
	}
	if p.maxWait != nil {
		l.MaxWait = *p.maxWait
	}
	if p.quotas != nil {
		l.Quotas = *p.quotas
	}
	if p.hosts != nil {
		hosts = *p.hosts
	}
	return l, hosts
}

// missing reports every field a PUT needs and did not get (absent or
// null).
func (p *limitsPatch) missing() []error {
	var errs []error
	for _, f := range limitsFields {
		if !p.sent[f] {
			errs = append(errs, fmt.Errorf("%s: required by PUT (use PATCH to change some fields)", f))
		}
	}
	return errs
}

// hostProblems returns the problems of config.ValidateHosts (err),
// leaving out those of entries already reported as not objects.
func (p *limitsPatch) hostProblems(err error) []error {
	var out []error
	for _, e := range split(err) {
		var fe *config.FieldError
		i := -1
		if errors.As(e, &fe) {
			_, _ = fmt.Sscanf(fe.Key, "hosts[%d]", &i)
		}
		if !p.notObject[i] {
			out = append(out, e)
		}
	}
	return out
}

// quoted is a Go-quoted string, as config's messages quote values (%q).
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// clipQuoted shortens every quoted value in a validation message to
// maxQuote bytes: config quotes what it was given, however long.
func clipQuoted(msg string) string {
	return quoted.ReplaceAllStringFunc(msg, func(q string) string {
		if len(q) <= maxQuote+2 {
			return q
		}
		s, err := strconv.Unquote(q)
		if err != nil {
			return clip(q, maxQuote)
		}
		return quote(s)
	})
}

// member is one "name": value of a JSON object.
type member struct {
	name  string
	value json.RawMessage
}

// members returns the members of a JSON object (obj is one), in order,
// duplicates included.
func members(obj json.RawMessage) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	var ms []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		ms = append(ms, member{name: name, value: v})
	}
	return ms, nil
}

// eachKnown calls read, in order, for the members whose name is exactly
// one of known, the first of each name only. It adds a problem, in the same
// order, for any other name (noting when only its case differs:
// encoding/json would have taken it) and for a name given twice
// (encoding/json would have kept the last).
func eachKnown(prefix string, ms []member, known []string, problems *[]error, read func(member)) {
	seen := make(map[string]int, len(ms))
	for _, m := range ms {
		seen[m.name]++
		switch {
		case !slices.Contains(known, m.name):
			if seen[m.name] > 1 {
				continue
			}
			why := "unknown field"
			if slices.ContainsFunc(known, func(k string) bool { return strings.EqualFold(k, m.name) }) {
				why = "unknown field (names are case-sensitive)"
			}
			*problems = append(*problems, fmt.Errorf("%s%s: %s", prefix, clip(m.name, maxQuote), why))
		case seen[m.name] == 2:
			*problems = append(*problems, fmt.Errorf("%s%s: given twice", prefix, m.name))
		case seen[m.name] == 1:
			read(m)
		}
	}
}

// jsonKind names the JSON type of a well-formed value.
func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func wrongType(key string, v json.RawMessage, want string) error {
	got := jsonKind(v)
	if got == "number" {
		got += " " + clip(string(v), maxQuote)
	}
	return fmt.Errorf("%s: wrong type: got JSON %s, want %s", key, got, want)
}

// readFloat reads a number into *dst; null leaves *dst nil.
func readFloat(key string, v json.RawMessage, dst **float64) error {
	switch jsonKind(v) {
	case "null":
		return nil
	case "number":
	default:
		return wrongType(key, v, "a number")
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil { // ErrRange: JSON has no bounds, float64 has
		return fmt.Errorf("%s: out of range: got JSON number %s, want a finite 64-bit float", key, clip(string(v), maxQuote))
	}
	*dst = &f
	return nil
}

// readInt reads an integer (no fraction, no exponent, as encoding/json)
// into *dst; null leaves *dst nil.
func readInt(key string, v json.RawMessage, dst **int) error {
	switch jsonKind(v) {
	case "null":
		return nil
	case "number":
	default:
		return wrongType(key, v, "an integer")
	}
	if bytes.ContainsAny(v, ".eE") {
		return wrongType(key, v, "an integer")
	}
	n, err := strconv.ParseInt(string(v), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("%s: out of range: got JSON number %s, want a %d-bit integer", key, clip(string(v), maxQuote), strconv.IntSize)
	}
	i := int(n)
	*dst = &i
	return nil
}

// readString reads a string into *dst; null leaves *dst nil.
func readString(key string, v json.RawMessage, dst **string) error {
	switch jsonKind(v) {
	case "null":
		return nil
	case "string":
	default:
		return wrongType(key, v, "a string")
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return fmt.Errorf("%s: %v", key, jsonError(err))
	}
	*dst = &s
	return nil
}

// jsonError rewrites encoding/json's syntax errors as "body: <why>".
func jsonError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("body: invalid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("body: truncated JSON")
	}
	return fmt.Errorf("body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// clip returns s cut to at most n bytes at a rune boundary, marked with
// "…" and the full length when cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:i], len(s))
}

// quote is strconv.Quote of at most maxQuote bytes of s; the mark of a cut
// is outside the quotes.
func quote(s string) string {
	if len(s) <= maxQuote {
		return strconv.Quote(s)
	}
	i := maxQuote
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:i]), len(s))
}

// split returns the errors joined in err (errors.Join), or err alone.
func split(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// joinProblems lists problems on one line, joined by "; ": at most
// maxProblems of them, each at most maxProblemLen bytes.
func joinProblems(problems []error) string {
	var b strings.Builder
	for i, p := range problems {
		if i == maxProblems {
			fmt.Fprintf(&b, "; and %d more problems", len(problems)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(clip(oneLine(p), maxProblemLen))
	}
	return b.String()
}

// oneLine joins a multi-line error.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// requireToken guards /api/ with a bearer token when one is set. The
// scheme is case-insensitive (RFC 9110 §11.1); the token comparison takes
// constant time.
func (s *Server) requireToken(next http.Handler) http.Handler {
	if s.token == "" {
		return next
	}
	want := []byte(s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		ok := strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(tok), want) == 1
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="proxyd"`)
			writeError(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		next.ServeHTTP(w, r)
	})
}
