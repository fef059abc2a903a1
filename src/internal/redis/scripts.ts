/**
 * The Lua code of the Redis store. Each script runs atomically on the server, so every
 * decision (the per-user check, the global cap, the hand-off to a waiter) is one step,
 * and each caller operation is one round trip. Time is Redis's own (`TIME`).
 *
 * Keys, all under the prefix `P` (a hash tag, so one cluster slot holds them all):
 * - `P:h`       hash   `cap` (maxTotal), `turn` (turn counter), `acquired`, `refused:<reason>`,
 *                      `wusers` (users with waiters), `expiry` (no lease expires before it),
 *                      `layout` (the version of this layout), `about` (what these keys are);
 *                      `<user>` its slots held, while above zero;
 *                      `t:<ticket>` "bypass\tchannel\tleaseMillis\tuser"; `w:<user>` its limit, while it has waiters
 * - `P:leases`  zset   lease id -> expiry (ms); `P:texp` zset ticket id -> expiry
 * - `P:line:U`  list   ticket ids of user U waiting, first-in first-out
 * - `P:ready`   zset   users whose first waiter waits only for maxTotal, in turn order
 * Users are encoded `n<number>` or `s<string>` (no other field of `P:h` starts with n or s),
 * so 1 and "1" stay distinct. Lease and ticket ids are `process:sequence:user` (a ticket
 * admitted keeps its id as its lease's).
 *
 * A key of the wrong type: every call reads `P:h` first, `P:leases` before its first write (in
 * the purge, or in the step that writes, or first thing in `leave` and `configure`), and each
 * step reads a user's keys before it writes them, so a wrongly typed key fails the operation
 * that needs it before that operation changes anything; `inspect` then names the key. While no user has
 * waiters (`wusers` is 0), the lines, `P:texp` and `P:ready` are not looked at: they are empty,
 * and a cycle then runs 4 commands fewer. The first request to wait reads them before it writes.
 *
 * Each command called from Lua costs about as much again as its own work, so a call reads each
 * user's count, line length and waiting limit once and keeps them (and writes the counts and new
 * leases once, at its end); a waiter whose turn has come while nobody else waits for the global
 * cap is admitted at once rather than through `P:ready`. `test/redis/differential.test.ts` checks
 * that the result admits the same requests, in the same order, as the in-memory store.
 *
 * The code is one library: on Redis 7 it is loaded once as a function library, so its helpers
 * are made once rather than on every call (which cost about a fifth of a call's time); on
 * Redis 6.2 each script is the whole library plus the line that runs it.
 */
import { createHash } from "node:crypto"

