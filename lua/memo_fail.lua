-- memo_fail.lua: compute-once, step 2 (failure or abandon). If the caller still holds the
-- claim: keep its error for the claim's waiters (or, with an empty error type, just drop
-- the claim so that one waiter takes over at once), and wake every counted waiter. A claim
-- that is no longer the caller's is left alone.
--
-- KEYS[1]  the memo hash          {s}/_memo/<digest>
-- KEYS[2]  its doorbell list      {s}/_memowake/<digest>
--
-- ARGV[1]  computing agent
-- ARGV[2]  its claim token
-- ARGV[3]  the exception's type name ("" = abandon the claim, store no error)
-- ARGV[4]  the exception's message
-- ARGV[5]  how long the error is kept for the waiters, ms
-- ARGV[6]  how long unread doorbell tokens live, ms
--
-- Returns 1 if the claim was the caller's (and is now ended), 0 if it was not.

local memo = KEYS[1]
local f = redis.call('HMGET', memo, 'state', 'token', 'waiters')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
redis.call('DEL', memo)
if ARGV[3] ~= '' then
  redis.call('HSET', memo, 'state', 'error', 'token', ARGV[2], 'agent', ARGV[1],
             'etype', ARGV[3], 'emsg', ARGV[4], 'failed_ms', now_ms())
  redis.call('PEXPIRE', memo, ARGV[5])
end
ring(KEYS[2], tonumber(f[3] or '0'), ARGV[6])
return 1
