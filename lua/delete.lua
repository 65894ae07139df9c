-- delete.lua: delete one memory object, leave its indexes and announce memory_deleted, in
-- one atomic step. The same refusals as write.lua apply: writable_by, fencing, locks,
-- compare-and-set.
--
-- KEYS[1]  the object hash                  {s}/space/id
-- KEYS[2]  the swarm's event log (stream)   {s}/_log
-- KEYS[3]  index of all objects             {s}/_idx/all
-- KEYS[4]  index by writer  ("<agent>\0<key>" members)    {s}/_idx/agent
-- KEYS[5]  index by group   ("<group>\0<key>" members)    {s}/_idx/group
-- KEYS[6]  index by context ("<context>\0<key>" members)  {s}/_idx/context
-- KEYS[7]  lock holders of this key         {s}/_lock/space/id
-- KEYS[8]  newest fencing token of the key  {s}/_fence/space/id
-- KEYS[9]  the log's position counter       {s}/_logn
--
-- ARGV[1]  deleting agent
-- ARGV[2]  expected version ("" = any)
-- ARGV[3]  fencing token ("" = none)
-- ARGV[4]  approximate max length of the event log
-- ARGV[5]  swarm name
-- ARGV[6]  event channel
--
-- Returns one of
--   {0, version, event_id}      deleted
--   {9}                         no such object
--   {1, current_version}        expected version did not match
--   {3, holder, mode}           locked by someone else
--   {4, newest_token}           stale fencing token
--   {5, writable_by_json}       not in writable_by

local obj = KEYS[1]
local agent = ARGV[1]
local f = redis.call('HMGET', obj, 'ver', 'agent', 'group', 'ctx', 'wb')
local ver = tonumber(f[1])
if ver == nil then return {9} end
local now = now_ms()
local refusal = acl_refusal(f[5], agent) or fence_refusal(KEYS[8], ARGV[3])
  or lock_refusal(KEYS[7], agent, ARGV[3], now, false)
if refusal then return refusal end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= ver then return {1, ver} end

local writer, group, ctx = f[2] or '', f[3] or '', f[4] or ''
local extra = ',"scope":{"group":' .. json_or_null(group) .. ',"context":'
  .. json_or_null(ctx) .. '}'
-- the event first: the object's del notification must directly follow it (how listeners
-- tell memgang's changes from other tools', events.KeyspaceTracker)
local id = emit(KEYS[2], ARGV[4], ARGV[6],
                event_body('memory_deleted', ARGV[5], obj, agent, ver, now, extra))
redis.call('DEL', obj)
redis.call('ZREM', KEYS[3], obj)
if writer ~= '' then redis.call('ZREM', KEYS[4], writer .. '\0' .. obj) end
if group ~= '' then redis.call('ZREM', KEYS[5], group .. '\0' .. obj) end
if ctx ~= '' then redis.call('ZREM', KEYS[6], ctx .. '\0' .. obj) end
return {0, ver, id}
