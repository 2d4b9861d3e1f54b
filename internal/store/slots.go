package store

import (
	"slices"
	"time"

	"github.com/proxyd/proxyd/internal/dispatch"
)

// Fleet-wide concurrency caps (limits.shared_concurrency,
// hosts[].shared_concurrency; docs/shared-quota.md, "Shared concurrency
// caps"). The dispatcher's side, and why the fleet never has more than
// the cap in flight, is internal/dispatch/sharedslots.go.
//
// # Design
//
// Each shared cap is one Redis hash, {prefix}:slots:global or
// {prefix}:slots:rule:<match> (the {prefix} hash tag: one Cluster slot),
// with one field per replica: "at,expires,held,waiting,best" in Redis's
// TIME (µs): the slots the store keeps for that replica until expires,
// and the requests it had waiting for one at "at", with their most urgent
// level. The lease call that already serves the buckets carries, per cap,
// the replica's held (the slots it keeps: at least those in use), in use,
// want, waiting and best, and does, atomically:
//
//  1. drop the records that expired: a replica that stopped calling (it
//     died, or has not reached the store for redis.slot_lease) gives its
//     slots back then;
//  2. target = cap − the others' held − the others' waiting at strictly
//     more urgent levels (recorded within FreshDemand), and at most a fair
//     share of the rest when others wait at the same level;
//  3. grant g = min(held + want, target) − held (never negative), and
//     record held + g for this replica, expiring slot_lease from now.
//
// The others' held plus this replica's record never exceed the cap after
// a grant, and every replica's record is at least what it may have in
// flight (the dispatcher lowers its own limit before reporting it, and
// raises it only by a grant), so at most the cap is in flight across the
// fleet, except for a dead replica's requests (gone with it) and a
// replica cut off from the store: its record expires after slot_lease,
// the time it keeps its leased slots while it cannot reach the store.
//
// A Redis that restarts empty has lost every record: the hash's "born"
// field starts a grace of slotGrace during which nothing is granted and
// the replicas' calls record what they hold again (each calls at least
// every IdleInterval), so slots already in flight are counted before any
// new one is given out.
//
// A replica asks for at most a small batch beyond what it uses (the
// dispatcher's slotBatch), and gives back what it does not use at its
// next call: slots follow demand across replicas within a call.

// slotGrace is how long a new slots hash grants nothing (see above).
const slotGrace = 2 * IdleInterval

// DefaultSlotLease is redis.slot_lease's default.
const DefaultSlotLease = 10 * time.Second

// slotKey is the hash of the shared cap of scope ("" the global one).
func (s *Store) slotKey(scope string) string {
	tag := s.keys[0][:len(s.keys[0])-len(":bucket")]
	if scope == "" {
		return tag + ":slots:global"
	}
	return tag + ":slots:rule:" + scope
}

// appendSlots adds dm's shared caps to a lease call's KEYS and ARGV,
// after the quotas': their count, the lease time, FreshDemand and the
// grace (µs), then per cap its cap, held, in use, want, waiting and most
// urgent level.
func (s *Store) appendSlots(keys []string, args []any, dm dispatch.Demand) ([]string, []any) {
	if len(dm.Slots) == 0 {
		return keys, args
	}
	keys = slices.Clip(keys) // never append into s.keys
	if len(dm.Quotas) == 0 {
		args = append(args, 0, 0) // an empty quotas part: the slots' follow it
	}
	args = append(args, len(dm.Slots), s.cfg.SlotLease.Microseconds(), FreshDemand.Microseconds(), slotGrace.Microseconds())
	for _, sd := range dm.Slots {
		keys = append(keys, s.slotKey(sd.Scope))
		args = append(args, sd.Cap, sd.Held, sd.InUse, sd.Want, sd.Waiting, sd.Best)
	}
	return keys, args
}

// slotGrants hands the reply's slot grants (its 9th value: {granted,
// target} per cap, in dm's order) to the dispatcher; the store keeps them
// for slot_lease from the call, so this replica's lease ends slot_lease
// after it sent the call (never later than the store's record).
func (s *Store) slotGrants(res []any, dm dispatch.Demand, sent time.Time) {
	if len(dm.Slots) == 0 || len(res) < 9 {
		return
	}
	sr, _ := res[8].([]any)
	grants := make([]dispatch.SlotGrant, 0, len(dm.Slots))
	for i, sd := range dm.Slots {
		if i >= len(sr) {
			break
		}
		pair, _ := sr[i].([]any)
		if len(pair) != 2 {
			continue
		}
		n, _ := pair[0].(int64)
		target, _ := pair[1].(int64)
		grants = append(grants, dispatch.SlotGrant{Scope: sd.Scope, N: int(n), Target: int(target)})
	}
	s.disp.GrantSlots(grants, sent.Add(s.cfg.SlotLease))
}

// slotLua is leaseScript's part for the shared caps (see the design
// above). It runs after the quotas: n (the hosts rules' count), nq (the
// quotas'), qa (the next ARGV), now are set.
const slotLua = `
local slots = {}
local ns = tonumber(ARGV[qa] or '0') or 0
if ns > 0 then
  local sttl, sfresh, sgrace = tonumber(ARGV[qa + 1]), tonumber(ARGV[qa + 2]), tonumber(ARGV[qa + 3])
  qa = qa + 4
  for i = 1, ns do
    local key = KEYS[3 + n + nq + i]
    local cap, held, inuse = tonumber(ARGV[qa]), tonumber(ARGV[qa + 1]), tonumber(ARGV[qa + 2])
    local swant, waiting, best = tonumber(ARGV[qa + 3]), tonumber(ARGV[qa + 4]), tonumber(ARGV[qa + 5])
    qa = qa + 6
    local base = math.max(held, inuse)
    local born = tonumber(redis.call('HGET', key, 'born') or '')
    if not born then
      born = now
      redis.call('HSET', key, 'born', string.format('%.0f', now))
    end
    local others, reserved, equal = 0, 0, 0
    local h = redis.call('HGETALL', key)
    for j = 1, #h, 2 do
      local f = h[j]
      if f ~= 'born' and f ~= ARGV[1] then
        local at, exp, oh, ow, ob = string.match(h[j + 1], '(%d+),(%d+),(%d+),(%d+),(%d+)')
        if (tonumber(exp) or 0) <= now then
          redis.call('HDEL', key, f)
        else
          others = others + (tonumber(oh) or 0)
          ow, ob = tonumber(ow) or 0, tonumber(ob) or 8
          if ow > 0 and now - (tonumber(at) or 0) <= sfresh then
            if ob < best then
              reserved = reserved + math.min(ow, cap)
            elseif ob == best then
              equal = equal + 1
            end
          end
        end
      end
    end
    local target = cap - others - reserved
    if equal > 0 then
      local fair = math.ceil(math.max(0, cap - reserved) / (equal + 1))
      if fair < target then target = fair end
    end
    if target < 0 then target = 0 end
    local g = 0
    if swant > 0 and now - born >= sgrace then
      g = math.max(0, math.min(base + swant, target) - base)
    end
    local mine = base + g
    if mine > 0 or waiting > 0 then
      redis.call('HSET', key, ARGV[1], string.format('%.0f,%.0f,%d,%d,%d', now, now + sttl, mine, waiting, best))
    else
      redis.call('HDEL', key, ARGV[1])
    end
    redis.call('PEXPIRE', key, math.floor(sttl / 1000) * 2 + 60000)
    slots[i] = {g, target}
  end
end
`
