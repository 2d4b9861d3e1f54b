package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/cost"
	"github.com/proxyd/proxyd/internal/hostport"
)

// Pricing requests in tokens and reading what they used (docs/shaping.md,
// "LLM APIs: pricing requests"; hosts[].cost in docs/configuration.md).
//
// Before admission (exchange.price), a request to a hosts rule with a
// tokens quota is priced: its cost header (X-Proxy-Cost unless
// cost.header says otherwise), else with estimate: body its JSON body read
// up to cost.max_body (cost.Estimate), else cost.default. The body read
// is forwarded as it came: the buffered prefix, then the rest still
// streaming (exchange.inBody), replayed by retries like any buffered body.
// The cost header is removed before forwarding whatever the rule (the
// default name always; a rule's own name under that rule) and only read
// under a rule with a tokens quota.
//
// After admission (exchange.respond), the response body is fed to a
// cost.Meter chunk by chunk, each chunk once it was written (and flushed)
// to the client (meteredBody), and when it ends the permit is settled
// with the usage it reported (dispatch.Permit.Settle). A gzip or deflate
// body (the OpenAI and Anthropic SDKs ask for gzip) is fed to a
// cost.Inflater instead, which queues a copy of each chunk for a decoder
// goroutine of its own and never makes the copy wait; it gives up (the
// estimate kept, logged at debug) when the decoder falls behind or the
// body is corrupt. br and zstd, which Go's standard library cannot decode,
// are not read: their cost stays the estimate.

// priceRule is one hosts rule as pricing sees it.
type priceRule struct {
	match   config.HostPattern
	rule    string // its match in canonical form: the metric's rule label
	priced  bool   // it has a tokens quota: its requests are priced
	header  string // canonical cost header
	body    bool   // estimate: body
	def     int64  // cost.default
	maxBody int64  // cost.max_body
	paths   *cost.Paths
	drop    []string // the policy's drop list, and header
}

// compilePricing compiles the hosts rules' pricing (validated), in rule
// order: the first rule that matches a destination is its rule, as in the
// dispatcher. None when no rule has a tokens quota or a cost header of its
// own (then only the default header is removed, by the policy's drop).
func compilePricing(hosts []config.HostRule, drop []string) ([]priceRule, error) {
	need := false
	for _, h := range hosts {
		need = need || h.Cost != nil || hasTokens(h.Quotas)
	}
	if !need {
		return nil, nil
	}
	out := make([]priceRule, 0, len(hosts))
	for _, h := range hosts {
		m, err := config.ParseHostPattern(h.Match)
		if err != nil {
			return nil, err
		}
		p := h.Cost.Pricing()
		paths, err := cost.CompilePaths(p.Usage)
		if err != nil {
			return nil, err
		}
		pr := priceRule{match: m, rule: m.String(), priced: hasTokens(h.Quotas), header: p.Header,
			body: p.Estimate == config.CostEstimateBody, def: p.Default, maxBody: p.MaxBody, paths: paths, drop: drop}
		if !containsFold(drop, p.Header) {
			pr.drop = append(append(make([]string, 0, len(drop)+1), drop...), p.Header)
		}
		out = append(out, pr)
	}
	return out, nil
}