const code = `
-- the state of the call running now, set by begin
local P, H, LEASES, TEXP, READY, NOW, CAP, anyWaiting, mayBeReady, waitKeysRead
local counts, dirty, granted, acquired, expiry, expiryChanged
-- the leases this call granted (expiry, id, ...), added to P:leases at its end; whether it read P:leases
local newLeases, leasesRead
-- the expiry of a lease of textMs granted now, as text (see expiryText)
local textMs, textAt
-- per user, as read (once) or written by this call: the length of its line, its limit while it
-- has waiters (w:), and whether it is in READY
local lens, limits, inReady
-- the settings of the process that sent the batch running now
local leaseMs, channel, fallbackCap, maxWaiting

-- the version of the key layout, kept in P:h by configure
local LAYOUT = '2'

-- P:h's field about: for whoever looks at the keys, and longer than 64 bytes (Redis's default
-- hash-max-listpack-value), so that the hash is a hashtable from the start, whose reads and writes
-- of a user's count take one step where a listpack's scan every field (a tenth of a call's time
-- with 64 users holding slots)
local ABOUT = 'effect-queue-manager: per-user slot counts, global cap, counters and waiting requests; see its README'

local function line(u) return P .. ':line:' .. u end

local function setKeys(ARGV)
  if ARGV[1] == P then return end -- a library keeps them from the call before
  P = ARGV[1]
  H, LEASES, TEXP, READY = P .. ':h', P .. ':leases', P .. ':texp', P .. ':ready'
end

local function foreignKeys(key)
  error({ err = 'ERR ' .. key .. ' was written by another version of effect-queue-manager, whose keys this one '
    .. 'would misread: give each version a prefix of its own, or delete the keys under ' .. P
    .. ' once that version has stopped' })
end

local function begin(ARGV)
  setKeys(ARGV)
  local clock = redis.call('TIME')
  NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  -- P:h is read before anything is written (the other keys: see the top of the file)
  local fixed = redis.call('HMGET', H, 'cap', 'wusers', 'acquired', 'expiry', 'layout', 'seq')
  -- another version's keys would be misread ('seq': the turn counter of the first layout)
  if (fixed[5] and fixed[5] ~= LAYOUT) or fixed[6] then foreignKeys(H) end
  CAP = fixed[1] and tonumber(fixed[1]) -- false if Redis lost it
  -- false while no user has waiters: then no line, waiting request or turn order exists to look at
  anyWaiting = tonumber(fixed[2] or '0') > 0
  acquired = tonumber(fixed[3] or '0')
  -- no lease expires before it (false: unknown); the purge looks at the leases only once it has passed
  expiry, expiryChanged = fixed[4] and tonumber(fixed[4]), false
  -- false while READY is known to be empty: dispatch has nothing to look at
  mayBeReady = anyWaiting and #redis.call('ZRANGE', READY, 0, 0) > 0
  waitKeysRead = anyWaiting
  -- slots held per user as read or set by this call (dirty: those set, with the count Redis has);
  -- the counts that changed, the slots granted and the new leases are written back at once, at
  -- the end of the call
  counts, dirty, granted = {}, {}, 0
  newLeases, leasesRead, textMs = {}, false, nil
  lens, limits, inReady = {}, {}, {}
end

-- how many requests wait in u's line
local function lineLength(u)
  if lens[u] == nil then lens[u] = redis.call('LLEN', line(u)) end
  return lens[u]
end

-- how many of u's requests wait (none while no user has waiters: nothing to read)
local function queuedOf(u) return anyWaiting and lineLength(u) or 0 end

-- u's limit while it has waiters (0: none)
local function waitLimit(u)
  if limits[u] == nil then limits[u] = tonumber(redis.call('HGET', H, 'w:' .. u) or '0') end
  return limits[u]
end

local function count(u)
  if counts[u] == nil then counts[u] = tonumber(redis.call('HGET', H, u) or '0') end
  return counts[u]
end

-- (u's count was read before: dirty keeps the count Redis has)
local function setCount(u, n)
  if dirty[u] == nil then dirty[u] = counts[u] end
  counts[u] = n
end

-- runs command on key with the values of list (pairs stay together): in chunks, as unpack takes
-- at most about 8,000 values, and one call can admit thousands of users at once
local function writeAll(command, key, list)
  for i = 1, #list, 2000 do redis.call(command, key, unpack(list, i, math.min(i + 1999, #list))) end
end

local function writeLeases()
  writeAll('ZADD', LEASES, newLeases)
  newLeases = {}
end

-- writes what this call did so far: its new leases, the counts it changed, its counters
local function writeBack()
  writeLeases()
  local set, gone = {}, {}
  for u, stored in pairs(dirty) do
    if counts[u] == stored then -- given back and taken again: nothing to write
    elseif counts[u] > 0 then
      set[#set + 1] = u
      set[#set + 1] = counts[u]
    else
      gone[#gone + 1] = u
    end
  end
  if granted > 0 then
    acquired = acquired + granted
    set[#set + 1] = 'acquired'
    set[#set + 1] = acquired
  end
  if expiryChanged then
    if expiry then
      set[#set + 1] = 'expiry'
      set[#set + 1] = expiry
    else
      gone[#gone + 1] = 'expiry'
    end
  end
  writeAll('HSET', H, set)
  writeAll('HDEL', H, gone)
  dirty, granted, expiryChanged = {}, 0, false
end

local function split(info)
  local bypass, channel, ms, u = string.match(info, '^(%d)\\t([^\\t]*)\\t(%d+)\\t(.*)$')
  return bypass == '1', u, channel, tonumber(ms)
end

local function userOf(id) return string.match(id, '^[^:]*:[^:]*:(.*)$') end

-- a lease now expires at 'at': the bound of the earliest expiry must not be above it
local function expiresAt(at)
  if not expiry or at < expiry then expiry, expiryChanged = at, true end
end

-- NOW + ms as the text ZADD takes: made once per call and lease time, where Redis would format
-- the number anew for every lease
local function expiryText(ms)
  if ms ~= textMs then textMs, textAt = ms, string.format('%d', NOW + ms) end
  return textAt
end

-- leases held, those granted by this call included
local function total()
  leasesRead = true
  return redis.call('ZCARD', LEASES) + #newLeases / 2
end

-- reads P:leases if this call has not: before a step writes anything for a lease it grants, so
-- that a wrongly typed P:leases fails the step before it changes anything
local function readLeases()
  if not leasesRead then total() end
end

-- grants u the lease id, of ms. It joins P:leases at the end of the call (or of the purge),
-- which no step of the same call misses: the holder learns of the lease only from the call's
-- answer or wake-up, so it releases, renews or asks about it in a later call
local function grant(u, id, ms)
  readLeases()
  newLeases[#newLeases + 1] = expiryText(ms)
  newLeases[#newLeases + 1] = id
  expiresAt(NOW + ms)
  local active = count(u) + 1
  setCount(u, active)
  granted = granted + 1
  return active
end

-- gives lease id back; returns its user, the user's count left and how many of the user's
-- requests wait, or nothing if it was not held
local function drop(id)
  local u = userOf(id)
  local held, queued = count(u), queuedOf(u)
  local removed = redis.call('ZREM', LEASES, id)
  leasesRead = true
  if removed == 0 then return nil, 0, 0 end
  local left = math.max(held - 1, 0)
  setCount(u, left)
  return u, left, queued
end

-- whether u's first waiter (it has one) fits u's own limit
local function headFits(u)
  local limit = waitLimit(u)
  if limit == 0 or count(u) < limit then return true end
  -- a full user: only a request that bypasses the user's limit fits
  return (split(redis.call('HGET', H, 't:' .. redis.call('LINDEX', line(u), 0))))
end

-- puts u in READY (at the end of the turn order, unless it is in already) or takes it out
local function setReady(u, ready)
  -- nothing to take out while READY is known to be empty
  if inReady[u] == ready or (not ready and not mayBeReady) then return end
  if ready then
    redis.call('ZADD', READY, 'NX', redis.call('HINCRBY', H, 'turn', 1), u)
    mayBeReady = true
  else
    redis.call('ZREM', READY, u)
  end
  inReady[u] = ready
end

-- admits u's first waiter, with a lease of the time its process asked for, and wakes that process
local function admitHead(u)
  -- read before the first write: a wrongly typed key fails the call here
  local queued = lineLength(u)
  count(u)
  readLeases()
  setReady(u, false)
  local id = redis.call('LPOP', line(u))
  lens[u] = id and queued - 1 or 0
  -- a line or ticket deleted from outside admits no one (a ticket left over expires)
  local info = id and redis.call('HGET', H, 't:' .. id)
  if info then
    local _, _, to, ms = split(info)
    redis.call('HDEL', H, 't:' .. id)
    redis.call('ZREM', TEXP, id)
    redis.call('PUBLISH', to, id .. ' ' .. grant(u, id, ms))
  end
end

-- after u's line, count or limit changed. While u's first waiter fits u's own limit: if nobody
-- else waits for the global cap and it has room, the waiter is admitted at once (what dispatch
-- would do next); otherwise u takes a turn in READY. So u is in READY exactly when it has a
-- first waiter that fits its own limit.
local function refreshReady(u)
  for _ = 1, 1000 do
    if lineLength(u) == 0 then
      if redis.call('HDEL', H, 'w:' .. u) == 1 then
        limits[u] = nil
        redis.call('HINCRBY', H, 'wusers', -1)
        setReady(u, false)
      end
      return
    end
    if not headFits(u) then return setReady(u, false) end
    if mayBeReady or (CAP and CAP > 0 and total() >= CAP) then return setReady(u, true) end
    admitHead(u)
  end
  -- a thousand admitted: the next dispatch goes on, if the next still fits
  setReady(u, lineLength(u) > 0 and headFits(u))
end

-- after u's count fell (drop's results): only a user with waiters has anything to refresh
local function settle(u, _, queued)
  if u and queued > 0 then refreshReady(u) end
end

local function removeTicket(id)
  local info = redis.call('HGET', H, 't:' .. id)
  if not info then return false end
  local _, u = split(info)
  redis.call('LREM', line(u), 1, id)
  lens[u] = nil
  redis.call('HDEL', H, 't:' .. id)
  redis.call('ZREM', TEXP, id)
  refreshReady(u)
  return true
end

-- admits ready users' first waiters, in turn order, while the global cap allows
local function dispatch()
  if not mayBeReady then return end
  local first = redis.call('ZRANGE', READY, 0, 0)
  mayBeReady = #first > 0
  if not mayBeReady then return end
  local cap = CAP or 0
  for _ = 1, 1000 do
    if cap > 0 and total() >= cap then return end
    local u = first[1]
    admitHead(u)
    refreshReady(u)
    first = redis.call('ZRANGE', READY, 0, 0)
    mayBeReady = #first > 0
    if not mayBeReady then return end
  end
end

-- expired leases and tickets go first, and whoever they were blocking is admitted
local function purge()
  if not expiry or expiry <= NOW then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', NOW, 'LIMIT', 0, 100)) do
      settle(drop(id))
    end
    local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
    expiry, expiryChanged = first[2] and tonumber(first[2]), true
  end
  if not anyWaiting then return end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', TEXP, '-inf', NOW, 'LIMIT', 0, 100)) do
    if not removeTicket(id) then redis.call('ZREM', TEXP, id) end
  end
  dispatch()
end

local function capOr(fallback)
  if not CAP then
    redis.call('HSET', H, 'cap', fallback, 'about', ABOUT)
    CAP = tonumber(fallback)
  end
  return CAP
end

local function acquire(u, limit, flags, id)
  local bypass, wait = flags % 2 == 1, flags >= 2
  local max = capOr(fallbackCap)
  local active, queued = count(u), queuedOf(u)
  local fitsUser = bypass or limit == 0 or active < limit
  local fitsTotal = max == 0 or total() < max
  if fitsUser and fitsTotal and (not wait or queued == 0) then return grant(u, id, leaseMs) end
  if not wait then
    if fitsUser then
      redis.call('HINCRBY', H, 'refused:global', 1)
      return { 0, 'global', total(), max }
    end
    redis.call('HINCRBY', H, 'refused:user', 1)
    return { 0, 'user', active, limit }
  end
  if maxWaiting > 0 and queued >= maxWaiting then
    redis.call('HINCRBY', H, 'refused:waiting', 1)
    return { 0, 'waiting', queued, maxWaiting }
  end
  readLeases() -- a changed limit may admit a waiter below
  if not waitKeysRead then -- the first to wait: the keys it writes are read before it writes them
    queued = lineLength(u)
    redis.call('ZCARD', TEXP)
    redis.call('ZCARD', READY)
    waitKeysRead = true
  end
  lens[u] = redis.call('RPUSH', line(u), id)
  redis.call('HSET', H, 't:' .. id, (bypass and '1' or '0') .. '\\t' .. channel .. '\\t' .. leaseMs .. '\\t' .. u)
  redis.call('ZADD', TEXP, expiryText(leaseMs), id)
  anyWaiting = true
  -- behind others, under the same limit, it changes nothing about u's first waiter
  if queued == 0 or waitLimit(u) ~= limit then
    if redis.call('HSET', H, 'w:' .. u, limit) == 1 then redis.call('HINCRBY', H, 'wusers', 1) end
    limits[u] = limit
    refreshReady(u)
  end
  return { 2, queued + 1 }
end

local function release(id)
  local u, left, queued = drop(id)
  if not u then return -1 end
  settle(u, left, queued)
  dispatch()
  return left
end

local function outcome(ok, result)
  if ok then return result end
  return { '!', type(result) == 'table' and result.err or tostring(result) }
end

local scripts = {}

-- Acquisitions and releases, in the order given (see batch below)
function scripts.batch(ARGV)
  leaseMs, channel, fallbackCap, maxWaiting = tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
  local results, i = {}, 6
  while i <= #ARGV do
    if ARGV[i] == 'a' then
      results[#results + 1] = outcome(pcall(acquire, ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4]))
      i = i + 5
    else
      results[#results + 1] = outcome(pcall(release, ARGV[i + 1]))
      i = i + 2
    end
  end
  return results
end

function scripts.renew(ARGV)
  local ms, result = tonumber(ARGV[2]), {}
  for i = 3, #ARGV do
    local id = ARGV[i]
    if redis.call('ZSCORE', LEASES, id) then
      redis.call('ZADD', LEASES, 'XX', expiryText(ms), id)
      expiresAt(NOW + ms) -- a later expiry, unless Redis's clock went back or the lease time is shorter
      result[#result + 1] = 1
    elseif redis.call('ZSCORE', TEXP, id) then
      redis.call('ZADD', TEXP, 'XX', NOW + ms, id)
      result[#result + 1] = 2
    else
      result[#result + 1] = 0
    end
  end
  return result
end

function scripts.leave(ARGV)
  total() -- read before anything is written: removing a ticket may let dispatch grant a lease
  if removeTicket(ARGV[2]) then
    dispatch()
    return 1
  end
  local u, left, queued = drop(ARGV[2])
  if not u then return 0 end
  settle(u, left, queued)
  dispatch()
  return 2
end

function scripts.status(ARGV)
  if redis.call('ZSCORE', LEASES, ARGV[2]) then return { 1, count(userOf(ARGV[2])) } end
  if redis.call('HEXISTS', H, 't:' .. ARGV[2]) == 1 then return { 2 } end
  return { 0 }
end

function scripts.read(ARGV)
  if ARGV[2] ~= '' then return count(ARGV[2]) end
  writeBack() -- what this call's purge did, before the counters are read
  local all, held = redis.call('HGETALL', H), {}
  for i = 1, #all, 2 do
    local first = string.sub(all[i], 1, 1)
    if first == 'n' or first == 's' then
      held[#held + 1] = all[i]
      held[#held + 1] = all[i + 1]
    end
  end
  return { held, total(), redis.call('ZCARD', TEXP), redis.call('HGET', H, 'wusers'),
    redis.call('HMGET', H, 'acquired', 'refused:user', 'refused:global', 'refused:waiting') }
end

function scripts.configure(ARGV)
  -- read before anything is written
  total()
  for i = 3, #ARGV, 2 do redis.call('LLEN', line(ARGV[i])) end
  if redis.call('EXISTS', P .. ':counts') == 1 then foreignKeys(P .. ':counts') end
  redis.call('HSET', H, 'cap', ARGV[2], 'layout', LAYOUT, 'about', ABOUT)
  CAP = tonumber(ARGV[2])
  for i = 3, #ARGV, 2 do
    if redis.call('HEXISTS', H, 'w:' .. ARGV[i]) == 1 then
      redis.call('HSET', H, 'w:' .. ARGV[i], ARGV[i + 1])
      limits[ARGV[i]] = tonumber(ARGV[i + 1])
    end
  end
  -- every user whose first waiter now fits takes a turn, and dispatch admits them round-robin
  -- (admitted at once one user after the other, the first would take all the room)
  mayBeReady = true
  for i = 3, #ARGV, 2 do refreshReady(ARGV[i]) end
  dispatch()
  return 1
end

-- runs a script: the purge, then the script, whose result is returned once the counts and new
-- leases are written back (also when it fails midway: what it did stays done, as Redis does not roll back)
local function finish(ok, result)
  writeBack()
  if not ok then error(result) end
  return result
end
local function purgeThen(name, ARGV)
  purge()
  -- the leases the purge granted are in P:leases for the script: leave, status and renew look there
  writeLeases()
  return scripts[name](ARGV)
end
local function run(name, ARGV)
  begin(ARGV)
  return finish(pcall(purgeThen, name, ARGV))
end

-- names the first key holding the wrong type, or returns ''
local function inspect(ARGV)
  setKeys(ARGV)
  local expected = { { H, 'hash' }, { LEASES, 'zset' }, { TEXP, 'zset' }, { READY, 'zset' } }
  for i = 2, #ARGV do expected[#expected + 1] = { line(ARGV[i]), 'list' } end
  -- the lines a dispatch looks at: those of the users in the turn order
  if redis.call('TYPE', READY).ok == 'zset' then
    for _, u in ipairs(redis.call('ZRANGE', READY, 0, -1)) do expected[#expected + 1] = { line(u), 'list' } end
  end
  for _, pair in ipairs(expected) do
    local got = redis.call('TYPE', pair[1]).ok
    if got ~= 'none' and got ~= pair[2] then
      return 'WRONGTYPE key ' .. pair[1] .. ' holds a ' .. got .. ', the queue store needs a ' .. pair[2]
    end
  end
  return ''
end
`

