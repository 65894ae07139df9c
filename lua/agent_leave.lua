-- agent_leave.lua: an agent leaves the swarm cleanly: remove its presence and description
-- and emit agent_left (with the given reason), in one step. Leaving twice, or after being
-- reaped as expired, changes nothing and emits nothing.
--
-- KEYS[1]  presence (zset: agent -> deadline ms)     {s}/_presence
-- KEYS[2]  agents (hash: agent -> description JSON)  {s}/_agents
-- KEYS[3]  the swarm's event log (stream)            {s}/_log
-- KEYS[4]  the log's position counter                {s}/_logn
--
-- ARGV[1]  agent name
-- ARGV[2]  reason, a JSON string (e.g. "\"stopped\"")
-- ARGV[3]  approximate max length of the event log
-- ARGV[4]  swarm name
-- ARGV[5]  event channel
--
-- Returns 1 if the agent was present and has left, 0 if it was not present.

if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local info = redis.call('HGET', KEYS[2], ARGV[1]) or 'null'
redis.call('HDEL', KEYS[2], ARGV[1])
emit(KEYS[3], ARGV[3], ARGV[5], event_body('agent_left', ARGV[4], nil, ARGV[1], 0, now_ms(),
     ',"reason":' .. ARGV[2] .. ',"info":' .. info))
return 1
