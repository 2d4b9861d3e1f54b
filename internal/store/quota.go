package store

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
)

// Per-window quotas shared by the fleet (docs/shared-quota.md, "Quotas").
//
// # Design
//
// Each quota {limit, per, unit} is one Redis hash,
// {prefix}:quota:global:<per>:<unit> for limits.quotas and
// {prefix}:quota:rule:<match>:<per>:<unit> for a hosts rule's (the same
// {prefix} hash tag: one Cluster slot). It counts units in time slots of
// per/1024 (µs of Redis's TIME) and keeps their sum; a slot leaves the
// window when its end + per <= now. The lease call (leaseScript) carries,
// per quota, this replica's want and the settlements of its earlier
// batches (dispatch.QuotaSettlement), and does, atomically:
//
//  1. prune the slots that left the window;
//  2. settle: for a batch granted at Redis time t, uncharge its g units
//     from the slot they were charged to, and charge the spent ones to
//     the slot of t + offset, the offset being the latest spend measured
//     from when the call that asked for it was SENT on the replica's
//     monotonic clock; lease 0 (admissions made without a lease, while
//     the store could not be reached) charges at now + offset (negative);
//  3. grant g = min(want, limit − sum − reserved) units, where reserved is,
//     for a global quota, what other replicas need right now at strictly
//     more urgent levels (as for the global bucket), and for a hosts
//     rule's quota the demand ahead of this replica's head (below); a
//     head is granted all it lacks or nothing; charge them to the slot of
//     now + LeaseTTL (they may be spent until then) and record the lease
//     (id → t, slot, g) under the replica.
//
// Settlements also carry corrections (dispatch.Permit.Settle): a refund
// ("r", units, at) uncharges units from the slot of at, the Redis time
// where the batch they came from placed its spends (its grant's time,
// returned in each reply, plus its latest spend), if that slot is still
// in the window; debt is lease 0 at offset 0 (charged at now).
//
// # Heads (hosts rules' quotas, tokens ones above all)
//
// A request priced in tokens may cost more than a lease. Each call
// reports, per rule quota, the replica's head (the rule's next request:
// urgency, the units it lacks beyond those held, its id); the quota's
// field "dem" keeps per replica "id,ts,u,need,want,hid,since", need and
// want being what is left after this call's grant and since the Redis
// time of the first call that reported that head. Heads are ordered by
// (u, since, id); reserved is the fresh (FreshDemand) want of others at
// more urgent levels plus the need of others' heads of the same urgency
// that go first. The first head has nothing reserved ahead of it and
// every other grant leaves its need free, so it is granted within per of
// becoming first, whatever its price (≤ limit); no replica holds part of
// a head's units, so none waits on another's (docs/shared-quota.md,
// "Tokens", states the bound with corrections and debt).
//
// # The bound
//
// Every window of length per holds at most limit units admitted by the
// whole fleet. A unit admitted at s (Redis time) was granted at t <= s by
// a call sent before t, and can be spent only until LeaseTTL after that
// send, so s < t + LeaseTTL. It is charged from t on, first to the slot of
// t + LeaseTTL, then (settled) to the slot of t + offset; the send came
// before t, so t + offset >= s. Either way its slot ends after s, and it
// stays counted until at least s + per. Take any window [a, a + per) and
// T the latest grant time among the units admitted in it: each of them
// was granted at or before T and stays counted until after a + per > T,
// so at T (after that grant) the sum holds them all, and the grant kept
// the sum within limit. No replica clock is compared with Redis's:
// offsets are differences on one replica's monotonic clock.
//
// A settlement that never comes (a replica died, a reply was lost) leaves
// the conservative charge, which leaves the window by itself. Under
// sustained overload a unit comes back about per/1024 + one call after
// its own per, so at least 98% of limit goes per per
// (TestSharedQuotaAcrossReplicas measures it).
//
// # Bounded memory
//
// Slots: at most 1024 + LeaseTTL/(per/1024) + 1 live, pruned from the
// lowest ("lo") up at each call. Lease records: one field per replica,
// l:<replica id>, its outstanding batches (a few: each is settled within
// a lease time and a call); a record older than 10 s, or whose slot left
// the window, is dropped (its charge stays); a replica gone from
// {prefix}:replicas (20 s) loses its field. The hash expires per + 60 s
// after its last call.

