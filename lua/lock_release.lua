-- lock_release.lua: give a lease back and, in the same step, grant the next waiters (the
-- queue head and every waiter behind it that fits, up to the first that does not) and wake
-- exactly them on their processes' wake channels. Announces lock_released (and
-- lock_expired / lock_acquired for what else changed).
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
-- ARGV[5]  holder id (the waiter id its grant was made for)
--
-- Returns one of
--   {0}    released
--   {13}   the lease was no longer held (it expired, and may have been granted to another)

local st = lk_load(ARGV[5])
lk_purge(st)
local held = lk_release(st)
lk_grant(st, nil, nil)
lk_finish(st)
if held then return {0} end
return {13}
