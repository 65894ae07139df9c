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
-- for the self-deadlock check of an agent that already holds the name). Every contended
-- acquisition runs one queued lock_acquire and one lock_release that grants it, so both are
-- written for Redis's Lua 5.1 interpreter: no table per holder or waiter (holders are
-- counted by mode; a waiter's fields are multiple return values), no table of modes, few
-- helper functions (each is a closure made anew on every call) and none that captures the
-- caller's locals, times and tokens kept as the text Redis gives (a number turned into text
-- costs a printf).

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

-- true if `m` is a lock mode
local function lk_is_mode(m)
  return m == 'read' or m == 'write' or m == 'exclusive'
end

-- true if leases of modes a and b may be held together: read+read, read+write
local function lk_compat(a, b)
  if a == 'read' then return b == 'read' or b == 'write' end
  return b == 'read' and a == 'write'
end

-- A holder's stored entry, as holder_fields (_lib.lua) parses it; `expires` a number.
local function lk_holder_value(mode, agent, expires, token)
  return mode .. '|' .. agent .. '|' .. string.format('%d', expires) .. '|' .. token
end

-- A waiter's stored entry, as lk_waiter parses it; `lease` text, `alive` a number.
local function lk_waiter_value(mode, agent, lease, alive, wake)
  return mode .. '|' .. agent .. '|' .. lease .. '|' .. string.format('%d', alive) .. '|' .. wake
end

-- lock_acquired / lock_released / lock_expired, in the log and on the swarm's channel;
-- "version" carries the fencing token (0 for read leases). The members every event of the
-- call shares are encoded once (st.ev).
local function lk_event(st, kind, agent, mode, token)
  local ev = st.ev
  if not ev then
    ev = '","swarm":' .. jstr(ARGV[2]) .. ',"key":' .. jstr(ARGV[1]) .. ',"agent":'
    st.ev = ev
  end
  if token == '' then token = '0' end
  return emit(KEYS[6], ARGV[4], ARGV[3], '"type":"' .. kind .. ev .. jstr(agent)
              .. ',"version":' .. token .. ',"ts":' .. st.now_s .. ',"mode":"' .. mode .. '"}')
end

-- Count a live lease of `mode` ending at `expires` among the holders.
local function lk_hold(st, mode, expires)
  if mode == 'read' then
    st.r = st.r + 1
  elseif mode == 'write' then
    st.w = st.w + 1
  else
    st.x = st.x + 1
  end
  if not st.first or expires < st.first then st.first = expires end
  if expires > st.last then st.last = expires end
end