// maxPendingSettlements bounds the settlements kept per quota while the
// store cannot be reached; the oldest are dropped first (their charges
// stay: conservative).
const maxPendingSettlements = 256

// quotaState is the store's side of the quotas; the loop goroutine alone
// uses it.
type quotaState struct {
	seq uint64 // the id of the latest lease call: a grant's lease id
	// pending are settlements not yet written, by quota key: sent again
	// by the next call until one succeeds.
	pending map[string][]dispatch.QuotaSettlement
}

// quotaKey is q's hash: {prefix}:quota:global:<per>:<unit> or
// {prefix}:quota:rule:<match>:<per>:<unit>.
func (s *Store) quotaKey(q dispatch.QuotaDemand) string {
	scope := "global"
	if q.Scope != "" {
		scope = "rule:" + q.Scope
	}
	return strings.TrimSuffix(s.keys[0], ":bucket") + ":quota:" + scope + ":" + config.FormatPer(q.Per) + ":" + q.Unit
}

// appendQuotas adds dm's quotas to a lease call's KEYS and ARGV (after the
// rules'): their count, this call's lease id, then per quota whether it is
// global, its limit, per (µs), want and settlements (with those kept from
// calls that failed).
func (s *Store) appendQuotas(keys []string, args []any, dm dispatch.Demand) ([]string, []any) {
	s.quota.seq++
	if len(dm.Quotas) == 0 {
		s.quota.pending = nil
		return keys, args
	}
	keys = slices.Clip(keys) // never append into s.keys
	args = append(args, len(dm.Quotas), s.quota.seq)
	pending := s.quota.pending
	s.quota.pending = make(map[string][]dispatch.QuotaSettlement, len(dm.Quotas))
	for _, q := range dm.Quotas {
		key := s.quotaKey(q)
		settle := append(pending[key], q.Settle...)
		if len(settle) > maxPendingSettlements {
			settle = settle[len(settle)-maxPendingSettlements:]
		}
		if len(settle) > 0 {
			s.quota.pending[key] = settle
		}
		global := 0
		if q.Scope == "" {
			global = 1
		}
		keys = append(keys, key)
		args = append(args, global, q.Limit, q.Per.Microseconds(), quotaWant(q), q.HeadUrgency, q.HeadNeed, q.HeadID, len(settle))
		for _, st := range settle {
			if st.Refund > 0 {
				args = append(args, "r", st.Refund, st.At)
				continue
			}
			args = append(args, st.Lease, st.Spent, st.Offset.Microseconds())
		}
	}
	return keys, args
}

// quotaGrants hands the reply's quota grants (its 8th value: {granted,
// used, Redis time} per quota, in dm's order) to the dispatcher, as lease
// s.quota.seq sent at sent; the settlements are written.
func (s *Store) quotaGrants(res []any, dm dispatch.Demand, sent, expires time.Time) {
	s.quota.pending = nil
	if len(dm.Quotas) == 0 {
		return
	}
	var qr []any
	if len(res) > 7 {
		qr, _ = res[7].([]any)
	}
	grants := make([]dispatch.QuotaGrant, 0, len(dm.Quotas))
	for i, q := range dm.Quotas {
		g := dispatch.QuotaGrant{Scope: q.Scope, Per: q.Per, Unit: q.Unit}
		if i < len(qr) {
			if v, _ := qr[i].([]any); len(v) >= 2 {
				n, _ := v[0].(int64)
				used, _ := v[1].(int64)
				g.N, g.Used = int(n), int(used)
				if len(v) > 2 {
					g.At, _ = v[2].(int64)
				}
			}
		}
		grants = append(grants, g)
	}
	s.disp.GrantQuotas(s.quota.seq, sent, expires, grants)
}

