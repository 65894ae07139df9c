-- _agent.lua: helpers of the agent_* scripts, prepended to each of them by
-- memgang/scripts.py (after _lib.lua). Defines local functions only.
--
-- Both scripts take the same first KEYS:
--   KEYS[1]  presence (zset: agent -> deadline ms)     {s}/_presence
--   KEYS[2]  agents (hash: agent -> description JSON)  {s}/_agents
--   KEYS[3]  the swarm's event log (stream)            {s}/_log

-- Remove agent `name` from presence and descriptions and emit agent_left with `reason` (a
-- JSON string) and its last description. Returns false if it was not present.
local function ag_leave(name, reason_json, now, maxlen, swarm, channel)
  if redis.call('ZREM', KEYS[1], name) == 0 then return false end
  local info = redis.call('HGET', KEYS[2], name) or 'null'
  redis.call('HDEL', KEYS[2], name)
  emit(KEYS[3], maxlen, channel, event_body('agent_left', swarm, nil, name, 0, now,
       ',"reason":' .. reason_json .. ',"info":' .. info))
  return true
end
