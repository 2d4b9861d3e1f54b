package admin

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	// rules, then validates the result and applies it whole, at once, to
	// requests already waiting — all under the backend's own lock, so that
	// no other change (a reload) lands in between. On any error nothing
	// changes.
	UpdateLimits(change func(l *config.Limits, hosts *[]config.HostRule) error) error
	// Stats returns a snapshot of the queue.
	Stats() dispatch.Stats
}

// maxBody bounds an API request body.
const maxBody = 64 << 10

// limitsDoc is the JSON form of the live limits (SPEC §6): the config's
// names.
type limitsDoc struct {
	Rate        float64           `json:"rate"`
	Burst       int               `json:"burst"`
	Concurrency int               `json:"concurrency"`
	QueueSize   int               `json:"queue_size"`
	MaxWait     string            `json:"max_wait"`
	Hosts       []config.HostRule `json:"hosts"`
}

func docOf(l config.Limits, hosts []config.HostRule) limitsDoc {
	if hosts == nil {
		hosts = []config.HostRule{}
	}
	return limitsDoc{
		Rate:        l.Rate,
		Burst:       l.Burst,
		Concurrency: l.Concurrency,
		QueueSize:   l.QueueSize,
		MaxWait:     l.MaxWait.String(),
		Hosts:       hosts,
	}
}

// limitsPatch is a PATCH or PUT body: nil fields are absent.
type limitsPatch struct {
	Rate        *float64           `json:"rate"`
	Burst       *int               `json:"burst"`
	Concurrency *int               `json:"concurrency"`
	QueueSize   *int               `json:"queue_size"`
	MaxWait     *string            `json:"max_wait"`
	Hosts       *[]json.RawMessage `json:"hosts"` // decoded one by one, so errors carry the index
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
	st := s.backend.Stats()
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
	now := time.Now()
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
	writeJSON(w, http.StatusOK, doc)
}

// updateLimits serves PATCH (partial) and PUT (whole). The backend applies
// each update under its lock, so concurrent PATCHes (and reloads) each
// apply to the result of the one before.
func (s *Server) updateLimits(whole bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var p limitsPatch
		if err := decodeStrict(w, r, &p); err != nil {
			status := http.StatusBadRequest
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				status = http.StatusRequestEntityTooLarge
			}
			writeError(w, status, err.Error())
			return
		}
		if whole {
			if missing := p.missing(); missing != "" {
				writeError(w, http.StatusBadRequest, missing+": required by PUT (use PATCH to change some fields)")
				return
			}
		}
		var oldL, l config.Limits
		var oldHosts, hosts []config.HostRule
		err := s.backend.UpdateLimits(func(cur *config.Limits, curHosts *[]config.HostRule) error {
			oldL, oldHosts = *cur, append([]config.HostRule(nil), *curHosts...)
			var err error
			l, hosts, err = p.apply(*cur, *curHosts)
			if err == nil {
				err = l.Validate()
			}
			if err == nil {
				err = config.ValidateHosts(hosts)
			}
			*cur, *curHosts = l, hosts
			return err
		})
		if err != nil {
			writeError(w, http.StatusBadRequest, oneLine(err))
			return
		}
		s.log.Info("limits changed through the admin API",
			zap.String("method", r.Method),
			zap.Any("old", docOf(oldL, oldHosts)),
			zap.Any("new", docOf(l, hosts)))
		writeJSON(w, http.StatusOK, docOf(l, hosts))
	}
}

func (p *limitsPatch) missing() string {
	switch {
	case p.Rate == nil:
		return "rate"
	case p.Burst == nil:
		return "burst"
	case p.Concurrency == nil:
		return "concurrency"
	case p.QueueSize == nil:
		return "queue_size"
	case p.MaxWait == nil:
		return "max_wait"
	case p.Hosts == nil:
		return "hosts"
	}
	return ""
}

func (p *limitsPatch) apply(l config.Limits, hosts []config.HostRule) (config.Limits, []config.HostRule, error) {
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
		d, err := time.ParseDuration(*p.MaxWait)
		if err != nil {
			return l, hosts, fmt.Errorf("max_wait: not a duration: %q (want e.g. \"30s\")", *p.MaxWait)
		}
		l.MaxWait = d
	}
	if p.Hosts != nil {
		var err error
		if hosts, err = decodeHosts(*p.Hosts); err != nil {
			return l, hosts, err
		}
	}
	return l, hosts, nil
}

// decodeHosts decodes host rules strictly, naming the entry in errors:
// "hosts[1].rate: wrong type: …", "hosts[0].rps: unknown field".
func decodeHosts(raw []json.RawMessage) ([]config.HostRule, error) {
	hosts := make([]config.HostRule, 0, len(raw))
	for i, r := range raw {
		var h config.HostRule
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			key := fmt.Sprintf("hosts[%d]", i)
			msg := jsonError(err).Error()
			if rest, ok := strings.CutPrefix(msg, "body: "); ok {
				return nil, fmt.Errorf("%s: %s", key, rest)
			}
			return nil, fmt.Errorf("%s.%s", key, msg)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// decodeStrict decodes one JSON object: no unknown fields, no trailing
// data, at most maxBody bytes. Its errors name the field.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body: larger than %d bytes: %w", maxBody, err)
		}
		return fmt.Errorf("body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("body: empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errors.New("body: more than one JSON value")
	}
	return nil
}

// jsonError rewrites encoding/json's errors as "<field>: <why>".
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return fmt.Errorf("%s: wrong type: got JSON %s, want %s", field, te.Value, jsonKind(te.Type.Kind().String()))
	case errors.As(err, &se):
		return fmt.Errorf("body: invalid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("body: truncated JSON")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("%s: unknown field", strings.Trim(f, `"`))
	}
	return fmt.Errorf("body: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonKind(k string) string {
	switch k {
	case "float64":
		return "a number"
	case "int", "int64":
		return "an integer"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "ptr":
		return "an object"
	}
	return k
}

// oneLine joins a multi-line validation error.
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
