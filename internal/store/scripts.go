package store

import "github.com/redis/go-redis/v9"

// The scripts run atomically in Redis. KEYS are {prefix}:bucket,
// {prefix}:limits and {prefix}:replicas: one hash tag, one Cluster slot.
// Time is Redis's own (TIME), in microseconds.

// The limits hash's version counts changes; its epoch (Redis's TIME when
// the hash was created) tells a Redis that restarted empty, where versions
// count from 1 again, from the one a replica saw before.

// initScript writes the limits (ARGV rate, burst) unless the fleet has
// some already.
var initScript = redis.NewScript(`
if redis.call('HSETNX', KEYS[2], 'rate', ARGV[1]) == 1 then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'burst', ARGV[2], 'epoch', t[1] .. '.' .. t[2])
  redis.call('HINCRBY', KEYS[2], 'ver', 1)
end
return 1
`)

// setScript makes ARGV rate and burst the fleet's and returns {the new
// version, the epoch}. The bucket keeps its tokens (capped at the new
// burst on the next refill).
var setScript = redis.NewScript(`
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[2], 'epoch', t[1] .. '.' .. t[2])
redis.call('HSET', KEYS[2], 'rate', ARGV[1], 'burst', ARGV[2])
return {redis.call('HINCRBY', KEYS[2], 'ver', 1), redis.call('HGET', KEYS[2], 'epoch')}
`)

// leaseScript: ARGV replica id, want, demand by urgency "d0,…,d7", the
// freshness of demand and of replicas (µs), the number of hosts rules,
// the replica's unspent leased tokens and the lease time (µs). It records
// the replica's demand and the tokens it holds (unspent plus granted),
// refills the bucket at rate, and grants up to want of the tokens that
// other replicas' more urgent demand does not need.
//
// The refill stops at burst less the tokens that replicas hold (recorded
// less than a lease time ago: older ones have expired), so that the
// bucket and the leases together never exceed burst and the fleet's
// admissions over any window t stay within rate × t + burst, however long
// a replica keeps its tokens before it spends them (docs/shared-quota.md).
//
// Then, for each hosts rule (ARGV[6] of them: match, rate, burst, want and
// this replica's unspent tokens of the rule, from ARGV[9]; their buckets
// KEYS[4 …]), it does the same for the rule's bucket: records the rule's
// tokens this replica holds (a field held:<replica id> of the bucket's
// hash, "time,tokens"), refills the bucket up to burst less the rule's
// tokens held by all replicas, and grants up to want. Then the quotas
// (quota.go: quotaLua, after the rules' ARGV; their hashes after the
// rules' keys), then the shared concurrency caps (slots.go: slotLua,
// after the quotas' ARGV and keys). Returns {granted, rate (string),
// burst, version, replicas, {rule grants}, epoch, {{granted, used} per
// quota}, {{granted, target} per shared cap}}; version -1 when the
// fleet has no limits (an empty Redis). A rule's rate and burst come from the asking replica's
// configuration: keep hosts rules the same on every replica.
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if redis.call('EXISTS', KEYS[2]) == 0 then
  -- No limits (a restarted, empty Redis): grant nothing; the replica
  -- writes its own and asks again.
  return {0, '0', 0, -1, 0}
end
local rate = tonumber(redis.call('HGET', KEYS[2], 'rate') or '0') or 0
local burst = tonumber(redis.call('HGET', KEYS[2], 'burst') or '1') or 1
local ver = tonumber(redis.call('HGET', KEYS[2], 'ver') or '0') or 0
local want = tonumber(ARGV[2])
local fresh, alive = tonumber(ARGV[4]), tonumber(ARGV[5])

local unspent = tonumber(ARGV[7] or '0') or 0
local ttl = tonumber(ARGV[8] or '') or fresh

