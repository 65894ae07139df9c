-- share.lua: announce a finding to the swarm: a knowledge_shared event in the log and on the
-- channel, in one step. No object is written; the log keeps it for agents that join later.
--
-- KEYS[1]  the swarm's event log (stream)   {s}/_log
-- KEYS[2]  the log's position counter       {s}/_logn
--
-- ARGV[1]  sharing agent
-- ARGV[2]  topic (a validated name)
-- ARGV[3]  the value, JSON
-- ARGV[4]  approximate max length of the event log
-- ARGV[5]  swarm name
-- ARGV[6]  event channel
--
-- Returns the event's log id.

local extra = ',"topic":' .. jstr(ARGV[2]) .. ',"value":' .. ARGV[3]
return emit(KEYS[1], ARGV[4], ARGV[6],
            event_body('knowledge_shared', ARGV[5], nil, ARGV[1], 0, now_ms(), extra))
