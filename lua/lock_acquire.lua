-- lock_acquire.lua: ask for a read / write / exclusive lease on a name, or re-check a request
-- already queued (same id). Granted at once only if nobody is queued ahead and the mode fits
-- with every live holder; otherwise the request joins the FIFO queue (see _lock.lua for the
-- state, the grant rule and the wake-ups). A write or exclusive grant INCRs the name's fence
-- and returns the new token. An agent that already holds the name and would wait on its own
-- hold (one its process holds and lists in ARGV[11]) is refused before anything is written.
--
-- KEYS[1]  lock holders (hash)            {s}/_lock/space/id
-- KEYS[2]  lock queue (list of ids)       {s}/_lockq/space/id
-- KEYS[3]  queued waiters (hash)          {s}/_lockw/space/id
-- KEYS[4]  newest fencing token           {s}/_fence/space/id
-- KEYS[5]  names with holders or waiters  {s}/_locks
-- KEYS[6]  the swarm's event log          {s}/_log
-- KEYS[7]  the log's position counter       {s}/_logn
--
-- ARGV[1]  lock name (full key)
-- ARGV[2]  swarm name
-- ARGV[3]  event channel
-- ARGV[4]  approximate max length of the event log
-- ARGV[5]  waiter id (random per acquisition; re-sent unchanged by each re-check)
-- ARGV[6]  agent name
-- ARGV[7]  mode: "read" | "write" | "exclusive"
-- ARGV[8]  lease in ms (the lease starts when the grant is made)
-- ARGV[9]  wake channel of the caller's process ({s}/_wake/<listener id>)
-- ARGV[10] "1": do not queue (timeout 0); "" = queue if not grantable now
-- ARGV[11] holder ids the caller's process holds on this name as this agent, comma
--          separated ("" = none): the self-deadlock check looks only at these
-- ARGV[12] "1": a re-check of a request this id already made; "" = a first request
--
-- Returns one of
--   {0, token, lease_left_ms}        granted (token "" for read); on a re-check of a request
--                                    granted meanwhile, the lease left of that grant
--   {10, recheck_ms, position, now_ms}  queued (position 1 = head): wait for the wake-up,
--                                    and re-check (same id) after recheck_ms at the latest;
--                                    now_ms, the server time, anchors the wake-up's grant time
--   {11, recheck_ms}                 not grantable now, and ARGV[10] = "1": nothing queued
--   {12, held_mode, blocker_agent}   the caller holds the name in held_mode (ARGV[11]) and
--                                    this request would wait on that hold: refused, nothing
--                                    queued
--   {14}                             nothing queued: the request was cancelled before it
--                                    arrived (its lock_cancel overtook it), or it is a
--                                    re-check whose entry is gone (cancelled, or dropped as
--                                    abandoned): a waiter still waiting asks again afresh

local id, agent, mode = ARGV[5], ARGV[6], ARGV[7]
local lease = lk_lease_ms(ARGV[8])
if not lk_is_mode(mode) then return redis.error_reply('unknown lock mode ' .. tostring(mode)) end
if not lease then
  return redis.error_reply('lease must be a positive integer of ms, got ' .. tostring(ARGV[8]))
end

local st = lk_load(id)

-- The common case under contention: a first request (no own holds, not try-only) that finds
-- live holders, no expired one and a queue. It queues, and nothing else can change: every
-- lock script leaves the queue head not grantable, and only an expiry (a holder's, which
-- this path would purge) makes it so. HSETNX both writes the entry and sees a tombstone: a
-- request whose cancel came first takes the full path below.
if not st.mine and not st.expired and st.r + st.w + st.x > 0 and ARGV[10] == ''
    and ARGV[11] == '' and ARGV[12] == '' and redis.call('LLEN', KEYS[2]) > 0 then
  local alive = st.now + lease + LK_WAITER_SLACK_MS
  if redis.call('HSETNX', KEYS[3], id, lk_waiter_value(mode, agent, ARGV[8], alive, ARGV[9]))
      == 1 then
    local pos = redis.call('RPUSH', KEYS[2], id)
    lk_keep_queue(st, alive)
    return {10, lk_recheck_ms(st, lease), pos, st.now}
  end
end
-- @helpers
-- (the helpers only the rest of the script uses are made here: the common case above does
-- not pay for them)

local held = st.mine
local w_mode, w_agent, w_lease, w_alive, w_wake, cancelled = nil, nil, nil, nil, nil, false
if not held then w_mode, w_agent, w_lease, w_alive, w_wake, cancelled = lk_waiter(id) end
if cancelled then  -- its cancel came first (lock_cancel.lua): nothing is queued or granted
  redis.call('HDEL', KEYS[3], id)
  return {14}
end
if not held and not w_mode then
  -- a re-check never starts a request: one that arrives after its cancel (sent on another
  -- connection by an interrupted caller) must not queue or take a lease nobody will release
  if ARGV[12] == '1' then return {14} end
  local refusal = lk_self_deadlock(st, agent, mode, ARGV[11])
  if refusal then return refusal end
end

lk_purge(st)
if held then  -- a re-check that finds its request granted (its wake-up is on the way)
  lk_hold(st, held[1], held[3])
  lk_grant(st, nil, nil)
  lk_finish(st)
  return {0, held[4], held[3] - st.now}
end

local new = nil
if w_mode then  -- a re-check: still alive, keeps its place
  w_alive = st.now + tonumber(w_lease) + LK_WAITER_SLACK_MS
  redis.call('HSET', KEYS[3], id, lk_waiter_value(w_mode, w_agent, w_lease, w_alive, w_wake))
  lease = tonumber(w_lease)
else
  new = {id, mode, agent, lease, ARGV[9]}
end
local token, granted = lk_grant(st, id, new)
if token then
  lk_finish(st)
  return {0, token, granted}
end

local recheck = lk_recheck_ms(st, lease)
if new and ARGV[10] == '1' then
  lk_finish(st)
  return {11, recheck}
end
local pos
if new then
  w_alive = st.now + lease + LK_WAITER_SLACK_MS
  pos = redis.call('RPUSH', KEYS[2], id)
  redis.call('HSET', KEYS[3], id, lk_waiter_value(mode, agent, ARGV[8], w_alive, ARGV[9]))
else
  pos = redis.call('LPOS', KEYS[2], id)
  if pos then
    pos = pos + 1
  else  -- defensively: an entry that lost its place in the list queues again at the tail
    pos = redis.call('RPUSH', KEYS[2], id)
  end
end
st.qempty = false
lk_keep_queue(st, w_alive)
lk_finish(st)
return {10, recheck, pos, st.now}