/**
 * The scripts (ARGV[1] is always the prefix):
 * - `batch`: acquisitions and releases, in the order given, in one round trip (a process sends
 *   what its callers asked for meanwhile together). ARGV: prefix, then the sending process's
 *   `leaseMillis, channel, maxTotal, maxWaitingPerUser` (maxTotal: its cap, written back if
 *   Redis lost it, e.g. after a restart without persistence), then per operation either
 *   `a, user, limit, flags (1: bypass + 2: wait), id` or `r, lease id`. Returns per operation:
 *   for an acquisition its user's count if acquired (a bare number: the common case makes no
 *   table), {0, reason, active, limit} if refused or {2, waiting} if queued; for a release the
 *   user's count left, or -1 if the lease was not held (anymore);
 *   for an operation that failed (a key of the wrong type) {'!', error}: it fails alone.
 * - `renew`: ARGV prefix, leaseMillis, ids... Returns per id 1 (lease renewed), 2 (ticket renewed) or 0 (gone).
 * - `leave`: ARGV prefix, ticket id. Returns 1 (removed from its line), 2 (it had been admitted:
 *   slot given back), 0 (gone).
 * - `status`: ARGV prefix, ticket id. Returns {1, active} admitted (its lease is held), {2} still waiting, {0} gone.
 * - `read`: ARGV prefix, user or ''. Returns the count of one user, or {counts (flat user, n...),
 *   inFlight, waiting, waitingUsers, {acquired, refused:user, refused:global, refused:waiting}}.
 * - `configure`: ARGV prefix, maxTotal, then pairs user, limit for waiting users. Sets the cap,
 *   the limits, and admits who now fits.
 * - `inspect`: ARGV prefix, then users whose lines to look at. Names the first key holding the
 *   wrong type (run after a script failed with WRONGTYPE), or returns '' if none does.
 */
export type Script = "batch" | "renew" | "leave" | "status" | "read" | "configure" | "inspect"

const names: ReadonlyArray<Script> = ["batch", "renew", "leave", "status", "read", "configure", "inspect"]

const call = (script: Script) => (script === "inspect" ? "inspect(ARGV)" : `run('${script}', ARGV)`)

/** Each script on its own, for `EVALSHA` (Redis 6.2). */
export const evalScripts = Object.fromEntries(
  names.map((script) => [script, `${code}\nreturn ${call(script)}\n`])
) as Record<Script, string>

/** The library's name: it changes with its code, so that processes of different versions never replace each other's. */
const libraryName = `effect_queue_manager_${createHash("sha1").update(code).digest("hex").slice(0, 12)}`

/** The function that runs each script in the library. */
export const functionNames = Object.fromEntries(names.map((script) => [script, `${libraryName}_${script}`])) as Record<
  Script,
  string
>

/** All scripts as one function library, for `FUNCTION LOAD` (Redis 7 and later). */
export const library = `#!lua name=${libraryName}
${code}
${names.map((script) => `redis.register_function('${functionNames[script]}', function(_, ARGV) return ${call(script)} end)`).join("\n")}
`