-- Read the holders (live and expired) of the lock. Nothing is written: scripts validate
-- first, then purge. The state st: now (ms) and now_s (its text); raw, the HGETALL;
-- r / w / x, the live holders by mode other than `self_id`, whose lease is st.mine =
-- {mode, agent, expires, token, self_id} if live; first / last, the earliest and latest expiry of the
-- counted holders; expired, the raw indices of entries past their lease or malformed;
-- qempty: true/false once the queue is known to be empty or not.
local function lk_load(self_id)
  local now_s = now_ms_str()
  local now = tonumber(now_s)
  local raw = redis.call('HGETALL', KEYS[1])
  -- every script leaves only live holders, and the name in the index while it has any
  local st = {now = now, now_s = now_s, raw = raw, r = 0, w = 0, x = 0, first = false,
              last = 0, indexed = #raw > 0, extended = false}
  for i = 1, #raw, 2 do
    local mode, agent, expires, token = holder_fields(raw[i + 1])
    if mode and expires > now and lk_is_mode(mode) then
      if raw[i] == self_id then
        st.mine = {mode, agent, expires, token, self_id}
      else
        lk_hold(st, mode, expires)
      end
    else
      local expired = st.expired or {}
      expired[#expired + 1] = i
      st.expired = expired
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

-- A queued waiter's mode, agent, lease (ms, text), alive_until (ms) and wake channel; or
-- nil if missing or malformed, and then a sixth value, true if the entry is a tombstone.
local function lk_waiter(id)
  local v = redis.call('HGET', KEYS[3], id)
  if not v then return nil end
  local mode, agent, lease, alive, wake = string.match(v, '^(%a+)|([^|]*)|(%d+)|(%d+)|(.*)$')
  if not lk_is_mode(mode) then
    return nil, nil, nil, nil, nil, lk_tombstone_until(v) ~= nil
  end
  return mode, agent, lease, tonumber(alive), wake
end

-- A lease argument in ms, or nil if it is not a positive integer.
local function lk_lease_ms(arg)
  local lease = tonumber(arg)
  if not lease or lease < 1 or lease ~= math.floor(lease) then return nil end
  return lease
end

-- Drop expired holders, announcing lock_expired.
local function lk_purge(st)
  local raw = st.raw
  if not st.expired then return end
  for _, i in ipairs(st.expired) do
    redis.call('HDEL', KEYS[1], raw[i])
    local mode, agent, _, token = holder_fields(raw[i + 1])
    if lk_is_mode(mode) then lk_event(st, 'lock_expired', agent, mode, token) end
  end
end

-- Give back the caller's live lease (st.mine, the holder id lk_load was given), announcing
-- lock_released; returns it, or nil if it held nothing (any more).
local function lk_release(st)
  local held = st.mine
  if held then
    redis.call('HDEL', KEYS[1], held[5])
    lk_event(st, 'lock_released', held[2], held[1], held[4])
  end
  return held
end

-- true if a lease of `mode` fits with every counted holder
local function lk_fits(st, mode)
  if st.x > 0 then return false end
  if mode == 'read' then return true end
  if mode == 'write' then return st.w == 0 end
  return st.r + st.w == 0
end

-- {12, held_mode, blocker} if a `mode` request queued now would wait on a hold the caller
-- itself keeps: `own_ids` lists (comma separated) the holder ids its process holds on this
-- name as this agent (held, renewed, not being released: a wait on them can never end). The
-- request conflicts with one of them, or a waiter it would queue behind does. Else nil.
-- Holds of the same agent that the caller does not list (a lease orphaned by a failed
-- release, another process with the same agent name) are waited for like anyone's: they end
-- by themselves.
local function lk_self_deadlock(st, agent, mode, own_ids)
  if own_ids == '' then return nil end
  local own, raw = {}, st.raw
  for hid in string.gmatch(own_ids, '[^,]+') do
    for i = 1, #raw, 2 do
      if raw[i] == hid then
        local m, _, expires = holder_fields(raw[i + 1])
        if lk_is_mode(m) and expires > st.now then
          if not lk_compat(mode, m) then return {12, m, agent} end
          own[#own + 1] = m
        end
      end
    end
  end
  if #own == 0 then return nil end
  for _, wid in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    local w_mode, w_agent, _, w_alive = lk_waiter(wid)
    if w_mode and w_alive > st.now then
      for _, held in ipairs(own) do
        if not lk_compat(w_mode, held) then return {12, held, w_agent} end
      end
    end
  end
  return nil
end

-- Grant the queue head and every waiter behind it that fits with all holders, up to the
-- first that does not; abandoned waiters met at the head are dropped. `new` (optional) is
-- the caller's request not queued yet, {id, mode, agent, lease_ms, wake}: it comes after
-- everyone queued. Returns the token and the lease (ms) if `self_id` was granted, else nil;
-- every other grantee is woken on its channel.
local function lk_grant(st, self_id, new)
  while true do
    local id = redis.call('LINDEX', KEYS[2], 0)
    local stored, mode, agent, lease, alive, wake = true, nil, nil, nil, nil, nil
    if id then
      mode, agent, lease, alive, wake = lk_waiter(id)
      if not mode or alive <= st.now then  -- malformed, or abandoned: dropped
        redis.call('LPOP', KEYS[2])
        redis.call('HDEL', KEYS[3], id)
        mode = nil
      end
    else
      st.qempty = true
      if not new then return nil end
      stored, id, mode, agent, lease, wake = false, new[1], new[2], new[3], new[4], new[5]
    end
    if mode then
      if not lk_fits(st, mode) then
        if stored then st.qempty = false end
        return nil
      end
      local token = ''
      if mode ~= 'read' then token = string.format('%d', redis.call('INCR', KEYS[4])) end
      local expires = st.now + tonumber(lease)
      redis.call('HSET', KEYS[1], id, lk_holder_value(mode, agent, expires, token))
      lk_hold(st, mode, expires)
      st.extended = true
      if stored then
        redis.call('LPOP', KEYS[2])
        redis.call('HDEL', KEYS[3], id)
      end
      lk_event(st, 'lock_acquired', agent, mode, token)
      if id == self_id then return token, tonumber(lease) end
      redis.call('PUBLISH', wake, id .. '|' .. token .. '|' .. lease .. '|' .. st.now_s)
      -- nothing is compatible with exclusive: no need to look at the next waiter
      if mode == 'exclusive' then return nil end
    end
  end
end

-- Keep the queue's keys alive until a waiter alive until `alive` (ms) has gone: never
-- shorten their expiry. When it must grow, it grows by a grace more, so that the waiters
-- queued next need not extend it again.
local function lk_keep_queue(st, alive)
  local keep = alive - st.now + LK_GRACE_MS
  if redis.call('PTTL', KEYS[2]) < keep then
    local ms = string.format('%d', keep + LK_GRACE_MS)
    redis.call('PEXPIRE', KEYS[2], ms)
    redis.call('PEXPIRE', KEYS[3], ms)
  end
end

-- How long a waiter may sleep before it re-checks: until the earliest holder expiry (a dead
-- holder is then replaced), and at most half its own lease (its entry stays alive, and a
-- grant whose wake-up was lost is found long before that lease ends).
local function lk_recheck_ms(st, lease)
  local wait = math.floor(lease / 2)
  if st.first then
    local left = st.first - st.now + 2
    if left < wait then wait = left end
  end
  if wait < 1 then wait = 1 end
  return wait
end

-- Keep the holders' expiry and the index in step with what is left.
local function lk_finish(st)
  if st.extended then
    redis.call('PEXPIRE', KEYS[1], string.format('%d', st.last - st.now + LK_GRACE_MS))
  end
  local none = st.r + st.w + st.x == 0
  if none and st.qempty == nil then st.qempty = redis.call('LLEN', KEYS[2]) == 0 end
  if none and st.qempty then
    redis.call('SREM', KEYS[5], ARGV[1])
  elseif not st.indexed then
    redis.call('SADD', KEYS[5], ARGV[1])
  end
end