// quotaWant is how many units a replica asks for: what its waiting
// requests need beyond the units it holds, never so many that it would
// hold more than maxQuotaLease: leases stay small (a unit held unspent
// is lost to the fleet until its lease ends), and requests held by
// something else (a concurrency cap) never pile units up. But never less
// than its head lacks: in a tokens quota one request may cost more than
// a lease, and the store grants a head all it lacks or nothing.
func quotaWant(q dispatch.QuotaDemand) int {
	return max(0, min(q.Waiting, maxQuotaLease(q.Limit, q.Per))-q.Unspent, q.HeadNeed)
}

// maxQuotaLease is the most units of a quota a replica holds: its average
// rate (limit / per) × 4 × Interval, at least 1, as maxLease for a bucket.
func maxQuotaLease(limit int, per time.Duration) int {
	return max(1, int(math.Ceil(float64(limit)/per.Seconds()*4*Interval.Seconds())))
}

// quotaLua is leaseScript's quota part (see the design above). It runs
// after the replicas' demand is read: reserved (other replicas' more
// urgent demand), n (the hosts rules' count), gone (replicas forgotten),
// now and ttl are set. Lease records are "lease,t,slot,g" joined by ";".
const quotaLua = `
local quotas = {}
local gonemap = {}
for _, id in ipairs(gone) do gonemap[id] = true end
local qa = 9 + n * 5
local nq = tonumber(ARGV[qa] or '0') or 0
local qlease = ARGV[qa + 1]
local qme = 'l:' .. ARGV[1]
qa = qa + 2
local function slot(i) return 's' .. string.format('%.0f', i) end
for i = 1, nq do
  local key = KEYS[3 + n + i]
  local global, limit, per, qwant = tonumber(ARGV[qa]), tonumber(ARGV[qa + 1]), tonumber(ARGV[qa + 2]), tonumber(ARGV[qa + 3])
  local qu, qneed, qhid, ns = tonumber(ARGV[qa + 4]), tonumber(ARGV[qa + 5]), ARGV[qa + 6], tonumber(ARGV[qa + 7])
  qa = qa + 8
  local w = math.max(1, math.floor(per / 1024))
  -- Slots up to cut have left the window: (cut + 1) * w + per <= now.
  local cut = math.floor((now - per) / w) - 1
  local h = redis.call('HMGET', key, 'lo', 'hi', 'sum')
  local lo, hi, sum = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]) or 0
  if lo and hi then
    for idx = lo, math.min(cut, hi) do
      local v = tonumber(redis.call('HGET', key, slot(idx)) or '')
      if v then
        sum = sum - v
        redis.call('HDEL', key, slot(idx))
      end
    end
  end
  if not lo or lo <= cut then lo = cut + 1 end
  if not hi then hi = lo end
  -- This replica's outstanding leases.
  local recs, order = {}, {}
  local prev = redis.call('HGET', key, qme)
  if prev then
    for ls, t, s, g in string.gmatch(prev, '(%d+),(%d+),(%d+),(%d+)') do
      recs[ls] = {tonumber(t), tonumber(s), tonumber(g)}
      order[#order + 1] = ls
    end
  end
  -- Settlements: unspent units uncharged, spent ones moved to t + offset.
  for j = 1, ns do
    local ls, spent, off = ARGV[qa], math.max(0, tonumber(ARGV[qa + 1]) or 0), tonumber(ARGV[qa + 2]) or 0
    qa = qa + 3
    local at, top = nil, nil
    if ls == 'r' then
      -- A refund (Permit.Settle): spent units given back, uncharged from
      -- the slot of off (Redis µs) where their batch placed its spends.
      local c = math.floor(off / w)
      if c > cut and c >= lo then
        local v = tonumber(redis.call('HGET', key, slot(c)) or '') or 0
        local k = math.min(spent, v)
        if k >= v then
          redis.call('HDEL', key, slot(c))
        elseif k > 0 then
          redis.call('HSET', key, slot(c), v - k)
        end
        sum = sum - k
      end
    elseif ls == '0' then
      at, top = now + math.min(off, 0), math.floor(now / w)
    elseif recs[ls] then
      local r = recs[ls]
      recs[ls] = nil
      if r[2] >= lo then
        local left = (tonumber(redis.call('HGET', key, slot(r[2])) or '') or 0) - r[3]
        if left > 0 then
          redis.call('HSET', key, slot(r[2]), left)
        else
          redis.call('HDEL', key, slot(r[2]))
        end
        sum = sum - r[3]
        at, top = r[1] + off, r[2]
      end
    end
    if at and spent > 0 then
      local c = math.min(math.floor(at / w), top)
      if c > cut then
        redis.call('HINCRBY', key, slot(c), spent)
        sum = sum + spent
        if c < lo then lo = c end
        if c > hi then hi = c end
      end
    end
  end
  local kept = {}
  for _, ls in ipairs(order) do
    local r = recs[ls]
    if r and r[2] >= lo and now - r[1] <= 10000000 then
      kept[#kept + 1] = ls .. ',' .. string.format('%.0f,%.0f,%.0f', r[1], r[2], r[3])
    end
  end
  -- The grant, charged to the lease's end.
  local avail = limit - sum
  local heads, since = {}, now
  if global == 1 then
    avail = avail - reserved
  else
    -- A hosts rule's quota: the replicas' heads in order (urgency, then
    -- since: when the head was first reported, then replica id); a
    -- replica is granted only what the fresh demand ahead of its head
    -- leaves: others' residual want at more urgent levels, others'
    -- heads' residual need at its own. Records "id,ts,u,need,want,hid,since".
    local ahead = 0
    for id, ts, du, dneed, dwant, dhid, dsince in string.gmatch(redis.call('HGET', key, 'dem') or '', '([^,;]+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+)') do
      ts = tonumber(ts)
      if id == ARGV[1] then
        if dhid == qhid then since = tonumber(dsince) end
      elseif now - ts <= alive and not gonemap[id] then
        heads[#heads + 1] = {id, ts, tonumber(du), tonumber(dneed), tonumber(dwant), dhid, tonumber(dsince)}
      end
    end
    for _, o in ipairs(heads) do
      if now - o[2] <= fresh then
        if o[3] < qu then
          ahead = ahead + o[5]
        elseif o[3] == qu and (o[7] < since or (o[7] == since and o[1] < ARGV[1])) then
          ahead = ahead + o[4]
        end
      end
    end
    avail = avail - ahead
  end
  local g = 0
  -- A head gets all it lacks or nothing: no replica holds part of one
  -- request's units while waiting for the rest.
  if qwant > 0 and avail >= math.max(1, qneed) then g = math.min(qwant, math.floor(avail)) end
  if global == 0 then
    local recs2 = {}
    for _, o in ipairs(heads) do
      recs2[#recs2 + 1] = string.format('%s,%.0f,%d,%.0f,%.0f,%s,%.0f', o[1], o[2], o[3], o[4], o[5], o[6], o[7])
    end
    if qu < 8 then
      recs2[#recs2 + 1] = string.format('%s,%.0f,%d,%.0f,%.0f,%s,%.0f', ARGV[1], now, qu, math.max(0, qneed - g), math.max(0, qwant - g), qhid, since)
    end
    if #recs2 > 0 then
      redis.call('HSET', key, 'dem', table.concat(recs2, ';'))
    else
      redis.call('HDEL', key, 'dem')
    end
  end
  if g > 0 then
    local c = math.floor((now + ttl) / w)
    redis.call('HINCRBY', key, slot(c), g)
    sum = sum + g
    if c > hi then hi = c end
    kept[#kept + 1] = qlease .. ',' .. string.format('%.0f,%.0f,%.0f', now, c, g)
  end
  if #kept > 0 then
    redis.call('HSET', key, qme, table.concat(kept, ';'))
  else
    redis.call('HDEL', key, qme)
  end
  for _, id in ipairs(gone) do redis.call('HDEL', key, 'l:' .. id) end
  redis.call('HSET', key, 'lo', string.format('%.0f', lo), 'hi', string.format('%.0f', hi), 'sum', string.format('%.0f', sum))
  redis.call('PEXPIRE', key, math.floor(per / 1000) + 60000)
  quotas[i] = {g, sum, now}
end
`
