package admin

import (
	"net/http"
	"strconv"
	"time"

	"github.com/proxyd/proxyd/internal/metrics"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/queue"
)

// StoreStatus is the shared limiter store's state (docs/shared-quota.md), as
// /api/v1/stats reports it. Zero value: not meaningful; a process without a
// shared store reports none (Deps.Store nil, or returning false).
type StoreStatus struct {
	Store    string    // "redis"
	Up       bool      // the store answers
	Replicas int       // live replicas last seen
	Since    time.Time // when Up last changed
}

// statsDoc is GET /api/v1/stats: one snapshot of everything the dashboard
// shows (docs/admin-api.md, "GET /dashboard"). Everything is read when asked; nothing is kept between
// requests. Rates are left to the reader: the counters are cumulative
// (*_total), and two snapshots and their time give a rate.
type statsDoc struct {
	Time   string    `json:"time"`   // server time of the snapshot, RFC 3339
	Limits limitsDoc `json:"limits"` // as GET /api/v1/limits
	Queue  queueDoc  `json:"queue"`  // as GET /api/v1/queue
	// MaxTunnels is limits.max_tunnels (live).
	MaxTunnels int `json:"max_tunnels"`
	// AdmittedTotal counts permits granted since start: HTTP requests, each
	// retry attempt and tunnels; what limits.rate is spent on.
	AdmittedTotal uint64 `json:"admitted_total"`
	// RequestsTotal is proxyd_requests_total summed over priorities, by
	// outcome; every outcome is present.
	RequestsTotal map[string]uint64 `json:"requests_total"`
	// QueueWait is proxyd_queue_wait_seconds, by priority.
	QueueWait queueWaitDoc `json:"queue_wait"`
	// OldestWaitByPriority is, per priority "0"…"7", how long its oldest
	// waiting request has waited, in seconds (0: none waits). QueueWait
	// counts only requests that have left the queue; this shows a priority
	// whose requests all still wait, or time out (docs/admin-api.md).
	OldestWaitByPriority map[string]float64 `json:"oldest_wait_seconds_by_priority"`
	// Hosts are the hosts rules with their live limits and use, in rule
	// order.
	Hosts []hostStatsDoc `json:"hosts"`
	// Quotas are the global quotas (limits.quotas) with their use.
	Quotas []quotaUseDoc `json:"quotas"`
	// Store is the shared limiter store; null without one (limits.store:
	// memory).
	Store *storeDoc `json:"store"`
	// ProviderCaps are what the providers last said is left, per
	// destination and unit, while it holds (docs/shaping.md, "Provider
	// rate-limit headers"); soonest reset first.
	ProviderCaps []providerCapDoc `json:"provider_caps"`
}

type providerCapDoc struct {
	Destination string `json:"destination"` // "host:port"
	Unit        string `json:"unit"`        // requests or tokens (for requests priced in tokens), both enforced
	Stated      int64  `json:"stated"`      // the remaining count the last response stated
	Remaining   int64  `json:"remaining"`   // stated less proxyd's admissions since
	Reset       string `json:"reset"`       // when the cap ends, RFC 3339
	// Rule is the match of the hosts rule the destination falls under,
	// null for none.
	Rule *string `json:"rule"`
	// Limit is the quota's size the last response stated, null when it
	// stated none.
	Limit *int64 `json:"limit"`
	// ResetSeconds is the time left until Reset, in seconds (as
	// queue.paused's remaining_seconds).
	ResetSeconds float64 `json:"reset_seconds"`
}

type queueWaitDoc struct {
	// Bounds are the buckets' upper bounds in seconds (the +Inf bucket is
	// count).
	Bounds     []float64          `json:"bounds"`
	ByPriority map[string]histDoc `json:"by_priority"`
}

type histDoc struct {
	Count   uint64   `json:"count"`
	Sum     float64  `json:"sum"`
	Buckets []uint64 `json:"buckets"` // cumulative, one per bound
}

type hostStatsDoc struct {
	Match         string  `json:"match"`
	Rate          float64 `json:"rate"`        // 0 = unlimited
	Burst         int     `json:"burst"`       // bucket size
	Concurrency   int     `json:"concurrency"` // 0 = unlimited
	InFlight      int     `json:"in_flight"`
	Waiting       int     `json:"waiting"`
	AdmittedTotal uint64  `json:"admitted_total"`
	// Quotas are the rule's quotas with their use.
	Quotas []quotaUseDoc `json:"quotas"`
	// CostRatio is how the rule's prices compared with the usage its
	// answers reported (proxyd_cost_estimate_error_ratio{rule}); null
	// until one did.
	CostRatio *costRatioDoc `json:"cost_ratio"`
}

// costRatioDoc is a rule's proxyd_cost_estimate_error_ratio: answers
// whose usage was read, and the sum of their actual/estimate ratios. The
// mean over an interval is the difference of two snapshots' sums over the
// difference of their counts (the dashboard shows it).
type costRatioDoc struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
}

