package dispatch

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/proxyd/proxyd/internal/clock"
	"github.com/proxyd/proxyd/internal/config"
)

// headroomResult is one overload run: every admission (time, units,
// urgent) and the urgent requests' waits (those still waiting at the end
// count their wait so far).
type headroomResult struct {
	adm        []headroomAdm
	urgentWait []time.Duration
}

type headroomAdm struct {
	at     time.Time
	units  int
	urgent bool
}

// runOverload drives one hosts rule with quota q on a fake clock for
// windows × q.Per: Poisson arrivals at twice the quota (in its unit), a
// share urgentShare of them urgent (urgency 1, the rest 5), each costing
// cost(rng) tokens (requests quotas: 1 unit each). Deterministic: fixed
// seed, fake time.
func runOverload(t *testing.T, q Quota, windows int, urgentShare float64, meanCost float64, cost func(*rand.Rand) int64) headroomResult {
	t.Helper()
	p, err := config.ParseHostPattern("api.example")
	if err != nil {
		t.Fatal(err)
	}
	hl := HostLimit{Match: p, Quotas: []Quota{q}, CostDefault: 1000}
	l := unlimited()
	l.QueueSize = 10_000_000
	l.MaxWait = 1000 * time.Hour
	clk := clock.NewFake(t0)
	d := New(Config{Limits: l, Hosts: []HostLimit{hl}}, Deps{Clock: clk})
	defer d.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	perReq := 1.0
	if q.Unit == config.QuotaTokens {
		perReq = meanCost
	}
	// Arrivals per second: twice the quota's units per second.
	lambda := 2 * float64(q.Limit) / perReq / q.Per.Seconds()
	end := time.Duration(windows) * q.Per
	type arrival struct {
		tk     *Ticket
		at     time.Time
		urgent bool
	}
	var all []arrival
	for at := time.Duration(0); ; {
		at += time.Duration(rng.ExpFloat64() / lambda * float64(time.Second))
		if at >= end {
			break
		}
		clk.Set(t0.Add(at))
		urgent := rng.Float64() < urgentShare
		r := Request{Urgency: 5, Dest: "api.example:443"}
		if urgent {
			r.Urgency = 1
		}
		if q.Unit == config.QuotaTokens {
			r.Cost = cost(rng)
		}
		tk, err := d.Enqueue(r)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, arrival{tk: tk, at: clk.Now(), urgent: urgent})
	}
	clk.Set(t0.Add(end))
	var res headroomResult
	for _, a := range all {
		pm, err := a.tk.Poll()
		if err != nil {
			if a.urgent {
				res.urgentWait = append(res.urgentWait, clk.Now().Sub(a.at))
			}
			a.tk.Cancel()
			continue
		}
		n := 1
		if q.Unit == config.QuotaTokens {
			n = int(pm.Cost())
		}
		res.adm = append(res.adm, headroomAdm{at: a.at.Add(pm.Waited()), units: n, urgent: a.urgent})
		if a.urgent && !a.at.Before(t0.Add(q.Per)) {
			res.urgentWait = append(res.urgentWait, pm.Waited())
		}
		pm.Release()
	}
	sort.Slice(res.adm, func(i, j int) bool { return res.adm[i].at.Before(res.adm[j].at) })
	return res
}

// p99 of ds (the zero duration for none).
func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(math.Ceil(0.99*float64(len(s))))-1]
}

// checkUnitWindows fails if any interval [t, t+Per) holds more than Limit
// units of the sorted admissions (the tightest starts at an admission).
func checkUnitWindows(t *testing.T, adm []headroomAdm, q Quota) {
	t.Helper()
	sum, j := 0, 0
	for i := range adm {
		for j < len(adm) && adm[j].at.Sub(adm[i].at) < q.Per {
			sum += adm[j].units
			j++
		}
		if sum > q.Limit {
			t.Fatalf("%v: %d units within %v of %v", q, sum, q.Per, adm[i].at.Sub(t0))
		}
		sum -= adm[i].units
	}
}

// unitsIn sums the units admitted in [from, to) (offsets from t0).
func unitsIn(adm []headroomAdm, from, to time.Duration) int {
	n := 0
	for _, a := range adm {
		if !a.at.Before(t0.Add(from)) && a.at.Before(t0.Add(to)) {
			n += a.units
		}
	}
	return n
}

// heavyCost is a Pareto cost (α 1.5, from 200 tokens, mean ≈ 600), capped
// at 20000.
func heavyCost(rng *rand.Rand) int64 {
	return int64(min(20000, 200/math.Pow(1-rng.Float64(), 1/1.5)))
}

// Under steady 2× overload with 20% urgent arrivals, the batch backlog
// leaves the urgent share of a quota free (docs/shaping.md, "Priority in
// quotas"): urgent requests are admitted as they arrive (p99 wait of a
// few seconds in fake time, where a backlog that spends each window early
// made them wait for the window to move, ~30 s), every window stays
// within the limit, and at least 98% of every whole window after the
// first is used. Requests and heavy-tailed tokens quotas.
func TestQuotaUrgencyHeadroom(t *testing.T) {
	cases := []struct {
		name string
		q    Quota
		mean float64
	}{
		{"requests", Quota{Limit: 1000, Per: time.Minute, Unit: config.QuotaRequests}, 1},
		{"tokens", tokensQuota(1_000_000, time.Minute), 570},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			const windows = 6
			res := runOverload(t, c.q, windows, 0.2, c.mean, heavyCost)
			checkUnitWindows(t, res.adm, c.q)
			for k := 1; k < windows; k++ {
				got := unitsIn(res.adm, time.Duration(k)*c.q.Per, time.Duration(k+1)*c.q.Per)
				if got*100 < c.q.Limit*98 {
					t.Errorf("window %d: %d of %d units admitted (< 98%%)", k, got, c.q.Limit)
				}
			}
			w := p99(res.urgentWait)
			t.Logf("%s: urgent p99 wait %v over %d urgent requests after the first window", c.name, w, len(res.urgentWait))
			if w > 5*time.Second {
				t.Errorf("urgent p99 wait %v, want under 5s", w)
			}
		})
	}
}

// A quota without urgent traffic is spent fully by the batch: every whole
// window of a 2× overload admits the limit (headroom holds nothing back
// when no more urgent request used the window).
func TestQuotaHeadroomIdleWithoutUrgent(t *testing.T) {
	q := Quota{Limit: 1000, Per: time.Minute, Unit: config.QuotaRequests}
	res := runOverload(t, q, 4, 0, 1, nil)
	checkUnitWindows(t, res.adm, q)
	for k := range 4 {
		if got := unitsIn(res.adm, time.Duration(k)*q.Per, time.Duration(k+1)*q.Per); got != q.Limit {
			t.Errorf("window %d: %d of %d admitted", k, got, q.Limit)
		}
	}
}
