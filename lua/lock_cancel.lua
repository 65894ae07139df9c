-- lock_cancel.lua: withdraw a request (acquire timed out, or the waiter was interrupted).
-- The waiter leaves the queue; if it was granted in the meantime the grant is given back.
-- Either way whoever it was blocking is granted and woken in the same step.
--
-- The cancel may overtake its own request: an interrupted caller sends it on another
-- connection while the request is still on its way. When nothing of the request is here
-- (not queued, not held), the cancel leaves a tombstone "cancelled|<until_ms>" under the
-- waiter id in the waiters hash; lock_acquire.lua obeys it (queues and grants nothing,
-- returns {14}) and removes it. The waiters hash is kept for at least LK_GRACE_MS after.
-- (A late re-check needs no tombstone: lock_acquire never starts a request from one.)
-- Tombstones whose request never comes (it was lost before it was sent) are dropped once
-- past their time, when they outnumber the queue by LK_TOMBSTONE_SLACK: by a sweep of the
-- whole hash, at most once per LK_SWEEP_EVERY_MS (the field LK_SWEEP_FIELD of the hash
-- holds when the next may run), so that a storm of such cancels costs each one O(1), not a
-- sweep of every tombstone still within its time.
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
-- ARGV[5]  waiter id
--
-- Returns {0, given_back}: given_back is 1 if the request had been granted and was released.

local id = ARGV[5]
local st = lk_load(id)
lk_purge(st)
local queued = redis.call('HDEL', KEYS[3], id) == 1
if queued then redis.call('LREM', KEYS[2], 1, id) end
local held = lk_release(st)
if not queued and not held then
  redis.call('HSET', KEYS[3], id, 'cancelled|' .. dec(st.now + LK_GRACE_MS))
  if redis.call('HLEN', KEYS[3]) > redis.call('LLEN', KEYS[2]) + LK_TOMBSTONE_SLACK
      and (tonumber(redis.call('HGET', KEYS[3], LK_SWEEP_FIELD)) or 0) <= st.now then
    local all = redis.call('HGETALL', KEYS[3])
    for i = 1, #all, 2 do
      local til = lk_tombstone_until(all[i + 1])
      if til and til < st.now then redis.call('HDEL', KEYS[3], all[i]) end
    end
    redis.call('HSET', KEYS[3], LK_SWEEP_FIELD, dec(st.now + LK_SWEEP_EVERY_MS))
  end
  if redis.call('PTTL', KEYS[3]) < LK_GRACE_MS then
    redis.call('PEXPIRE', KEYS[3], LK_GRACE_MS)
  end
end
lk_grant(st, nil, nil)
lk_finish(st)
return {0, held and 1 or 0}
