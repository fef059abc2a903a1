-- effect-queue-manager: the shared scheduling state of one prefix, changed only by these
-- functions. Each runs atomically in Redis, so every decision (the per-user check, the global
-- cap, the hand-off to a waiter) is one step. Time is Redis's own (TIME).
--
-- Every call declares the same eight keys, all under one hash tag (one cluster slot):
--   KEYS[1] h        hash  epoch, token (fencing counter), cap (maxTotal), dq (default
--                          maxUserQueue), turn (order counter), acquired, refused:<reason>,
--                          layout, about
--   KEYS[2] held     hash  user -> slots held (only while above zero)
--   KEYS[3] leases   zset  lease id -> expiry (ms)
--   KEYS[4] tickets  hash  request id -> 'w' bypass(0|1) seq(16 hex) channel   while it waits
--                                      'a' token '\t' active                  once admitted
--   KEYS[5] texp     zset  waiting request id -> expiry (ms)
--   KEYS[6] lines    zset  every waiting request, all scores 0, ordered by member:
--                          hex8(#user) .. user .. seq(16 hex) .. id, so one user's requests are a
--                          range in arrival order (first-in first-out)
--   KEYS[7] ready    zset  user -> turn: users whose first waiter fits their own limit and waits
--                          only for the global cap, in round-robin order
--   KEYS[8] limits   hash  user -> limit '\t' seq: the limit of a user with waiters, and when its
--                          line began (while, and only while, it has waiters)
--
-- Users are encoded by the caller (n<number> or s<string>). Lease and request ids are
-- process:sequence:user; an admitted request keeps its id as its lease's.
--
-- Invariants every function keeps (checked against the in-memory store by the tests):
-- * held[u] = the number of leases of u; ZCARD leases = the slots held in all.
-- * a user is in ready exactly when its first waiter fits its own limit (after each call,
--   ready is empty or the global cap is reached).
-- * an expired request is never admitted: the purge removes expired requests before it gives
--   back expired leases, and an admitted request's lease expires when the request would have.
-- * a call whose keys hold a wrong type, or another layout's state, fails before it writes.
-- * nothing survives from one call to the next but the keys: begin sets every local below.
--
-- ARGV of every call: nonce (the epoch to start if the state is new or lost), leaseMs,
-- channel (where this process hears of its admitted requests), cap and dq (this process's
-- configuration, used only to start a new state), then the call's own arguments. Every reply
-- begins with epoch, cap, dq.

local LAYOUT = '3'
-- longer than 64 bytes, so that h is a hashtable from its start rather than a listpack
local ABOUT = 'effect-queue-manager: slot counts, leases, waiting requests and fairness of one prefix; see its README'
local TYPES = { 'hash', 'hash', 'zset', 'hash', 'zset', 'zset', 'zset', 'hash' }

-- set by begin for the call running now
local H, HELD, LEASES, TICKETS, TEXP, LINES, READY, LIMITS
local NOW, EPOCH, CAP, DQ, leaseMs, channel
-- the fencing counter and the count of grants, read by begin and written back by finish (one
-- command each per call, not per grant); whether anyone may wait (else lines, their limits, the
-- turn order and the requests' expiry are empty: nothing to look at)
local TOKEN, ACQUIRED, anyWaiting, grantedBefore

-- a whole number as text: Lua writes numbers above 10^14 as 1e+15, which reads back as 1
local function fmt(n) return string.format('%.0f', n) end

local function foreign(key, what)
  error({ err = 'ERR ' .. key .. ' holds ' .. what .. ', written by another version of effect-queue-manager: '
    .. 'give each version a prefix of its own, or delete these keys once that version has stopped' })
end

local function begin(KEYS, ARGV)
  for i = 1, #TYPES do
    local found = redis.call('TYPE', KEYS[i]).ok
    if found ~= 'none' and found ~= TYPES[i] then
      error({ err = 'WRONGTYPE key ' .. KEYS[i] .. ' holds a ' .. found .. ', the queue store needs a ' .. TYPES[i] })
    end
  end
  H, HELD, LEASES, TICKETS, TEXP, LINES, READY, LIMITS = unpack(KEYS, 1, 8)
  local clock = redis.call('TIME')
  NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  leaseMs, channel = tonumber(ARGV[2]), ARGV[3]
  local state = redis.call('HMGET', H, 'epoch', 'layout', 'cap', 'dq', 'seq', 'token', 'acquired')
  if state[5] or (state[2] and state[2] ~= LAYOUT) then foreign(H, 'an older layout') end
  if state[1] then
    EPOCH, CAP, DQ = state[1], tonumber(state[3]), tonumber(state[4])
    TOKEN, ACQUIRED = tonumber(state[6]), tonumber(state[7])
    grantedBefore, anyWaiting = ACQUIRED, redis.call('HLEN', LIMITS) > 0
    return
  end
  -- a new state, or a lost one (a restart without persistence, a flush): what is left without
  -- its hash cannot be trusted. The fencing counter starts at Redis's time in microseconds, above
  -- every token of an earlier state (fewer than one grant per microsecond can have been made)
  redis.call('DEL', HELD, LEASES, TICKETS, TEXP, LINES, READY, LIMITS)
  EPOCH, CAP, DQ = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
  TOKEN, ACQUIRED, anyWaiting, grantedBefore = NOW * 1000, 0, false, 0
  redis.call('HSET', H, 'epoch', EPOCH, 'token', fmt(TOKEN), 'cap', CAP, 'dq', DQ, 'turn', 0,
    'acquired', 0, 'layout', LAYOUT, 'about', ABOUT)
end

-- writes back what begin read and the call changed
local function finish()
  if ACQUIRED ~= grantedBefore then redis.call('HSET', H, 'token', fmt(TOKEN), 'acquired', ACQUIRED) end
end

local function userOf(id) return string.match(id, '^[^:]*:[^:]*:(.*)$') end

-- what every member of u's line begins with
local function lineStart(u) return string.format('%08x', #u) .. u end

local function headOf(u)
  local start = lineStart(u)
  local member = redis.call('ZRANGEBYLEX', LINES, '[' .. start, '(' .. start .. '\255', 'LIMIT', 0, 1)[1]
  return member, string.sub(member, #start + 17)
end

local function queuedOf(u)
  local start = lineStart(u)
  return redis.call('ZLEXCOUNT', LINES, '[' .. start, '(' .. start .. '\255')
end

local function heldOf(u) return tonumber(redis.call('HGET', HELD, u) or '0') end

local function total() return redis.call('ZCARD', LEASES) end

-- the limit of u's line, or nil when u has no waiters
local function lineLimit(u)
  if not anyWaiting then return nil end
  local entry = redis.call('HGET', LIMITS, u)
  if not entry then return nil end -- (redis.call gives false for a missing field)
  return tonumber(string.match(entry, '^(%d+)\t'))
end

-- whether u's first waiter (it has one) fits u's own limit
local function headFits(u)
  local limit = lineLimit(u)
  if limit == 0 or heldOf(u) < limit then return true end
  local _, id = headOf(u)
  return string.sub(redis.call('HGET', TICKETS, id), 2, 2) == '1' -- a bypass request fits a full user
end

local function markReady(u) redis.call('ZADD', READY, 'NX', redis.call('HINCRBY', H, 'turn', 1), u) end

-- u's first waiter changed, or its count fell: u takes a turn exactly while that waiter fits
local function refresh(u)
  if not lineLimit(u) then
    redis.call('ZREM', READY, u)
  elseif headFits(u) then
    markReady(u)
  else
    redis.call('ZREM', READY, u)
  end
end

-- takes a slot for u under lease id, expiring at expiry (text); returns u's count and the token
local function grant(u, id, expiry)
  redis.call('ZADD', LEASES, expiry, id)
  local active = redis.call('HINCRBY', HELD, u, 1)
  ACQUIRED, TOKEN = ACQUIRED + 1, TOKEN + 1
  return active, TOKEN
end

-- gives lease id back without admitting anyone; returns its user and the user's count left, or nil
local function drop(id)
  if redis.call('ZREM', LEASES, id) == 0 then return nil end
  redis.call('HDEL', TICKETS, id) -- the record of an admitted request
  local u = userOf(id)
  local left = redis.call('HINCRBY', HELD, u, -1)
  if left <= 0 then
    redis.call('HDEL', HELD, u)
    left = 0
  end
  return u, left
end

-- admits u's first waiter (u is ready and the cap has room) and wakes its process
local function admitHead(u)
  local member, id = headOf(u)
  local info = redis.call('HGET', TICKETS, id)
  -- the lease expires when the request would have: its process renews it from then on
  local expiry = redis.call('ZSCORE', TEXP, id)
  redis.call('ZREM', LINES, member)
  redis.call('ZREM', TEXP, id)
  if queuedOf(u) == 0 then redis.call('HDEL', LIMITS, u) end
  local active, token = grant(u, id, expiry)
  redis.call('HSET', TICKETS, id, 'a' .. fmt(token) .. '\t' .. active)
  -- pcall: a wake-up refused (an ACL changed since the start probe) must not undo the call; the
  -- waiter then hears of its slot at its next renewal round
  redis.pcall('PUBLISH', string.sub(info, 19), active .. ' ' .. fmt(token) .. ' ' .. id)
end

-- hands free capacity to the ready users, one slot per turn, in turn order
local function dispatch()
  while anyWaiting and (CAP == 0 or total() < CAP) do
    local u = redis.call('ZRANGE', READY, 0, 0)[1]
    if not u then return end
    redis.call('ZREM', READY, u)
    admitHead(u)
    if lineLimit(u) and headFits(u) then markReady(u) end
  end
end

-- removes a waiting request (its record is info) from its line, without admitting anyone
local function unqueue(id, info)
  local u = userOf(id)
  redis.call('ZREM', LINES, lineStart(u) .. string.sub(info, 3, 18) .. id)
  redis.call('HDEL', TICKETS, id)
  redis.call('ZREM', TEXP, id)
  if queuedOf(u) == 0 then redis.call('HDEL', LIMITS, u) end
  refresh(u)
end

-- expired requests leave first (so none is admitted), then expired leases go back
local function purge()
  for _, id in ipairs(anyWaiting and redis.call('ZRANGEBYSCORE', TEXP, '-inf', NOW) or {}) do
    local info = redis.call('HGET', TICKETS, id)
    if info and string.sub(info, 1, 1) == 'w' then unqueue(id, info) else redis.call('ZREM', TEXP, id) end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', NOW)) do
    local u = drop(id)
    if lineLimit(u) and headFits(u) then markReady(u) end
  end
  dispatch()
end

local function acquire(u, limit, flags, id, dq, maxWaiting)
  -- the caller computed the limit under another default: it must compute it again
  if dq ~= DQ then return { 3, DQ } end
  local bypass, wait = flags % 2 == 1, flags >= 2
  local active, hasLine = heldOf(u), lineLimit(u) ~= nil
  local fitsUser = bypass or limit == 0 or active < limit
  local fitsTotal = CAP == 0 or total() < CAP
  if fitsUser and fitsTotal and not (wait and hasLine) then
    local held, token = grant(u, id, fmt(NOW + leaseMs))
    return { 1, held, token }
  end
  if not wait then
    if fitsUser then
      redis.call('HINCRBY', H, 'refused:global', 1)
      return { 0, 'global', total(), CAP }
    end
    redis.call('HINCRBY', H, 'refused:user', 1)
    return { 0, 'user', active, limit }
  end
  local queued = hasLine and queuedOf(u) or 0
  if maxWaiting > 0 and queued >= maxWaiting then
    redis.call('HINCRBY', H, 'refused:waiting', 1)
    return { 0, 'waiting', queued, maxWaiting }
  end
  anyWaiting = true
  local seq = string.format('%016x', redis.call('HINCRBY', H, 'turn', 1))
  redis.call('ZADD', LINES, 0, lineStart(u) .. seq .. id)
  redis.call('HSET', TICKETS, id, 'w' .. (bypass and '1' or '0') .. seq .. channel)
  redis.call('ZADD', TEXP, fmt(NOW + leaseMs), id)
  if not hasLine then
    -- the first waiter sets its line's limit; it waits only for the cap when it fits its own
    redis.call('HSET', LIMITS, u, fmt(limit) .. '\t' .. seq)
    if fitsUser then markReady(u) end
  end
  return { 2, queued + 1 }
end

local function release(id)
  local u, left = drop(id)
  if not u then return -1 end
  if lineLimit(u) and headFits(u) then markReady(u) end
  dispatch()
  return left
end

-- removes a waiting request, or gives back the slot it (or a plain acquisition) was granted
local function leave(id)
  local info = redis.call('HGET', TICKETS, id)
  if info and string.sub(info, 1, 1) == 'w' then
    unqueue(id, info)
    dispatch()
    return 1
  end
  return release(id) >= 0 and 2 or 0
end

local function reply(result)
  local out = { EPOCH, CAP, DQ }
  for i = 1, #result do out[#out + 1] = result[i] end
  return out
end

local calls = {}

-- acquisitions ('a', user, limit, flags (1 bypass + 2 wait), id, dq, maxWaiting: the user's
-- waiting bound) and releases ('r', id), in order. Per acquisition: {1, active, token} granted,
-- {0, reason, active, limit} refused, {2, waiting} queued, {3, dq} computed under another
-- default. Per release: the user's count left, or -1 if the lease was not held.
function calls.batch(ARGV)
  local results, i = {}, 6
  while i <= #ARGV do
    if ARGV[i] == 'a' then
      results[#results + 1] = acquire(ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4],
        tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6]))
      i = i + 7
    else
      results[#results + 1] = release(ARGV[i + 1])
      i = i + 2
    end
  end
  return results
end

-- renews leases, then waiting requests: ARGV count of leases, lease ids, request ids. Per lease
-- 1 renewed or 0 gone; per request 2 renewed (still waiting), {3, active, token} admitted (its
-- lease renewed), or 0 gone.
function calls.renew(ARGV)
  local leases, results, expiry = tonumber(ARGV[6]), {}, fmt(NOW + leaseMs)
  for i = 7, #ARGV do
    local id, result = ARGV[i], 0
    local info = i >= 7 + leases and redis.call('HGET', TICKETS, id)
    if info and string.sub(info, 1, 1) == 'w' then
      redis.call('ZADD', TEXP, 'XX', expiry, id)
      result = 2
    elseif redis.call('ZSCORE', LEASES, id) then
      redis.call('ZADD', LEASES, 'XX', expiry, id)
      result = 1
      if info then
        local token, active = string.match(info, '^a(%d+)\t(%d+)$')
        result = { 3, tonumber(active), tonumber(token) }
      end
    end
    results[#results + 1] = result
  end
  return results
end

-- gives up requests or slots: per id 1 (left its line), 2 (its slot given back) or 0 (gone)
function calls.leave(ARGV)
  local results = {}
  for i = 6, #ARGV do results[#results + 1] = leave(ARGV[i]) end
  return results
end

-- ARGV 'user', user: {the user's slots, its requests waiting, slots held in all}; 'all':
-- {counts (user, n, ...), in flight, waiting, waiting users, {acquired, refused:user,
-- refused:global, refused:waiting}}; 'waiting': the users with waiters
function calls.read(ARGV)
  if ARGV[6] == 'user' then
    local u = ARGV[7]
    return { heldOf(u), lineLimit(u) and queuedOf(u) or 0, total() }
  end
  if ARGV[6] == 'waiting' then return redis.call('HKEYS', LIMITS) end
  return { redis.call('HGETALL', HELD), total(), redis.call('ZCARD', TEXP), redis.call('HLEN', LIMITS),
    redis.call('HMGET', H, 'acquired', 'refused:user', 'refused:global', 'refused:waiting') }
end

-- ARGV cap, dq, then user, limit for every user with waiters (their limits under dq): sets the
-- configuration and the lines' limits, then admits who now fits, taking the lines in the order
-- they began. Returns {1}, or {0, users...} changing nothing when users with waiters are missing.
function calls.configure(ARGV)
  local given = {}
  for i = 8, #ARGV, 2 do given[ARGV[i]] = ARGV[i + 1] end
  local missing, lines = {}, {}
  local entries = redis.call('HGETALL', LIMITS)
  for i = 1, #entries, 2 do
    local u = entries[i]
    if given[u] then
      lines[#lines + 1] = { u, string.match(entries[i + 1], '\t(.*)$') }
    else
      missing[#missing + 1] = u
    end
  end
  if #missing > 0 then return { 0, unpack(missing) } end
  CAP, DQ = tonumber(ARGV[6]), tonumber(ARGV[7])
  redis.call('HSET', H, 'cap', CAP, 'dq', DQ)
  table.sort(lines, function(a, b) return a[2] < b[2] end)
  for _, line in ipairs(lines) do
    redis.call('HSET', LIMITS, line[1], given[line[1]] .. '\t' .. line[2])
    refresh(line[1])
  end
  dispatch()
  return { 1 }
end

-- every command the calls above run (PUBLISH, under pcall, is probed apart), each once with
-- arguments that cannot fail on KEYS[1] and KEYS[2], a hash and a sorted set of the probe's own
-- (deleted first, so that their types are right, and after): {command, error} for each the ACL
-- user may not run. Any other error (out of memory, a read-only replica) is for the calls to
-- meet. Touches no state.
local function probe(KEYS)
  local hash, zset = KEYS[1], KEYS[2]
  local tries = {
    { 'DEL', hash, zset }, { 'TYPE', hash }, { 'TIME' }, { 'HSET', hash, 'f', '1' }, { 'HGET', hash, 'f' },
    { 'HMGET', hash, 'f' }, { 'HGETALL', hash }, { 'HINCRBY', hash, 'f', 1 }, { 'HKEYS', hash }, { 'HLEN', hash },
    { 'HDEL', hash, 'f' }, { 'ZADD', zset, 0, 'm' }, { 'ZCARD', zset }, { 'ZSCORE', zset, 'm' },
    { 'ZRANGE', zset, 0, 0 }, { 'ZRANGEBYSCORE', zset, '-inf', 0 }, { 'ZRANGEBYLEX', zset, '-', '+' },
    { 'ZLEXCOUNT', zset, '-', '+' }, { 'ZREM', zset, 'm' }, { 'DEL', hash, zset }
  }
  local refused, seen = {}, {}
  for _, try in ipairs(tries) do
    local answer = redis.pcall(unpack(try))
    local denied = type(answer) == 'table' and answer.err
      and (string.find(answer.err, "can't run this command", 1, true) or string.find(answer.err, 'NOPERM', 1, true))
    if denied and not seen[try[1]] then
      seen[try[1]] = true
      refused[#refused + 1] = { try[1], answer.err }
    end
  end
  return refused
end

-- runs call name: the purge first, then the call; every reply begins with epoch, cap, dq. What
-- begin read is written back also when the call fails midway (Redis keeps what it did). The
-- probe runs alone: it reads no state and declares keys of its own
local function run(name, KEYS, ARGV)
  if name == 'probe' then return probe(KEYS) end
  begin(KEYS, ARGV)
  local ok, result = pcall(function()
    purge()
    return reply(calls[name](ARGV))
  end)
  finish()
  if not ok then error(result, 0) end
  return result
end
