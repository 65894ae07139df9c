-- prune.lua: drop an object that no longer exists (it expired, or another tool deleted it)
-- from the given indexes. The existence check and the removal are one step, so an object
-- re-created in between is never dropped from its indexes.
--
-- KEYS[1]     the object hash             {s}/space/id
-- KEYS[2..n]  index sorted sets to leave
--
-- Returns 1 if the object was missing and has been removed from the indexes, 0 if it exists.

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], KEYS[1]) end
return 1
