-- read.lua: read one memory object, honouring its readable_by list and exclusive locks.
--
-- KEYS[1]  the object hash                  {s}/space/id
-- KEYS[2]  lock holders of this key (hash)  {s}/_lock/space/id
--
-- ARGV[1]  reader agent name
--
-- Returns one of
--   {0, v, ver, agent, ctime, mtime, hash, group, ctx, tags, rb, wb, df, pttl_ms}
--        (missing fields are false; pttl_ms is -1 when the object does not expire)
--   {9}                       no such object
--   {3, holder, "exclusive"}  another agent holds an exclusive lock on the key
--   {5, readable_by_json}     the reader is not in readable_by

local f = redis.call('HMGET', KEYS[1], 'v', 'ver', 'agent', 'ctime', 'mtime', 'hash', 'group',
                     'ctx', 'tags', 'rb', 'wb', 'df', 'exp')
if not f[2] then return {9} end
local refusal = acl_refusal(f[10], ARGV[1])
if refusal then return refusal end
if redis.call('EXISTS', KEYS[2]) == 1 then
  refusal = lock_refusal(KEYS[2], ARGV[1], nil, now_ms(), {exclusive = true})
  if refusal then return refusal end
end
local out = {0}
for i = 1, 12 do out[i + 1] = f[i] end
-- 'exp' marks objects written with a TTL: only those need a PTTL call
out[14] = f[13] and redis.call('PTTL', KEYS[1]) or -1
return out
