/**
 * The Lua scripts of the Redis store. Each runs atomically on the server, so every
 * decision (the per-user check, the global cap, the hand-off to a waiter) is one step,
 * and each caller operation is one round trip. Time is Redis's own (`TIME`).
 *
 * Keys, all under the prefix `P` (a hash tag, so one cluster slot holds them all):
 * - `P:counts`  hash   user -> slots held (an entry exists only while above zero)
 * - `P:leases`  zset   lease id -> expiry (ms); `P:owner` hash lease id -> user
 * - `P:line:U`  list   ticket ids of user U waiting, first-in first-out
 * - `P:tickets` hash   ticket id -> "bypass\tchannel\tleaseMillis\tuser"; `P:texp` zset ticket id -> expiry
 * - `P:wusers`  hash   user -> its per-user limit, while it has waiters
 * - `P:ready`   zset   users whose first waiter waits only for maxTotal, in turn order (`P:seq` the counter)
 * - `P:config`  hash   maxTotal; `P:stats` hash acquired / refused:<reason>
 * Users are encoded `n<number>` or `s<string>`, so 1 and "1" stay distinct.
 */

const prelude = `
local P = ARGV[1]
local COUNTS, LEASES, OWNER = P .. ':counts', P .. ':leases', P .. ':owner'
local TICKETS, TEXP, WUSERS = P .. ':tickets', P .. ':texp', P .. ':wusers'
local READY, SEQ, CONFIG, STATS = P .. ':ready', P .. ':seq', P .. ':config', P .. ':stats'
local function line(u) return P .. ':line:' .. u end
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function wrongType()
  local expected = { [COUNTS] = 'hash', [LEASES] = 'zset', [OWNER] = 'hash', [TICKETS] = 'hash', [TEXP] = 'zset',
    [WUSERS] = 'hash', [READY] = 'zset', [SEQ] = 'string', [CONFIG] = 'hash', [STATS] = 'hash' }
  for key, want in pairs(expected) do
    local got = redis.call('TYPE', key).ok
    if got ~= 'none' and got ~= want then
      return 'WRONGTYPE key ' .. key .. ' holds a ' .. got .. ', the queue store needs a ' .. want
    end
  end
  return nil
end

local function maxTotal() return tonumber(redis.call('HGET', CONFIG, 'maxTotal') or '0') end
local function count(u) return tonumber(redis.call('HGET', COUNTS, u) or '0') end
local function total() return redis.call('ZCARD', LEASES) end
local function split(info)
  local bypass, channel, ms, u = string.match(info, '^(%d)\\t([^\\t]*)\\t(%d+)\\t(.*)$')
  return bypass == '1', u, channel, tonumber(ms)
end

local function grant(u, id, leaseMs)
  redis.call('HINCRBY', COUNTS, u, 1)
  redis.call('ZADD', LEASES, NOW + leaseMs, id)
  redis.call('HSET', OWNER, id, u)
  redis.call('HINCRBY', STATS, 'acquired', 1)
end

local function drop(id)
  local u = redis.call('HGET', OWNER, id)
  if not u then return nil, 0 end
  redis.call('HDEL', OWNER, id)
  redis.call('ZREM', LEASES, id)
  local left = redis.call('HINCRBY', COUNTS, u, -1)
  if left <= 0 then redis.call('HDEL', COUNTS, u); left = 0 end
  return u, left
end

local function headFits(u)
  local head = redis.call('LINDEX', line(u), 0)
  if not head then return false end
  local bypass = split(redis.call('HGET', TICKETS, head))
  if bypass then return true end
  local limit = tonumber(redis.call('HGET', WUSERS, u) or '0')
  return limit == 0 or count(u) < limit
end

local function refreshReady(u)
  if redis.call('LLEN', line(u)) == 0 then
    redis.call('HDEL', WUSERS, u)
    redis.call('ZREM', READY, u)
  elseif headFits(u) then
    redis.call('ZADD', READY, 'NX', redis.call('INCR', SEQ), u)
  else
    redis.call('ZREM', READY, u)
  end
end

local function removeTicket(id)
  local info = redis.call('HGET', TICKETS, id)
  if not info then return false end
  local _, u = split(info)
  redis.call('LREM', line(u), 1, id)
  redis.call('HDEL', TICKETS, id)
  redis.call('ZREM', TEXP, id)
  refreshReady(u)
  return true
end

local function dispatch()
  local cap = maxTotal()
  for _ = 1, 1000 do
    if cap > 0 and total() >= cap then return end
    local first = redis.call('ZRANGE', READY, 0, 0)
    if #first == 0 then return end
    local u = first[1]
    redis.call('ZREM', READY, u)
    local id = redis.call('LPOP', line(u))
    local _, _, channel, leaseMs = split(redis.call('HGET', TICKETS, id))
    redis.call('HDEL', TICKETS, id)
    redis.call('ZREM', TEXP, id)
    grant(u, id, leaseMs)
    redis.call('PUBLISH', channel, id .. ' ' .. count(u))
    refreshReady(u)
  end
end

local function purge()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', NOW, 'LIMIT', 0, 100)) do
    local u = drop(id)
    if u then refreshReady(u) end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', TEXP, '-inf', NOW, 'LIMIT', 0, 100)) do removeTicket(id) end
end

local bad = wrongType()
if bad then return redis.error_reply(bad) end
purge()
dispatch()
`

