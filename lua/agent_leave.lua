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

if ag_leave(ARGV[1], ARGV[2], now_ms(), ARGV[3], ARGV[4], ARGV[5]) then return 1 end
return 0
