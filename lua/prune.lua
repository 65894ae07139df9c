-- prune.lua: an object vanished without memgang deleting it (it expired, was evicted, or
-- another tool deleted it): drop it from the given indexes and announce it, once.
-- The existence check, the removal and the event are one step, so an object re-created in
-- between is never dropped from its indexes. The announcement goes out only from the call
-- that actually removes the key from the index of all objects, so when several callers
-- notice the same disappearance (read_scope in any process, the keyspace watcher of every
-- subscribed process) exactly one event is logged. memgang's own delete.lua leaves that
-- index in the same step as the DEL, so a memgang delete is never announced twice.
--
-- KEYS[1]  the object hash                 {s}/space/id
-- KEYS[2]  the swarm's event log (stream)  {s}/_log
-- KEYS[3]  index of all objects (zset)     {s}/_idx/all
-- KEYS[4]  index by writer                {s}/_idx/agent
-- KEYS[5]  index by group                 {s}/_idx/group
-- KEYS[6]  index by context               {s}/_idx/context
-- KEYS[7]  the log's position counter     {s}/_logn
--
-- ARGV[1]  event type to announce: "memory_expired" or "memory_deleted"
-- ARGV[2]  cause, recorded in the event: "ttl", "evicted", "del" or "vanished"
-- ARGV[3]  approximate max length of the event log
-- ARGV[4]  swarm name (for the event)
-- ARGV[5]  event channel
-- ARGV[6]  writer under which the caller found the key in KEYS[4] ("" = none)
-- ARGV[7]  group under which the caller found it in KEYS[5] ("" = none)
-- ARGV[8]  context under which the caller found it in KEYS[6] ("" = none)
--
-- An index entry ("<value>\0<key>") is dropped when the object is gone, and also when the
-- object exists but no longer has that value (a stale entry left by an expired earlier
-- object at the same key).
--
-- Returns one of
--   {0}            the object exists: stale index entries dropped, nothing announced
--   {1, event_id}  dropped from the indexes and announced
--   {2}            it was already gone from the index of all objects: dropped from the
--                  other indexes, nothing announced (someone else announced it)

if ARGV[1] ~= 'memory_expired' and ARGV[1] ~= 'memory_deleted' then
  return redis.error_reply('prune: unknown event type ' .. tostring(ARGV[1]))
end
local obj = KEYS[1]
local fields = {'agent', 'group', 'ctx'}
local exists = redis.call('EXISTS', obj) == 1
for i = 1, 3 do
  local found = ARGV[5 + i]
  if found and found ~= '' then
    if not exists or redis.call('HGET', obj, fields[i]) ~= found then
      redis.call('ZREM', KEYS[3 + i], found .. '\0' .. obj)
    end
  end
end
if exists then return {0} end
local first = redis.call('ZREM', KEYS[3], obj)
if first == 0 then return {2} end
local extra = ',"scope":{"group":null,"context":null},"cause":' .. jstr(ARGV[2])
local id = emit(KEYS[2], ARGV[3], ARGV[5],
                event_body(ARGV[1], ARGV[4], obj, nil, 0, now_ms(), extra))
return {1, id}
