-- read.lua: read one memory object, honouring its readable_by list and exclusive locks.
--
-- KEYS[1]  the object hash                  {s}/space/id
-- KEYS[2]  lock holders of this key (hash)  {s}/_lock/space/id
--
-- ARGV[1]  reader agent name
--
-- Returns one of
--   {v, ver, agent, ctime, mtime, hash, group, ctx, tags, rb, wb, df, pttl_ms}
--        the object (missing fields are nil; pttl_ms is -1 when it does not expire). It is
--        HMGET's own reply, handed back as it is: copying it into a new table cost a sixth
--        of every read. Its first element is the value (a string); every refusal below
--        starts with an integer code.
--   {9}                       no such object
--   {3, holder, "exclusive"}  another agent holds an exclusive lock on the key
--   {5, readable_by_json}     the reader is not in readable_by

local f = redis.call('HMGET', KEYS[1], 'v', 'ver', 'agent', 'ctime', 'mtime', 'hash', 'group',
                     'ctx', 'tags', 'rb', 'wb', 'df', 'exp')
if not f[2] then return {9} end
local refusal = acl_refusal(f[10], ARGV[1])
if refusal then return refusal end
if redis.call('EXISTS', KEYS[2]) == 1 then
  refusal = lock_refusal(KEYS[2], ARGV[1], nil, now_ms(), true)
  if refusal then return refusal end
end
-- 'exp' marks objects written with a TTL: only those need a PTTL call
f[13] = f[13] and redis.call('PTTL', KEYS[1]) or -1
return f