type storeDoc struct {
	Store    string `json:"store"`
	Up       bool   `json:"up"`
	Replicas int    `json:"replicas"`
	Since    string `json:"since"`
}

func (s *Server) getStats(w http.ResponseWriter, _ *http.Request) {
	st := s.backend.Stats()
	l, hosts := s.backend.Limits()
	now := s.clock.Now()
	doc := statsDoc{
		Time:          now.UTC().Format(time.RFC3339Nano),
		Limits:        docOf(l, hosts),
		Queue:         queueDocOf(st, now),
		MaxTunnels:    st.Limits.MaxTunnels,
		AdmittedTotal: st.Admitted,
		RequestsTotal: make(map[string]uint64, len(outcome.All)),
		QueueWait: queueWaitDoc{
			Bounds:     metrics.QueueWaitBounds(),
			ByPriority: make(map[string]histDoc, queue.Levels),
		},
		Hosts:                make([]hostStatsDoc, 0, len(st.Hosts)),
		OldestWaitByPriority: make(map[string]float64, queue.Levels),
	}
	for u, d := range st.OldestWaitByPriority {
		doc.OldestWaitByPriority[strconv.Itoa(u)] = d.Seconds()
	}
	var c metrics.Counts
	if s.counts != nil {
		c = s.counts()
	}
	for i, o := range outcome.All {
		var n uint64
		for u := range queue.Levels {
			if i < len(c.Outcomes[u]) {
				n += c.Outcomes[u][i]
			}
		}
		doc.RequestsTotal[o] = n
	}
	for u := range queue.Levels {
		h := c.Wait[u]
		if h.Buckets == nil {
			h.Buckets = make([]uint64, len(doc.QueueWait.Bounds))
		}
		doc.QueueWait.ByPriority[strconv.Itoa(u)] = histDoc{Count: h.Count, Sum: h.Sum, Buckets: h.Buckets}
	}
	for _, h := range st.Hosts {
		doc.Hosts = append(doc.Hosts, hostStatsDoc{
			Match:         h.Match,
			Rate:          h.Limit.Rate,
			Burst:         h.Limit.Burst,
			Concurrency:   h.Limit.Concurrency,
			InFlight:      h.InFlight,
			Waiting:       h.Waiting,
			AdmittedTotal: h.Admitted,
			Quotas:        quotaUseDocs(h.Quotas),
			CostRatio:     costRatioOf(c.CostRatio, h.Match),
		})
	}
	doc.Quotas = quotaUseDocs(st.Quotas)
	doc.ProviderCaps = make([]providerCapDoc, 0, len(st.Caps))
	for _, c := range st.Caps {
		pc := providerCapDoc{
			Destination: c.Dest, Unit: c.Unit.String(), Stated: c.Stated, Remaining: c.Remaining,
			Reset: c.Until.UTC().Format(time.RFC3339Nano), ResetSeconds: max(c.Until.Sub(now), 0).Seconds(),
		}
		if c.Rule != "" {
			pc.Rule = &c.Rule
		}
		if c.Limit > 0 {
			pc.Limit = &c.Limit
		}
		doc.ProviderCaps = append(doc.ProviderCaps, pc)
	}
	if s.store != nil {
		if ss, ok := s.store(); ok {
			doc.Store = &storeDoc{Store: ss.Store, Up: ss.Up, Replicas: ss.Replicas, Since: ss.Since.UTC().Format(time.RFC3339)}
		}
	}
	writeJSON(w, http.StatusOK, doc)
}

// costRatioOf is rule's cost ratio in ratios, or nil.
func costRatioOf(ratios map[string]metrics.RatioSum, rule string) *costRatioDoc {
	r, ok := ratios[rule]
	if !ok {
		return nil
	}
	return &costRatioDoc{Count: r.Count, Sum: r.Sum}
}

// storeStatusDoc is GET /api/v1/store (docs/admin-api.md, "GET /api/v1/store").
type storeStatusDoc struct {
	Store    string `json:"store"`              // "memory" or "redis"
	Up       *bool  `json:"up,omitempty"`       // redis: the store answers
	Replicas *int   `json:"replicas,omitempty"` // redis: live replicas last seen
	Since    string `json:"since,omitempty"`    // redis: when up last changed, RFC 3339
}

// getStore is GET /api/v1/store: {"store":"memory"}, or the shared store's
// state.
func (s *Server) getStore(w http.ResponseWriter, _ *http.Request) {
	doc := storeStatusDoc{Store: "memory"}
	if s.store != nil {
		if ss, ok := s.store(); ok {
			up, n := ss.Up, ss.Replicas
			doc = storeStatusDoc{Store: ss.Store, Up: &up, Replicas: &n, Since: ss.Since.UTC().Format(time.RFC3339)}
		}
	}
	writeJSON(w, http.StatusOK, doc)
}
