"""The Lua scripts of the Redis queue: each one step that must be atomic.

Redis runs a script without interleaving other commands and writes its effects to the AOF as
one MULTI/EXEC, so a crash never leaves half a commit or half a settle behind. Arguments come
as one JSON document (``ARGV[1]``); every number in it is sent as a string.
"""

from __future__ import annotations

# Move due retries from the delayed set back onto the stream (new entry, same fields).
_PROMOTE = """
local function promote(stream, delayed, retry, now, limit)
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local packed = redis.call('HGET', retry, id)
    if packed then
      redis.call('XADD', stream, '*', unpack(cjson.decode(packed)))
      redis.call('HDEL', retry, id)
    end
    redis.call('ZREM', delayed, id)
  end
end
local function ensure_group(stream, group)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  else
    pcall(redis.call, 'XGROUP', 'CREATE', stream, group, '0')
  end
end
local function dead_consumers(stream, group, consumers, me, dead_before)
  local found = {}
  local summary = redis.call('XPENDING', stream, group)
  if summary[4] then
    for _, c in ipairs(summary[4]) do
      if c[1] ~= me then
        local beat = redis.call('ZSCORE', consumers, c[1])
        if (not beat) or tonumber(beat) < dead_before then found[#found + 1] = c end
      end
    end
  end
  return found
end
local function undelivered_entries(stream, group, cap)
  local groups = redis.call('XINFO', 'GROUPS', stream)
  local last = '0-0'
  for _, g in ipairs(groups) do
    local name, delivered
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then delivered = g[i + 1] end
    end
    if name == group then last = delivered end
  end
  return redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', cap)
end
local function undelivered(stream, group, cap)
  return #undelivered_entries(stream, group, cap)
end
"""

# The queue's keys: stream, delayed zset, retry hash, consumers zset, leases zset (entry id ->
# lease deadline). A lease is given up when its deadline passes or its consumer stops beating.

# ARGV: group, me, limit, now, lease_for (seconds), dead_before
LEASE = (
    _PROMOTE
    + """
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local limit, now, dead_before = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[6])
ensure_group(stream, group)
promote(stream, KEYS[2], KEYS[3], now, limit)
local claimed = {}
local function claim(ids)
  if #ids == 0 then return end
  for _, e in ipairs(redis.call('XCLAIM', stream, group, me, 0, unpack(ids))) do
    if e then claimed[#claimed + 1] = e end
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do redis.call('ZREM', KEYS[5], id) end
claim(expired)
for _, c in ipairs(dead_consumers(stream, group, KEYS[4], me, dead_before)) do
  if #claimed >= limit then break end
  local ids = {}
  for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', limit - #claimed, c[1])) do
    ids[#ids + 1] = p[1]
  end
  claim(ids)
end
if #claimed < limit then
  local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', limit - #claimed, 'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do claimed[#claimed + 1] = e end
  end
end
local deadline = tonumber(now) + tonumber(ARGV[5])
for _, e in ipairs(claimed) do redis.call('ZADD', KEYS[5], deadline, e[1]) end
return claimed
"""
)

# ARGV: group, me, now, dead_before. Returns the due time (a string, seconds) of the earliest
# item, or false when nothing waits. An item waiting to be read is due since it was added.
NEXT_DUE = (
    _PROMOTE
    + """
local stream, group, me, now = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
ensure_group(stream, group)
promote(stream, KEYS[2], KEYS[3], now, 1000)
-- due since it was added: the time in its entry id
local first = undelivered_entries(stream, group, 1)
if #first > 0 then return string.format('%.3f', tonumber(string.match(first[1][1], '^(%d+)')) / 1000) end
if #dead_consumers(stream, group, KEYS[4], me, tonumber(ARGV[4])) > 0 then return ARGV[4] end
local best = nil
for _, key in ipairs({KEYS[5], KEYS[2]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 and (best == nil or tonumber(first[2]) < best) then best = tonumber(first[2]) end
end
if best == nil then return false end
return string.format('%.6f', best)
"""
)

# ARGV: group, me, now, dead_before, cap
READY_COUNT = (
    _PROMOTE
    + """
local stream, group, me, now = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local cap = tonumber(ARGV[5])
ensure_group(stream, group)
promote(stream, KEYS[2], KEYS[3], now, cap)
local count = undelivered(stream, group, cap) + redis.call('ZCOUNT', KEYS[5], '-inf', now)
if count < cap then
  for _, c in ipairs(dead_consumers(stream, group, KEYS[4], me, tonumber(ARGV[4]))) do
    count = count + tonumber(c[2])
  end
end
return math.min(count, cap)
"""
)

# KEYS: stream, delayed, retry hash, sink, leases. ARGV[1]: {group, me, done: [id], retries: [[id, due,
# attempts]], dead: [[id, json]], logs: [json]}. Only entries still leased to ``me`` are settled:
# an entry another worker claimed meanwhile is that worker's to settle.
SETTLE = """
local a = cjson.decode(ARGV[1])
local stream = KEYS[1]
local function take(id)
  if #redis.call('XPENDING', stream, a.group, id, id, 1, a.me) == 0 then return false end
  redis.call('XACK', stream, a.group, id)
  redis.call('ZREM', KEYS[5], id)
  return true
end
local settled = 0
for _, id in ipairs(a.done) do
  if take(id) then redis.call('XDEL', stream, id); settled = settled + 1 end
end
for _, r in ipairs(a.retries) do
  local id = r[1]
  local entry = redis.call('XRANGE', stream, id, id)
  if take(id) then
    if #entry > 0 then
      local fields = entry[1][2]
      for i = 1, #fields, 2 do
        if fields[i] == 'a' then fields[i + 1] = r[3] end
      end
      redis.call('HSET', KEYS[3], id, cjson.encode(fields))
      redis.call('ZADD', KEYS[2], r[2], id)
    end
    redis.call('XDEL', stream, id)
    settled = settled + 1
  end
end
for _, d in ipairs(a.dead) do
  if take(d[1]) then
    redis.call('XADD', KEYS[4], '*', 'k', 'dead', 'd', d[2])
    redis.call('XDEL', stream, d[1])
    settled = settled + 1
  end
end
for _, l in ipairs(a.logs) do redis.call('XADD', KEYS[4], '*', 'k', 'log', 'd', l) end
return settled
"""

