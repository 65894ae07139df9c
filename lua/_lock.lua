-- _lock.lua: the state machine shared by the lock scripts (lock_acquire, lock_release,
-- lock_renew, lock_cancel). scripts.py prepends it, after _lib.lua, to each lock_*.lua; it
-- only defines local functions (prefixed lk_).
--
-- One lock name (any memory key {s}/space/id) is kept in these keys, passed by every lock
-- script in this order:
--   KEYS[1]  holders  hash    holder id -> "<mode>|<agent>|<expires_ms>|<token>"
--                             (the contract lock_refusal in _lib.lua reads; token "" for read)
--   KEYS[2]  queue    list    waiter ids, oldest first (FIFO)
--   KEYS[3]  waiters  hash    waiter id -> "<mode>|<agent>|<lease_ms>|<alive_until_ms>|<wake>",
--                             or "cancelled|<until_ms>": a tombstone (see lock_cancel.lua);
--                             and LK_SWEEP_FIELD -> ms, when tombstones may be swept next
--   KEYS[4]  fence    string  newest fencing token of the name (INCR; never expires)
--   KEYS[5]  index    set     lock names (full keys) that have holders or waiters
--   KEYS[6]  log      stream  the swarm's event log
--   KEYS[7]  logn     string  the log's position counter (INCR)
-- and every lock script takes first
--   ARGV[1]  the lock name (full key: events and the index)
--   ARGV[2]  swarm name      ARGV[3]  event channel      ARGV[4]  max length of the event log
--   ARGV[5]  the caller's holder / waiter id (random, one per acquisition)
--
-- Modes: read+read and read+write are compatible, nothing else. Grants are FIFO: the queue
-- head and every waiter behind it that fits with all holders are granted together, up to
-- the first that does not fit, which then blocks everyone behind it (no barging, so a
-- waiting exclusive or writer is never starved by a stream of readers).
--
-- Wake-ups: a grant made for another waiter PUBLISHes "<id>|<token>|<lease_ms>|<now_ms>"
-- (now_ms: the server time of the grant, from which its lease counts) on that
-- waiter's wake channel (one pub/sub channel per process and swarm, named in its waiter
-- entry; channels are not keys, so the script that grants, whichever it is, can wake
-- exactly the waiters it granted in the same step). The caller's own grant is returned.
--
-- Expiry: a holder whose lease has passed is dropped (announcing lock_expired) by the next
-- lock script on the name; waiters re-check on a timer bounded by the earliest holder
-- expiry, so a holder that dies without releasing is replaced when its lease ends. A waiter
-- not seen since alive_until (its process died) is dropped when it reaches the queue head.
--
-- Cost: a script reads the holders and only the queue head (never the whole queue, except
-- for the self-deadlock check of an agent that already holds the name).

local LK_COMPAT = {
  read = {read = true, write = true},
  write = {read = true},
  exclusive = {},
}
-- the lock's keys outlive its last lease/waiter by this much (then Redis drops them)
local LK_GRACE_MS = 60000
-- a waiter re-checks at least every lease/2; it is abandoned after lease + this much silence
local LK_WAITER_SLACK_MS = 2000
-- lock_cancel.lua sweeps expired tombstones once they outnumber the queue by this much, at
-- most once per LK_SWEEP_EVERY_MS; the waiters-hash field LK_SWEEP_FIELD (no waiter id: ids
-- are hex) holds the server time (ms) from which the next sweep may run
local LK_TOMBSTONE_SLACK = 32
local LK_SWEEP_EVERY_MS = 30000
local LK_SWEEP_FIELD = '_sweep'

-- lock_acquired / lock_released / lock_expired, in the log and on the swarm's channel;
-- "version" carries the fencing token (0 for read leases)
local function lk_event(kind, agent, mode, token, now)
  local version = tonumber(token) or 0
  return emit(KEYS[6], ARGV[4], ARGV[3],
              event_body(kind, ARGV[2], ARGV[1], agent, version, now, ',"mode":"' .. mode .. '"'))
end