func hasTokens(qs []config.Quota) bool {
	for _, q := range qs {
		if q.UnitOrDefault() == config.QuotaTokens {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// priceRuleOf is the rule of dest, or nil.
func (p *policy) priceRuleOf(dest hostport.HostPort) *priceRule {
	for i := range p.pricing {
		if p.pricing[i].match.Match(dest.Host, dest.Port) {
			return &p.pricing[i]
		}
	}
	return nil
}

// price prices the request before admission (see above): 0 when its rule
// has no tokens quota. A bad cost header is a 400; a body that cannot be
// read is the client's failure, as when it streams upstream.
func (x *exchange) price() (int64, error) {
	pr := x.pol.priceRuleOf(x.dest)
	if pr == nil {
		return 0, nil
	}
	x.drop = pr.drop
	if !pr.priced {
		return 0, nil // the header is removed and ignored
	}
	x.costRule = pr
	x.rec.CostRule = pr.rule
	if vals := x.in.Header[pr.header]; len(vals) > 0 {
		if len(vals) > 1 {
			return 0, badHeader(pr.header + ": more than one value")
		}
		n, err := cost.ParseHeader(vals[0])
		if err != nil {
			return 0, badHeader(pr.header + ": " + err.Error())
		}
		return n, nil
	}
	if pr.body {
		n, ok, err := x.readEstimate(pr.maxBody)
		if err != nil || ok {
			return n, err
		}
	}
	return pr.def, nil
}

// readEstimate reads the body up to maxBody and estimates its cost; ok
// is false when there is no body, it is larger than maxBody (what was
// read goes upstream first, then the rest) or it is not JSON.
func (x *exchange) readEstimate(maxBody int64) (n int64, ok bool, err error) {
	r := x.in
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || r.ContentLength > maxBody {
		return 0, false, nil
	}
	// The bytes read stay held until the exchange ends (they are sent
	// upstream, and replayed on a retry): within the process's pricing
	// budget, or not read at all (priced cost.default, streamed).
	need := r.ContentLength
	if need < 0 {
		need = maxBody + 1
	}
	if !x.h.pricing.take(need) {
		x.h.log.Debug("pricing memory full: priced cost.default", zap.String("request_id", x.rec.ID), zap.Int64("held", x.h.pricing.held.Load()))
		return 0, false, nil
	}
	x.pricingHeld = need
	defer func() {
		// Hold what was read, not what was feared.
		if held := int64(cap(x.prefix)); held < x.pricingHeld {
			x.h.pricing.give(x.pricingHeld - held)
			x.pricingHeld = held
		}
	}()
	var b []byte
	if r.ContentLength > 0 {
		// Known length: read it whole, in one allocation.
		b = make([]byte, r.ContentLength)
		var k int
		k, err = io.ReadFull(r.Body, b)
		b = b[:k]
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the body ended before its length
		}
	} else {
		b, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	}
	x.prefix = b
	if err != nil {
		return 0, false, bodyError(r.Context(), err)
	}
	if int64(len(b)) > maxBody {
		return 0, false, nil
	}
	x.prefixAll = true
	n, ok = cost.Estimate(b)
	return n, ok, nil
}

// inBody is the request body as it goes upstream: what price read, then
// the rest.
func (x *exchange) inBody() io.ReadCloser {
	if x.prefix == nil {
		return x.in.Body
	}
	return prefixedBody{io.MultiReader(bytes.NewReader(x.prefix), x.in.Body), x.in.Body}
}

type prefixedBody struct {
	io.Reader
	c io.Closer
}

func (b prefixedBody) Close() error { return b.c.Close() }

// meter wraps resp's body in a meteredBody when the request was priced
// and its body can be read (identity, gzip or deflate); nil otherwise.
func (x *exchange) meter(resp *http.Response) *meteredBody {
	if x.costRule == nil || x.permit == nil {
		return nil
	}
	return x.meterAlways(resp)
}

// meterAlways is meter without the permit check (benchmarks).
func (x *exchange) meterAlways(resp *http.Response) *meteredBody {
	m := cost.NewMeter(resp.Header.Get("Content-Type"), x.costRule.paths)
	b := &meteredBody{rc: resp.Body, m: m}
	if ce := strings.Join(resp.Header.Values("Content-Encoding"), ","); cost.Encoded(ce) {
		z, err := cost.NewInflater(ce, m)
		if err != nil {
			x.h.log.Debug("response usage not read: the estimate stays", zap.String("request_id", x.rec.ID), zap.String("host", x.dest.Host), zap.Error(err))
			return nil
		}
		b.m, b.z = z, z
	}
	resp.Body = b
	return b
}

// settle ends the metering of a response: the usage it reported corrects
// the permit's cost, and both go to the record.
func (x *exchange) settle(b *meteredBody) {
	if b == nil {
		return
	}
	n, ok := b.m.Usage()
	if b.z != nil {
		if err := b.z.Err(); err != nil {
			lvl := zap.DebugLevel
			if errors.Is(err, cost.ErrPanic) {
				lvl = zap.ErrorLevel // a bug
			}
			x.h.log.Log(lvl, "compressed response usage not read: the estimate stays", zap.String("request_id", x.rec.ID), zap.String("host", x.dest.Host), zap.Error(err))
		}
	}
	if !ok {
		return
	}
	x.rec.CostActual, x.rec.CostReported = n, true
	x.permit.Settle(n)
}

// usageMeter is what a meteredBody feeds: a cost.Meter, or a
// cost.Inflater in front of one.
type usageMeter interface {
	io.Writer
	Usage() (int64, bool)
}

// meteredBody is a response body that feeds each chunk to a usageMeter
// once the caller is done with it: at the next Read, after the caller
// wrote (and flushed) it to the client, so that metering delays no byte.
// A chunk that comes with an error (io.EOF with the last bytes) is
// returned without it; the error comes with the next Read, after the
// chunk was metered. The chunk is the caller's buffer, which it does not
// reuse before calling Read again (an Inflater copies it).
//
// Close ends a compressed body's decoder (cost.Inflater.Close: it
// decodes what it was given, then ends) whether the body ended or was
// abandoned, so that no decoder outlives its response.
type meteredBody struct {
	rc   io.ReadCloser
	m    usageMeter
	z    *cost.Inflater // m when the body is compressed
	last []byte
	err  error
}

func (b *meteredBody) Read(p []byte) (int, error) {
	if b.last != nil {
		_, _ = b.m.Write(b.last)
		b.last = nil
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.last, b.err = p[:n], err
		return n, nil
	}
	return 0, err
}

func (b *meteredBody) Close() error {
	if b.z != nil {
		b.z.Close()
	}
	return b.rc.Close()
}

// DefaultPricingMemory is the pricing budget when Deps.PricingMemory is
// 0: at most 64 MiB of request bodies held at once to price them
// (docs/configuration.md, hosts[].cost.max_body). Without a bound, a
// queue of limits.queue_size priced requests could hold queue_size ×
// cost.max_body bytes (10 GiB with the defaults).
const DefaultPricingMemory = 64 << 20

// pricingBudget counts the body bytes held to price requests; a request
// that does not fit is priced cost.default and its body streams, as one
// larger than cost.max_body does.
type pricingBudget struct {
	limit int64
	held  atomic.Int64
}

// take reserves n bytes if they fit.
func (b *pricingBudget) take(n int64) bool {
	for {
		h := b.held.Load()
		if h+n > b.limit {
			return false
		}
		if b.held.CompareAndSwap(h, h+n) {
			return true
		}
	}
}

// give returns n bytes.
func (b *pricingBudget) give(n int64) { b.held.Add(-n) }

// releasePricing gives the exchange's held body bytes back (end).
func (x *exchange) releasePricing() {
	if x.pricingHeld > 0 {
		x.h.pricing.give(x.pricingHeld)
		x.pricingHeld = 0
	}
}