local mine = {}
for n in string.gmatch(ARGV[3], '[^,]+') do mine[#mine + 1] = tonumber(n) end
local best = #mine + 1
for u = 1, #mine do if mine[u] > 0 then best = u break end end
-- The tokens this replica held since its last call bound the refill up
-- to now (it may have spent them since: the next call counts that).
local mineHeld = unspent
local prev = redis.call('HGET', KEYS[3], ARGV[1])
if prev then
  local f = {}
  for n in string.gmatch(prev, '[^,]+') do f[#f + 1] = tonumber(n) end
  if now - f[1] <= ttl then mineHeld = math.max(mineHeld, f[10] or 0) end
end
-- The demand by urgency, then (field 10) the tokens this replica holds;
-- written again below with the grant.
local record = now .. ',' .. ARGV[3] .. ','
redis.call('HSET', KEYS[3], ARGV[1], record .. tostring(unspent))

local reserved, replicas, held = 0, 0, mineHeld
local gone = {} -- replicas forgotten: their quota lease records go too
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local id, v = all[i], all[i + 1]
  local fields = {}
  for n in string.gmatch(v, '[^,]+') do fields[#fields + 1] = tonumber(n) end
  local age = now - fields[1]
  if age > 10 * alive then
    redis.call('HDEL', KEYS[3], id)
    gone[#gone + 1] = id
  else
    if age <= alive then replicas = replicas + 1 end
    if id ~= ARGV[1] and age <= fresh then
      for u = 1, best - 1 do reserved = reserved + (fields[u + 1] or 0) end
    end
    if id ~= ARGV[1] and age <= ttl then held = held + (fields[10] or 0) end
  end
end

-- hosts rules: ARGV[6] = n, then match, rate, burst, want, unspent per
-- rule; their buckets are KEYS[4 ..]. As for the global bucket, a rule's
-- refill stops at burst less the rule's tokens that replicas hold.
local rules = {}
local n = tonumber(ARGV[6] or '0') or 0
local me = 'held:' .. ARGV[1]
for i = 1, n do
  local base = 8 + (i - 1) * 5
  local rrate, rburst, rwant = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local runspent = tonumber(ARGV[base + 5] or '0') or 0
  local key = KEYS[3 + i]
  local h = redis.call('HGETALL', key)
  local tok, rts, rheld = rburst, now, runspent
  for j = 1, #h, 2 do
    local f, v = h[j], h[j + 1]
    if f == 'tokens' then
      tok = tonumber(v) or rburst
    elseif f == 'ts' then
      rts = tonumber(v) or now
    elseif string.sub(f, 1, 5) == 'held:' then
      local at, c = string.match(v, '([^,]+),([^,]+)')
      local age = now - (tonumber(at) or 0)
      if age > 10 * alive then
        redis.call('HDEL', key, f)
      elseif age <= ttl then
        if f == me then
          rheld = rheld + math.max(0, (tonumber(c) or 0) - runspent)
        else
          rheld = rheld + (tonumber(c) or 0)
        end
      end
    end
  end
  if now > rts then
    local refilled = tok + (now - rts) * rrate / 1000000
    local cap = rburst - rheld
    if refilled > cap then refilled = math.max(tok, cap) end
    tok = refilled
  end
  local g = 0
  if rwant > 0 and tok >= 1 then g = math.min(rwant, math.floor(tok)) end
  redis.call('HSET', key, 'tokens', tostring(tok - g), 'ts', tostring(math.max(now, rts)), me, now .. ',' .. tostring(runspent + g))
  redis.call('PEXPIRE', key, 3600000)
  rules[i] = g
end

local granted = 0
if rate <= 0 then
  granted = want
else
  local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '') or burst
  local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or '') or now
  if now > ts then
    local refilled = tokens + (now - ts) * rate / 1000000
    local cap = burst - held
    if refilled > cap then refilled = math.max(tokens, cap) end
    tokens = refilled
  end
  local avail = math.floor(tokens - reserved)
  if avail > 0 then granted = math.min(want, avail) end
  tokens = tokens - granted
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
end
redis.call('HSET', KEYS[3], ARGV[1], record .. tostring(unspent + granted))
` + quotaLua + slotLua + `
return {granted, tostring(rate), burst, ver, replicas, rules, redis.call('HGET', KEYS[2], 'epoch') or '', quotas, slots}
`)