# ARGV[1]: {me, lock_ms, now, dedup_s, profile_ttl, locks: [key], mids: [[dedup key, message id]],
# profiles: [[anonymous id, json]], deliveries: [[integration, message id, mapping, first, event]],
# logs: [[message id, json]], dead: [json] (unprocessable events, to the sink), acks: [[stream, id]],
# seen, profile, queue, sink, integrations, wake (key prefixes)}.
# Fenced by the shard locks: a processor that lost a shard commits nothing. Dedup is SET NX, so
# two processors never both enqueue one messageId.
COMMIT = """
local a = cjson.decode(ARGV[1])
for _, k in ipairs(a.locks) do
  if redis.call('GET', k) ~= a.me then return redis.error_reply('DATAFLY_LOST_SHARD ' .. k) end
end
for _, k in ipairs(a.locks) do redis.call('PEXPIRE', k, a.lock_ms) end
local fresh = {}
local accepted = 0
for _, m in ipairs(a.mids) do
  if redis.call('SET', a.seen .. m[1], a.now, 'NX', 'EX', a.dedup_s) then
    fresh[m[2]] = true
    accepted = accepted + 1
  end
end
for _, d in ipairs(a.dead) do redis.call('XADD', a.sink, '*', 'k', 'dead', 'd', d) end
for _, p in ipairs(a.profiles) do
  redis.call('SET', a.profile .. p[1], p[2], 'EX', a.profile_ttl)
end
local touched = {}
for _, d in ipairs(a.deliveries) do
  if fresh[d[2]] then
    local q = a.queue .. d[1]
    if not touched[d[1]] then
      touched[d[1]] = true
      if redis.call('EXISTS', q) == 0 then redis.call('XGROUP', 'CREATE', q, 'delivery', '0', 'MKSTREAM') end
      redis.call('SADD', a.integrations, d[1])
    end
    redis.call('XADD', q, '*', 'm', d[2], 'p', d[3], 'f', d[4], 'e', d[5], 'a', '0', 't', a.now)
  end
end
for _, l in ipairs(a.logs) do
  if fresh[l[1]] then redis.call('XADD', a.sink, '*', 'k', 'log', 'd', l[2]) end
end
for _, e in ipairs(a.acks) do
  redis.call('XACK', e[1], 'processors', e[2])
  redis.call('XDEL', e[1], e[2])
end
for iid, _ in pairs(touched) do redis.call('PUBLISH', a.wake .. iid, '1') end
return accepted
"""

# ARGV[1]: {me, now, dead_before, ttl, shards, offset, procs, stream}: shard k is ``<stream>k``, its lock ``<stream>k:owner``;: keep a fair share of
# the inbound shards (ceil(shards / live processors)), renew their locks, release the excess and
# take free ones, claiming what their previous owner left pending. Returns the shards owned.
BALANCE = """
local a = cjson.decode(ARGV[1])
redis.call('ZADD', a.procs, a.now, a.me)
redis.call('ZREMRANGEBYSCORE', a.procs, '-inf', '(' .. a.dead_before)
local live = math.max(1, redis.call('ZCARD', a.procs))
local shards = tonumber(a.shards)
local target = math.ceil(shards / live)
local owned = {}
for k = 0, shards - 1 do
  local lock = a.stream .. k .. ':owner'
  if redis.call('GET', lock) == a.me then
    if #owned < target then
      redis.call('PEXPIRE', lock, a.ttl)
      owned[#owned + 1] = k
    else
      redis.call('DEL', lock)
    end
  end
end
for i = 0, shards - 1 do
  if #owned >= target then break end
  local k = (tonumber(a.offset) + i) % shards
  local lock = a.stream .. k .. ':owner'
  if redis.call('SET', lock, a.me, 'NX', 'PX', a.ttl) then
    owned[#owned + 1] = k
    local stream = a.stream .. k
    if redis.call('EXISTS', stream) == 0 then
      redis.call('XGROUP', 'CREATE', stream, 'processors', '0', 'MKSTREAM')
    else
      pcall(redis.call, 'XGROUP', 'CREATE', stream, 'processors', '0')
    end
    local cursor = '0-0'
    repeat
      cursor = redis.call('XAUTOCLAIM', stream, 'processors', a.me, 0, cursor, 'COUNT', 1000)[1]
    until cursor == '0-0'
  end
end
return owned
"""

# ARGV: me. Give up every shard this process holds (a clean stop hands them over at once).
RELEASE = """
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 1
"""

# KEYS: bucket. ARGV: rate (tokens/s), capacity, count, now. Returns 0 when allowed, else the
# seconds to wait (as a string). One bucket shared by every gateway.
TAKE_TOKENS = """
local rate, capacity, count, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if count <= tokens then tokens = tokens - count else wait = (count - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""
