-- lock_renew.lua: extend a live lease to now + lease_ms (server time); the watchdog calls it
-- every lease/3. A lease that already ended is not revived: the caller has lost the lock.
-- Expired holders found on the way are dropped and whoever they blocked is granted.
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
-- ARGV[5]  holder id
-- ARGV[6]  lease in ms
--
-- Returns one of
--   {0, lease_ms}   renewed: the lease now ends lease_ms after this call ran
--   {13}            the lease had ended (expired, or released): not renewed

local lease = lk_lease_ms(ARGV[6])
if not lease then
  return redis.error_reply('lease must be a positive integer of ms, got ' .. tostring(ARGV[6]))
end
local st = lk_load(ARGV[5])
local held = st.mine
lk_purge(st)
if held then
  local expires = st.now + lease
  lk_hold(st, held[1], expires)
  st.extended = true
  redis.call('HSET', KEYS[1], ARGV[5], lk_holder_value(held[1], held[2], expires, held[4]))
end
if st.expired then lk_grant(st, nil, nil) end
lk_finish(st)
if held then return {0, lease} end
return {13}
