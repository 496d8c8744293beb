package redis

import "github.com/redis/rueidis"

// publishScript appends one publication. KEYS: meta hash, history stream.
// ARGV: data, a fresh epoch (used only if the channel is new), history
// size (0: keep none), history TTL ms, state TTL ms, the pub/sub channel,
// "1" for SPUBLISH. Returns {epoch, offset, time ms}.
//
// The meta hash holds e (epoch), n (latest offset), t (latest time) and
// c (when next to trim history by time).
// When it is missing the store has lost the channel (or never had it): a
// new epoch begins at offset 1, and any stray history is dropped. Time is
// Redis's own (TIME), never behind the channel's previous publication, so
// one clock orders every hub's publications and trims them.
//
// Lua.Exec sends EVALSHA and, when Redis does not hold the script (a
// restart, SCRIPT FLUSH), EVAL: the script did not run, so that retry
// cannot store a publication twice.
var publishScript = rueidis.NewLuaScript(`
local meta, hist = KEYS[1], KEYS[2]
local size, ttl, statettl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local m = redis.call('HMGET', meta, 'e', 't', 'c')
local epoch = m[1]
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', hist)
  redis.call('HSET', meta, 'e', epoch, 'n', 0)
end
local last = tonumber(m[2]) or 0
if now < last then now = last end
local off = redis.call('HINCRBY', meta, 'n', 1)
if size > 0 then
  redis.call('XADD', hist, 'MAXLEN', size, off .. '-0', 't', now, 'd', ARGV[1])
end
-- Entries are in time order: drop the expired prefix, a batch at a time.
-- Reads hide expired entries themselves, so the stream is trimmed by time
-- at most once a second per channel (c: when next to look), and then the
-- oldest entry alone tells whether there is anything to drop; nearly
-- always there is not (docs/benchmarks.md: Redis CPU per publish).
local check = tonumber(m[3]) or 0
if size > 0 and now >= check then
  local cutoff = now - ttl
  local oldest = redis.call('XRANGE', hist, '-', '+', 'COUNT', 1)
  if oldest[1] and tonumber(oldest[1][2][2]) < cutoff then
    while true do
      local batch = redis.call('XRANGE', hist, '-', '+', 'COUNT', 64)
      local keep = nil
      for _, e in ipairs(batch) do
        if tonumber(e[2][2]) >= cutoff then keep = e[1] break end
      end
      if keep then redis.call('XTRIM', hist, 'MINID', keep) break end
      if #batch == 0 then break end
      for _, e in ipairs(batch) do redis.call('XDEL', hist, e[1]) end
    end
  end
  redis.call('HSET', meta, 't', now, 'c', now + 1000)
else
  redis.call('HSET', meta, 't', now)
end
if size > 0 then
  redis.call('PEXPIRE', hist, ttl)
end
redis.call('PEXPIRE', meta, statettl)
local payload = epoch .. ' ' .. off .. ' ' .. now .. ' ' .. ARGV[1]
if ARGV[7] == '1' then
  redis.call('SPUBLISH', ARGV[6], payload)
else
  redis.call('PUBLISH', ARGV[6], payload)
end
return {epoch, off, now}
`)

// historyScript reads a channel without writing. KEYS: meta hash, history
// stream. ARGV: after, limit (negative: all), history TTL ms. Returns
// {epoch, latest, oldest, id1, time1, data1, id2, …}; epoch is "" (and
// latest 0, oldest 1) when the store does not hold the channel.
var historyScript = rueidis.NewLuaScript(`
local meta, hist = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'e', 'n')
if not m[1] then return {'', 0, 1} end
local latest = tonumber(m[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local cutoff = now - tonumber(ARGV[3])
local oldest = latest + 1
local start = '-'
while true do
  local batch = redis.call('XRANGE', hist, start, '+', 'COUNT', 64)
  if #batch == 0 then break end
  local found = false
  for _, e in ipairs(batch) do
    if tonumber(e[2][2]) >= cutoff then
      oldest = tonumber(string.match(e[1], '^(%d+)'))
      found = true
      break
    end
  end
  if found then break end
  start = '(' .. batch[#batch][1]
end
local out = {m[1], latest, oldest}
local limit = tonumber(ARGV[2])
local from = math.max(tonumber(ARGV[1]) + 1, oldest)
if limit ~= 0 and from <= latest then
  local r
  if limit > 0 then
    r = redis.call('XRANGE', hist, from .. '-0', '+', 'COUNT', limit)
  else
    r = redis.call('XRANGE', hist, from .. '-0', '+')
  end
  for _, e in ipairs(r) do
    out[#out + 1] = e[1]
    out[#out + 1] = e[2][2]
    out[#out + 1] = e[2][4]
  end
end
return out
`)
