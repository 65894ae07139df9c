-- lock_inspect.lua: the state of one lock, for `memgang locks` and Swarm.locks(): holders,
-- queue and waiters as stored, with the server time to compute the lease left. Changes no
-- lock state; only drops the name from the index when nothing is left of it (its keys
-- expired).
--
-- KEYS[1]  lock holders (hash)            {s}/_lock/space/id
-- KEYS[2]  lock queue (list of ids)       {s}/_lockq/space/id
-- KEYS[3]  queued waiters (hash)          {s}/_lockw/space/id
-- KEYS[4]  newest fencing token           {s}/_fence/space/id
-- KEYS[5]  names with holders or waiters  {s}/_locks
--
-- ARGV[1]  lock name (full key)
--
-- Returns {now_ms, holders, queue, waiters, fence}: holders and waiters flat
-- [field, value, ...] lists as in _lock.lua, queue the ids oldest first, fence the newest
-- token ("" if none was ever issued).

local holders = redis.call('HGETALL', KEYS[1])
local queue = redis.call('LRANGE', KEYS[2], 0, -1)
if #holders == 0 and #queue == 0 then redis.call('SREM', KEYS[5], ARGV[1]) end
return {now_ms(), holders, queue, redis.call('HGETALL', KEYS[3]),
        redis.call('GET', KEYS[4]) or ''}
