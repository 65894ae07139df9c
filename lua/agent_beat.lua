-- agent_beat.lua: an agent's heartbeat, which is also how it joins. Push the caller's
-- presence deadline to now + ttl; if it was not present (first beat, or its entry had
-- lapsed), record its description and emit agent_joined. Every beat first reaps the agents
-- whose deadline has passed (they died or hung without leaving): each is removed and gets
-- an agent_left event with reason "expired", so the living announce the dead.
--
-- KEYS[1]  presence (zset: agent -> deadline ms)     {s}/_presence
-- KEYS[2]  agents (hash: agent -> description JSON)  {s}/_agents
-- KEYS[3]  the swarm's event log (stream)            {s}/_log
-- KEYS[4]  the log's position counter                {s}/_logn
--
-- ARGV[1]  agent name
-- ARGV[2]  its description: a JSON object (role, pid, host, started_ms)
-- ARGV[3]  presence ttl in ms
-- ARGV[4]  approximate max length of the event log
-- ARGV[5]  swarm name
-- ARGV[6]  event channel
-- ARGV[7]  at most this many expired agents are reaped per beat
--
-- Returns {joined, reaped}: joined = 1 if this beat (re)joined the caller, reaped = how
-- many expired agents it removed.

local presence, agents, log = KEYS[1], KEYS[2], KEYS[3]
local me = ARGV[1]
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', presence, '-inf', now, 'LIMIT', 0,
                           tonumber(ARGV[7]))
for _, name in ipairs(expired) do
  ag_leave(name, '"expired"', now, ARGV[4], ARGV[5], ARGV[6])
end
local joined = 0
if not redis.call('ZSCORE', presence, me) then
  joined = 1
  redis.call('HSET', agents, me, ARGV[2])
  emit(log, ARGV[4], ARGV[6], event_body('agent_joined', ARGV[5], nil, me, 0, now,
       ',"info":' .. ARGV[2]))
end
redis.call('ZADD', presence, now + tonumber(ARGV[3]), me)
return {joined, #expired}