/**
 * ARGV: prefix, user, limit, bypass (0/1), wait (0/1), maxWaitingPerUser, leaseMillis, id, channel, maxTotal
 * (this process's cap, written back if Redis lost its config, e.g. after a restart without persistence).
 * Returns {1, active} acquired, {0, reason, active, limit} refused, {2, waiting} queued.
 */
export const acquire = `${prelude}
local u, limit, bypass, wait = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5] == '1'
local maxWaiting, leaseMs, id, channel = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9]
redis.call('HSETNX', CONFIG, 'maxTotal', ARGV[10])
local active, cap, queued = count(u), maxTotal(), redis.call('LLEN', line(u))
local fitsUser = bypass or limit == 0 or active < limit
local fitsTotal = cap == 0 or total() < cap
if fitsUser and fitsTotal and (not wait or queued == 0) then
  grant(u, id, leaseMs)
  return { 1, active + 1 }
end
if not wait then
  if fitsUser then
    redis.call('HINCRBY', STATS, 'refused:global', 1)
    return { 0, 'global', total(), cap }
  end
  redis.call('HINCRBY', STATS, 'refused:user', 1)
  return { 0, 'user', active, limit }
end
if maxWaiting > 0 and queued >= maxWaiting then
  redis.call('HINCRBY', STATS, 'refused:waiting', 1)
  return { 0, 'waiting', queued, maxWaiting }
end
redis.call('RPUSH', line(u), id)
redis.call('HSET', TICKETS, id, (bypass and '1' or '0') .. '\\t' .. channel .. '\\t' .. leaseMs .. '\\t' .. u)
redis.call('ZADD', TEXP, NOW + leaseMs, id)
redis.call('HSET', WUSERS, u, limit)
refreshReady(u)
return { 2, queued + 1 }
`

/** ARGV: prefix, lease id. Returns the user's count left, or -1 if the lease was not held (anymore). */
export const release = `${prelude}
local u, left = drop(ARGV[2])
if not u then return -1 end
refreshReady(u)
dispatch()
return left
`

/** ARGV: prefix, leaseMillis, ids... Returns per id 1 (lease renewed), 2 (ticket renewed) or 0 (gone). */
export const renew = `${prelude}
local ms, result = tonumber(ARGV[2]), {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', LEASES, id) then
    redis.call('ZADD', LEASES, 'XX', NOW + ms, id)
    result[#result + 1] = 1
  elseif redis.call('ZSCORE', TEXP, id) then
    redis.call('ZADD', TEXP, 'XX', NOW + ms, id)
    result[#result + 1] = 2
  else
    result[#result + 1] = 0
  end
end
return result
`

/** ARGV: prefix, ticket id. Returns 1 (removed from its line), 2 (it had been admitted: slot given back), 0 (gone). */
export const leave = `${prelude}
if removeTicket(ARGV[2]) then
  dispatch()
  return 1
end
local u = drop(ARGV[2])
if not u then return 0 end
refreshReady(u)
dispatch()
return 2
`

/** ARGV: prefix, ticket id. Returns {1, active} admitted (its lease is held), {2} still waiting, {0} gone. */
export const status = `${prelude}
local u = redis.call('HGET', OWNER, ARGV[2])
if u then return { 1, count(u) } end
if redis.call('HEXISTS', TICKETS, ARGV[2]) == 1 then return { 2 } end
return { 0 }
`

/** ARGV: prefix, user or ''. Returns {counts (flat user, n...), inFlight, waiting, waitingUsers, stats (flat)} or the count of one user. */
export const read = `${prelude}
if ARGV[2] ~= '' then return count(ARGV[2]) end
return { redis.call('HGETALL', COUNTS), total(), redis.call('ZCARD', TEXP), redis.call('HLEN', WUSERS), redis.call('HGETALL', STATS) }
`

/** ARGV: prefix, maxTotal, then pairs user, limit for waiting users. Sets the cap, the limits, and admits who now fits. */
export const configure = `${prelude}
redis.call('HSET', CONFIG, 'maxTotal', ARGV[2])
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', WUSERS, ARGV[i]) == 1 then redis.call('HSET', WUSERS, ARGV[i], ARGV[i + 1]) end
end
for i = 3, #ARGV, 2 do refreshReady(ARGV[i]) end
dispatch()
return 1
`
