-- observe.lua: announce a change that another tool (redis-cli HSET, a script of someone
-- else's) made to the value of a memory object, once, and make the object consistent again.
--
-- memgang's write.lua stores the value's SHA-1 in the `hash` field next to the value `v`, in
-- the same step as the value. A value whose SHA-1 is not its `hash` (or an object without a
-- version) was therefore changed behind memgang's back. This script gives that change a new
-- version from the swarm's counter, records the new hash, and logs + publishes a
-- memory_updated event with agent null. Because the object is consistent afterwards, a second
-- call for the same change -- every subscribed process sees the keyspace notification and
-- calls this -- finds nothing to announce: each foreign change is logged exactly once.
-- A change that leaves `v` alone (HSET of metadata fields only) is not detected.
--
-- KEYS[1]  the object hash                  {s}/space/id
-- KEYS[2]  the swarm's version counter      {s}/_seq
-- KEYS[3]  the swarm's event log (stream)   {s}/_log
-- KEYS[4]  index of all objects (zset)      {s}/_idx/all
-- KEYS[5]  the log's position counter       {s}/_logn
--
-- ARGV[1]  approximate max length of the event log
-- ARGV[2]  swarm name (for the event)
-- ARGV[3]  event channel
--
-- Returns one of
--   {0}                     nothing to announce: not a hash with a value `v`, or consistent
--   {1, event_id, version}  the foreign change was versioned and announced

local obj = KEYS[1]
if redis.call('TYPE', obj).ok ~= 'hash' then return {0} end
local f = redis.call('HMGET', obj, 'v', 'hash', 'ver', 'agent', 'ctime', 'group', 'ctx')
local value = f[1]
if not value then return {0} end
local digest = redis.sha1hex(value)
if f[3] and f[2] == digest then return {0} end

local now = now_ms()
local version = redis.call('INCR', KEYS[2])
local fields = {'ver', version, 'hash', digest, 'mtime', now}
if not f[4] then fields[#fields + 1] = 'agent'; fields[#fields + 1] = '' end
if not f[5] then fields[#fields + 1] = 'ctime'; fields[#fields + 1] = now end
local extra = ',"size":' .. #value .. ',"scope":{"group":' .. json_or_null(f[6])
  .. ',"context":' .. json_or_null(f[7]) .. '},"cause":"foreign"'
-- the event first: its hset notification must directly follow it (events.KeyspaceTracker)
local id = emit(KEYS[3], ARGV[1], ARGV[3],
                event_body('memory_updated', ARGV[2], obj, nil, version, now, extra))
redis.call('HSET', obj, unpack(fields))
redis.call('ZADD', KEYS[4], 'NX', now, obj)
return {1, id, version}
