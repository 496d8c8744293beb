package redis

import "github.com/redis/rueidis"

// Presence keys of a channel, in its hash slot: pm, a hash of client →
// member JSON; pz, a sorted set of client scored by when it expires (Redis
// time, ms); pu, a hash of user → members of that user (non-empty users
// only). Clients are HLEN pm, distinct users HLEN pu: counters, whatever
// the number of members. A member whose hub stops refreshing it expires,
// and whoever sweeps next (any hub refreshing the channel, or a read)
// removes it and publishes its leave.
//
// Joins and leaves go out on the channel's own pub/sub name, as
// publications do, so they arrive in order with them: "!j " or "!l "
// followed by the member JSON. A publication's payload begins with its
// epoch, [a-z0-9], never "!".

// presenceLib is the Lua every presence script shares.
const presenceLib = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function announce(name, sharded, payload)
  if sharded == '1' then redis.call('SPUBLISH', name, payload)
  else redis.call('PUBLISH', name, payload) end
end
local function user_of(m)
  local ok, d = pcall(cjson.decode, m)
  if ok and type(d) == 'table' and type(d.user) == 'string' then return d.user end
  return ''
end
local function add_user(pu, u)
  if u ~= '' then redis.call('HINCRBY', pu, u, 1) end
end
local function drop_user(pu, u)
  if u ~= '' and redis.call('HINCRBY', pu, u, -1) <= 0 then redis.call('HDEL', pu, u) end
end
-- sweep removes up to limit expired members and announces their leaves.
local function sweep(pm, pz, pu, now, limit, name, sharded)
  local dead = redis.call('ZRANGEBYSCORE', pz, '-inf', now, 'LIMIT', 0, limit)
  for _, c in ipairs(dead) do
    local m = redis.call('HGET', pm, c)
    redis.call('HDEL', pm, c)
    redis.call('ZREM', pz, c)
    if m then
      drop_user(pu, user_of(m))
      announce(name, sharded, '!l ' .. m)
    end
  end
  return #dead
end
`

// joinScript makes a client a member. KEYS: pm, pz, pu. ARGV: client,
// member JSON, expiry (ms from now), key TTL ms, pub/sub name, "1" for
// SPUBLISH, sweep limit. A client already present is updated without a
// join.
var joinScript = rueidis.NewLuaScript(presenceLib + `
local pm, pz, pu = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
sweep(pm, pz, pu, now, tonumber(ARGV[7]), ARGV[5], ARGV[6])
local old = redis.call('HGET', pm, ARGV[1])
redis.call('HSET', pm, ARGV[1], ARGV[2])
redis.call('ZADD', pz, now + tonumber(ARGV[3]), ARGV[1])
local u = user_of(ARGV[2])
if old then
  local ou = user_of(old)
  if ou ~= u then drop_user(pu, ou) add_user(pu, u) end
else
  add_user(pu, u)
  announce(ARGV[5], ARGV[6], '!j ' .. ARGV[2])
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return old and 0 or 1
`)

// leaveScript ends a client's membership. KEYS: pm, pz, pu. ARGV: client,
// pub/sub name, "1" for SPUBLISH.
var leaveScript = rueidis.NewLuaScript(presenceLib + `
local pm, pz, pu = KEYS[1], KEYS[2], KEYS[3]
local m = redis.call('HGET', pm, ARGV[1])
if not m then return 0 end
redis.call('HDEL', pm, ARGV[1])
redis.call('ZREM', pz, ARGV[1])
drop_user(pu, user_of(m))
announce(ARGV[2], ARGV[3], '!l ' .. m)
return 1
`)

// refreshScript keeps one hub's members of several channels present and
// sweeps those channels: one call per batch, not per member. KEYS: pm, pz,
// pu of each channel in turn. ARGV: expiry (ms from now), key TTL ms,
// sweep limit, "1" for SPUBLISH, then per channel: its pub/sub name, the
// number n of its members, and their n client ids. It only moves the
// expiry of members Redis still holds (ZADD XX): one that left meanwhile
// (the batch was read before its Leave ran) must not come back. It returns
// {swept, channel index, client, ...}: the members it did not find (swept
// while their hub was slow), which the engine joins again if they are
// still its own.
var refreshScript = rueidis.NewLuaScript(presenceLib + refreshBody)

const refreshBody = `
local now = now_ms()
local exp, keyttl, limit, sharded = now + tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local a, swept, out = 5, 0, {0}
for k = 1, #KEYS, 3 do
  local pm, pz, pu = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local name, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for i = 1, n do
    local c = ARGV[a]
    a = a + 1
    if redis.call('ZADD', pz, 'XX', 'CH', exp, c) == 0 and not redis.call('ZSCORE', pz, c) then
      out[#out + 1] = tostring((k - 1) / 3)
      out[#out + 1] = c
    end
  end
  swept = swept + sweep(pm, pz, pu, now, limit, name, sharded)
  if n > 0 then
    for i = 0, 2 do redis.call('PEXPIRE', KEYS[k + i], keyttl) end
  end
end
out[1] = swept
return out
`

// membersScript sweeps a channel and returns its members' JSON. KEYS: pm,
// pz, pu. ARGV: sweep limit, pub/sub name, "1" for SPUBLISH.
var membersScript = rueidis.NewLuaScript(presenceLib + `
sweep(KEYS[1], KEYS[2], KEYS[3], now_ms(), tonumber(ARGV[1]), ARGV[2], ARGV[3])
return redis.call('HVALS', KEYS[1])
`)

// statsScript sweeps a channel and returns {clients, users}: two HLENs,
// never a read of the members. KEYS: pm, pz, pu. ARGV as membersScript's.
var statsScript = rueidis.NewLuaScript(presenceLib + `
sweep(KEYS[1], KEYS[2], KEYS[3], now_ms(), tonumber(ARGV[1]), ARGV[2], ARGV[3])
return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[3])}
`)
