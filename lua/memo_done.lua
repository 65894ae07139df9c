-- memo_done.lua: compute-once, step 2 (success). Store the result with what it cost, end
-- the claim and wake every counted waiter. A result is stored even if the caller's claim
-- lapsed meanwhile (its value is as good as anyone's), unless a result is already stored:
-- then that one is returned and stays the only result.
--
-- KEYS[1]  the memo hash          {s}/_memo/<digest>
-- KEYS[2]  its doorbell list      {s}/_memowake/<digest>
--
-- ARGV[1]  computing agent
-- ARGV[2]  its claim token
-- ARGV[3]  the result (msgpack)
-- ARGV[4]  how long the computation took, ms
-- ARGV[5]  result ttl in ms ("" = keep)
-- ARGV[6]  how long unread doorbell tokens live, ms
-- ARGV[7]  the computation's name (kept for inspection)
--
-- Returns one of
--   {0, lost}                         stored; lost = 1 if the caller's claim had lapsed
--   {1, value, compute_ms, agent}     another result was stored first: use it

local memo = KEYS[1]
local f = redis.call('HMGET', memo, 'state', 'token', 'waiters', 'value', 'compute_ms', 'agent')
if f[1] == 'done' then return {1, f[4], f[5], f[6]} end
local lost = 1
if f[1] == 'running' and f[2] == ARGV[2] then lost = 0 end
local waiters = tonumber(f[3] or '0')
redis.call('DEL', memo)
redis.call('HSET', memo, 'state', 'done', 'value', ARGV[3], 'compute_ms', ARGV[4],
           'agent', ARGV[1], 'done_ms', now_ms(), 'name', ARGV[7])
if ARGV[5] ~= '' then redis.call('PEXPIRE', memo, ARGV[5]) end
ring(KEYS[2], waiters, ARGV[6])
return {0, lost}