-- Read the holders (live and expired) of the lock. Nothing is written: scripts validate
-- first, then purge. st.qempty: true/false once the queue is known to be empty or not.
local function lk_load()
  local now = now_ms()
  local st = {now = now, holders = {}, expired = {}, extended = false, qempty = nil}
  local raw = redis.call('HGETALL', KEYS[1])
  -- every script leaves only live holders, and the name in the index while it has any
  st.indexed = #raw > 0
  for i = 1, #raw, 2 do
    local mode, agent, expires, token = string.match(raw[i + 1], '^(%a+)|([^|]*)|(%d+)|(%d*)$')
    local h = {id = raw[i], mode = mode, agent = agent, expires = tonumber(expires) or 0,
               token = token or ''}
    if mode and LK_COMPAT[mode] and h.expires > now then
      st.holders[h.id] = h
    else
      st.expired[#st.expired + 1] = h
    end
  end
  return st
end

-- The time (ms) until which a waiters-hash value is the tombstone of a request cancelled
-- before it arrived ("cancelled|<until_ms>", lock_cancel.lua), or nil if it is not one.
local function lk_tombstone_until(v)
  local til = string.match(v, '^cancelled|(%d+)$')
  return til and tonumber(til)
end

-- A queued waiter's entry, or nil if missing or malformed; and true if the entry is a
-- tombstone.
local function lk_waiter(id)
  local v = redis.call('HGET', KEYS[3], id)
  if not v then return nil end
  local mode, agent, lease, alive, wake = string.match(v, '^(%a+)|([^|]*)|(%d+)|(%d+)|(.*)$')
  if not (mode and LK_COMPAT[mode]) then
    return nil, lk_tombstone_until(v) ~= nil
  end
  return {id = id, mode = mode, agent = agent, lease = tonumber(lease), alive = tonumber(alive),
          wake = wake, stored = true}
end

local function lk_waiter_value(w)
  return w.mode .. '|' .. w.agent .. '|' .. dec(w.lease) .. '|' .. dec(w.alive) .. '|' .. w.wake
end

-- A holder's stored entry, as lk_load (and lock_refusal in _lib.lua) parse it.
local function lk_holder_value(h)
  return h.mode .. '|' .. h.agent .. '|' .. dec(h.expires) .. '|' .. h.token
end

-- A lease argument in ms, or nil if it is not a positive integer.
local function lk_lease_ms(arg)
  local lease = tonumber(arg)
  if not lease or lease < 1 or lease ~= math.floor(lease) then return nil end
  return lease
end

-- Drop expired holders, announcing lock_expired.
local function lk_purge(st)
  for _, h in ipairs(st.expired) do
    redis.call('HDEL', KEYS[1], h.id)
    if h.mode then lk_event('lock_expired', h.agent, h.mode, h.token, st.now) end
  end
end

-- Give back the live lease of holder `id`, announcing lock_released; returns its entry, or
-- nil if it held nothing (any more).
local function lk_release(st, id)
  local held = st.holders[id]
  if held then
    redis.call('HDEL', KEYS[1], id)
    st.holders[id] = nil
    lk_event('lock_released', held.agent, held.mode, held.token, st.now)
  end
  return held
end

local function lk_fits(st, mode)
  local ok = LK_COMPAT[mode]
  for _, h in pairs(st.holders) do
    if not ok[h.mode] then return false end
  end
  return true
end

-- {12, held_mode, blocker} if a `mode` request queued now would wait on a hold the caller
-- itself keeps: `own` lists the holder ids its process holds on this name as this agent
-- (held, renewed, not being released: a wait on them can never end). The request conflicts
-- with one of them, or a waiter it would queue behind does. Else nil. Holds of the same
-- agent that the caller does not list (a lease orphaned by a failed release, another
-- process with the same agent name) are waited for like anyone's: they end by themselves.
local function lk_self_deadlock(st, agent, mode, own_ids)
  if own_ids == '' then return nil end
  local own = {}
  for hid in string.gmatch(own_ids, '[^,]+') do
    local h = st.holders[hid]
    if h then
      if not LK_COMPAT[mode][h.mode] then return {12, h.mode, agent} end
      own[#own + 1] = h.mode
    end
  end
  if #own == 0 then return nil end
  for _, wid in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    local w = lk_waiter(wid)
    if w and w.alive > st.now then
      for _, held in ipairs(own) do
        if not LK_COMPAT[w.mode][held] then return {12, held, w.agent} end
      end
    end
  end
  return nil
end

-- Grant the queue head and every waiter behind it that fits with all holders, up to the
-- first that does not; abandoned waiters met at the head are dropped. `new` (optional) is
-- the caller's request not queued yet: it comes after everyone queued. Returns
-- {token, lease_ms} if `self_id` was granted, else nil; every other grantee is woken on its
-- channel.
local function lk_grant(st, self_id, new)
  local mine = nil
  while true do
    local w = nil
    local id = redis.call('LINDEX', KEYS[2], 0)
    if id then
      w = lk_waiter(id)
      if not w or w.alive <= st.now then
        redis.call('LPOP', KEYS[2])
        redis.call('HDEL', KEYS[3], id)
        w = false
      end
    else
      st.qempty = true
      if new and not new.stored and not st.holders[new.id] then w = new end
    end
    if w == nil then break end
    if w then
      if not lk_fits(st, w.mode) then
        if w ~= new then st.qempty = false end
        break
      end
      local token = ''
      if w.mode ~= 'read' then token = tostring(redis.call('INCR', KEYS[4])) end
      local h = {id = w.id, mode = w.mode, agent = w.agent, expires = st.now + w.lease,
                 token = token}
      redis.call('HSET', KEYS[1], w.id, lk_holder_value(h))
      st.holders[w.id] = h
      st.extended = true
      if w.stored then
        redis.call('LPOP', KEYS[2])
        redis.call('HDEL', KEYS[3], w.id)
      end
      lk_event('lock_acquired', w.agent, w.mode, token, st.now)
      if w.id == self_id then
        mine = {token, w.lease}
      else
        redis.call('PUBLISH', w.wake, w.id .. '|' .. token .. '|' .. dec(w.lease) .. '|'
                                      .. dec(st.now))
      end
      -- nothing is compatible with exclusive: no need to look at the next waiter
      if w == new or w.mode == 'exclusive' then break end
    end
  end
  return mine
end

-- Queue (or refresh) the caller's waiter entry; returns its position (1 = head).
local function lk_enqueue(st, w)
  local pos = w.stored and redis.call('LPOS', KEYS[2], w.id)
  if pos then
    pos = pos + 1
  else  -- new (or, defensively, an entry that lost its place in the list): at the tail
    pos = redis.call('RPUSH', KEYS[2], w.id)
    w.stored = true
  end
  redis.call('HSET', KEYS[3], w.id, lk_waiter_value(w))
  st.qempty = false
  -- the queue's keys outlive every entry: never shorten their expiry. When it must grow,
  -- it grows by a grace more, so that the waiters queued next need not extend it again
  local keep = w.alive - st.now + LK_GRACE_MS
  if redis.call('PTTL', KEYS[2]) < keep then
    redis.call('PEXPIRE', KEYS[2], dec(keep + LK_GRACE_MS))
    redis.call('PEXPIRE', KEYS[3], dec(keep + LK_GRACE_MS))
  end
  return pos
end

-- How long a waiter may sleep before it re-checks: until the earliest holder expiry (a dead
-- holder is then replaced), and at most half its own lease (its entry stays alive, and a
-- grant whose wake-up was lost is found long before that lease ends).
local function lk_recheck_ms(st, lease)
  local wait = math.floor(lease / 2)
  for _, h in pairs(st.holders) do
    local left = h.expires - st.now + 2
    if left < wait then wait = left end
  end
  if wait < 1 then wait = 1 end
  return wait
end

-- Keep the holders' expiry and the index in step with what is left.
local function lk_finish(st)
  local last = 0
  for _, h in pairs(st.holders) do
    if h.expires > last then last = h.expires end
  end
  if st.extended then redis.call('PEXPIRE', KEYS[1], dec(last - st.now + LK_GRACE_MS)) end
  if last == 0 and st.qempty == nil then st.qempty = redis.call('LLEN', KEYS[2]) == 0 end
  if last == 0 and st.qempty then
    redis.call('SREM', KEYS[5], ARGV[1])
  elseif not st.indexed then
    redis.call('SADD', KEYS[5], ARGV[1])
  end
end
