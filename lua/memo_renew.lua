-- memo_renew.lua: compute-once watchdog. Extend the caller's claim lease while its function
-- runs; a claim that lapsed and was taken over (or ended) is not the caller's any more.
--
-- KEYS[1]  the memo hash          {s}/_memo/<digest>
--
-- ARGV[1]  the caller's claim token
-- ARGV[2]  lease in ms
-- ARGV[3]  how long the claim's hash lives without renewal, ms
--
-- Returns 1 if renewed, 0 if the claim is no longer the caller's.

local f = redis.call('HMGET', KEYS[1], 'state', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', now_ms() + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
