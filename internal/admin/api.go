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
			problems = append(problems, p.unreported(l.Validate())...)
			problems = append(problems, p.unreported(config.ValidateHosts(hosts))...)
			problems = append(problems, p.unreported(config.CheckSharedConcurrency(store, l, hosts))...)
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
	maxQuote      = config.MaxQuote // bytes of one user-supplied string quoted in a problem
	maxProblemLen = 600             // bytes of one problem, whatever it quotes
	maxProblems   = 10              // problems listed; the rest are only counted
)

// limitsFields are the Limits object's fields (docs/admin-api.md, "The
// Limits object"), in the order PUT reports the missing ones.
var limitsFields = []string{"rate", "burst", "concurrency", "queue_size", "max_wait", "quotas", "hosts"}

// limitsBody is a PATCH or PUT body, decoded by config.Decode: the fields
// exactly as the configuration file spells them (config.Quota and
// config.HostRule name those of quotas and hosts). A nil field was absent,
// null or could not be read.
type limitsBody struct {
	Rate        *float64           `mapstructure:"rate"`
	Burst       *int               `mapstructure:"burst"`
	Concurrency *int               `mapstructure:"concurrency"`
	QueueSize   *int               `mapstructure:"queue_size"`
	MaxWait     *time.Duration     `mapstructure:"max_wait"`
	Quotas      *[]config.Quota    `mapstructure:"quotas"`
	Hosts       *[]config.HostRule `mapstructure:"hosts"`
}

// limitsPatch is a decoded PATCH or PUT body.
type limitsPatch struct {
	limitsBody
	// problems are the decoder's, in body order: fields that could not
	// be read, unknown, or given twice.
	problems []error
	// unread are the keys of the values that could not be read ("rate",
	// "hosts[0]", "quotas[1].per"): each is reported once, as such, and
	// not again by the validation of what it left in place.
	unread []string
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
	v, err := config.ParseJSON(obj)
	if err != nil {
		return bad(jsonError(err))
	}
	p = &limitsPatch{}
	p.problems = config.Decode(config.JSON, "", v, &p.limitsBody)
	for _, e := range p.problems {
		var de *config.DecodeError
		if errors.As(e, &de) && de.Unread {
			p.unread = append(p.unread, de.Key)
		}
	}
	return p, 0, nil
}

// apply merges the fields read into l and hosts.
func (p *limitsPatch) apply(l config.Limits, hosts []config.HostRule) (config.Limits, []config.HostRule) {
	if p.Rate != nil {
		l.Rate = *p.Rate
	}
	if p.Burst != nil {
		l.Burst = *p.Burst
	}
	if p.Concurrency != nil {
		l.Concurrency = *p.Concurrency
	}
	if p.QueueSize != nil {
		l.QueueSize = *p.QueueSize
	}
	if p.MaxWait != nil {
		l.MaxWait = *p.MaxWait
	}
	if p.Quotas != nil {
		l.Quotas = *p.Quotas
	}
	if p.Hosts != nil {
		hosts = *p.Hosts
	}
	return l, hosts
}

// missing reports every field a PUT needs and did not get (absent or
// null; a field given but unreadable is reported as such already).
func (p *limitsPatch) missing() []error {
	given := map[string]bool{
		"rate": p.Rate != nil, "burst": p.Burst != nil, "concurrency": p.Concurrency != nil, "queue_size": p.QueueSize != nil,
		"max_wait": p.MaxWait != nil, "quotas": p.Quotas != nil, "hosts": p.Hosts != nil,
	}
	var errs []error
	for _, f := range limitsFields {
		if !given[f] && !p.isUnread(f) {
			errs = append(errs, fmt.Errorf("%s: required by PUT (use PATCH to change some fields)", f))
		}
	}
	return errs
}

// unreported returns the problems of a validation (err), leaving out
// those of values that could not be read: a hosts entry that is not an
// object is not also "hosts[0].match: must not be empty".
func (p *limitsPatch) unreported(err error) []error {
	var out []error
	for _, e := range split(err) {
		var fe *config.FieldError
		if !errors.As(e, &fe) || !p.isUnread(fe.Key) {
			out = append(out, e)
		}
	}
	return out
}

// isUnread reports whether key is, or is inside, a value that could not
// be read.
func (p *limitsPatch) isUnread(key string) bool {
	for _, u := range p.unread {
		if key == u || strings.HasPrefix(key, u+".") || strings.HasPrefix(key, u+"[") {
			return true
		}
	}
	return false
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

// clip and quote hold user-supplied text in a message to a bound (the
// configuration's decoder does the same for its problems).
func clip(s string, n int) string { return config.Clip(s, n) }
func quote(s string) string       { return config.Quote(s) }

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
