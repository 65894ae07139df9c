-- memo_claim.lua: compute-once, step 1. Return the stored result; or say who is computing
-- it now (and count the caller as a waiter, to be woken by the doorbell); or hand the
-- caller the claim: when nothing is stored, when the claimer's lease has lapsed (it died:
-- exactly one caller takes over, because this script is atomic), or when the claim the
-- caller waited on failed and it asks to retry. A caller that did not wait on a failed
-- claim never sees its error: it claims afresh.
--
-- KEYS[1]  the memo hash          {s}/_memo/<digest>
-- KEYS[2]  its doorbell list      {s}/_memowake/<digest>
--
-- ARGV[1]  calling agent
-- ARGV[2]  claim token the caller would hold (unique per call)
-- ARGV[3]  lease in ms
-- ARGV[4]  token of the claim the caller has been waiting on ("" = none)
-- ARGV[5]  "1": if the claim it waited on failed, claim it again; "0": report the error
-- ARGV[6]  how long a claim's hash lives without renewal, ms (a multiple of the lease)
--
-- Returns one of
--   {0, value, compute_ms, agent}           the stored result (value: msgpack)
--   {1, owner, owner_token, lease_left_ms}  another agent computes it; caller counted as waiter
--   {2, agent, error_type, error_message}   the claim ARGV[4] raised (and ARGV[5] == "0")
--   {3, lapsed_owner}                       the caller holds the claim now ("" = fresh claim)

local memo = KEYS[1]
local state = redis.call('HGET', memo, 'state')
if state == 'done' then
  local f = redis.call('HMGET', memo, 'value', 'compute_ms', 'agent')
  return {0, f[1], f[2], f[3]}
end
local now = now_ms()
local lapsed = ''
if state == 'running' then
  local f = redis.call('HMGET', memo, 'owner', 'token', 'lease_until')
  local left = tonumber(f[3]) - now
  if left > 0 then
    redis.call('HINCRBY', memo, 'waiters', 1)
    return {1, f[1], f[2], left}
  end
  lapsed = f[1]
elseif state == 'error' and ARGV[4] ~= '' and ARGV[5] ~= '1' then
  local f = redis.call('HMGET', memo, 'token', 'agent', 'etype', 'emsg')
  if f[1] == ARGV[4] then return {2, f[2], f[3], f[4]} end
end
redis.call('DEL', memo, KEYS[2])
redis.call('HSET', memo, 'state', 'running', 'owner', ARGV[1], 'token', ARGV[2],
           'lease_until', now + tonumber(ARGV[3]), 'started_ms', now, 'waiters', 0)
redis.call('PEXPIRE', memo, ARGV[6])
return {3, lapsed}
