-- write.lua: create or update memory objects -- one, or a batch from write_many() -- each
-- under a conflict policy, with its indexes, its event (PUBLISH) and its log entry (XADD).
-- Each object's write is checked completely before anything of it is written, so a refused
-- object leaves nothing behind and publishes nothing; the others of the batch are unaffected.
-- The whole call is one atomic step.
--
-- Shared KEYS:
-- KEYS[1]  the swarm's version counter      {s}/_seq
-- KEYS[2]  the swarm's event log (stream)   {s}/_log
-- KEYS[3]  index of all objects (zset, scored by creation ms)   {s}/_idx/all
-- KEYS[4]  index by writer  (zset, members "<agent>\0<key>")    {s}/_idx/agent
-- KEYS[5]  index by group   (zset, members "<group>\0<key>")    {s}/_idx/group
-- KEYS[6]  index by context (zset, members "<context>\0<key>")  {s}/_idx/context
-- KEYS[7]  keys with conflicts (zset)       {s}/_conflicts
-- Then, for the i-th object (i = 1..N), four KEYS from k = 8 + 4 * (i - 1):
-- KEYS[k]    the object hash                  {s}/space/id
-- KEYS[k+1]  lock holders of this key (hash)  {s}/_lock/space/id
-- KEYS[k+2]  newest fencing token of the key  {s}/_fence/space/id
-- KEYS[k+3]  kept losing writes (hash)        {s}/_conflicts/space/id
-- KEYS[#KEYS]  the log's position counter     {s}/_logn        (so N = (#KEYS - 8) / 4)
--
-- The scope indexes hold "<value>\0<key>" members (score 0, read by ZRANGEBYLEX), so moving an
-- object to another writer, group or context is a ZREM + ZADD inside these three fixed keys:
-- the script never needs a key named after the previous scope.
--
-- ARGV[1]  the options, one value for the whole batch: a msgpack stream of these 16 strings
--          (one argument rather than sixteen: Redis turns each argument of a call into a
--          Lua string in a fresh table, which cost more than cmsgpack.unpack of them all)
--   1  writer agent name
--   2  policy: "lww" | "merge" | "manual"
--   3  ttl in ms: "" = no expiry (PERSIST)
--   4  group: "" = keep the object's group
--   5  context: "" = keep
--   6  tags (JSON array): "" = keep
--   7  readable_by (JSON array): "" = keep; "[]" = everyone
--   8  writable_by (JSON array): "" = keep; "[]" = everyone
--   9  approximate max length of the event log
--   10 max encoded value bytes (checked on the merged value)
--   11 swarm name (for the event)
--   12 event channel
--   13 conflict ids to clear, comma separated ("" = none): resolve() of manual conflicts
--   14 expected version: "" = any; "0" = must not exist; N = compare-and-set
--      (for "manual": the version the writer based its change on)
--   15 derived_from (JSON array of [key, version]): "" = none
--   16 fencing token: "" = none
-- Then, for the i-th object, two ARGV from a = 2 + 2 * (i - 1):
-- ARGV[a]    value: msgpack bytes (for "merge": a msgpack map of the fields to set)
-- ARGV[a+1]  SHA-1 (hex) of the value, computed by the client ("" for "merge", whose stored
--            value is made here); observe.lua compares it to spot changes made by others
--
-- Returns an array with one reply per object, in order: the new version (an integer) if the
-- object was written, else an array, one of
--   {1, current_version}                      expected version did not match
--   {2, current_version, conflict_id, event_id}  manual: write kept as a conflict
--   {3, holder_agent, mode}                   locked write/exclusive by someone else, or
--                                             by the writer without its fencing token
--   {4, newest_token}                         stale (or never issued) fencing token
--   {5, writable_by_json}                     writer not in writable_by
--   {7, reason}                               merge of / into something that is not a map,
--                                             or merged value over the size bound
--
-- This script runs on every write: it is written for the cost per call (Lua creates every
-- local function anew on each call, and prints every number handed to redis.call), so the
-- merge helpers exist only for merge calls and times and versions travel as text.

local n_objects = (#KEYS - 8) / 4

-- malformed calls are bugs of the caller: refuse them whole, before any write
if n_objects < 1 or n_objects % 1 ~= 0 or #ARGV ~= 1 + 2 * n_objects then
  return redis.error_reply('write: KEYS/ARGV do not describe whole objects')
end
local writer, policy, ttl, new_group, new_ctx, tags, readable_by, writable_by, log_maxlen,
      max_bytes, swarm, channel, settled_ids, expected, derived, fence = cmsgpack.unpack(ARGV[1])
if type(fence) ~= 'string' then
  return redis.error_reply('write: ARGV[1] is not the 16 options')
end
if policy ~= 'lww' and policy ~= 'merge' and policy ~= 'manual' then
  return redis.error_reply('unknown policy ' .. tostring(policy))
end
local exp = tonumber(expected)
if expected ~= '' and exp == nil then return redis.error_reply('bad expected version') end

local now = now_ms_str()

local merge
if policy == 'merge' then
  -- ---- msgpack: split a top-level map into raw (key, value) byte ranges -------------------
  -- Values are never decoded, so floats, big integers, binary and extension types survive a
  -- merge byte for byte (cmsgpack would turn 1.0 into 1 and round integers above 2^53).
  local function u8(s, i) return string.byte(s, i) end
  local function u16(s, i) local a, b = string.byte(s, i, i + 1); return a * 256 + b end
  local function u32(s, i)
    local a, b, c, d = string.byte(s, i, i + 3)
    return ((a * 256 + b) * 256 + c) * 256 + d
  end

  -- returns the position just after the object starting at i
  local function skip(s, i)
    local pending = 1
    while pending > 0 do
      local b = u8(s, i)
      if b == nil then error('truncated msgpack') end
      pending = pending - 1
      if b <= 0x7f or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3 then i = i + 1
      elseif b >= 0x80 and b <= 0x8f then pending = pending + 2 * (b - 0x80); i = i + 1
      elseif b >= 0x90 and b <= 0x9f then pending = pending + (b - 0x90); i = i + 1
      elseif b >= 0xa0 and b <= 0xbf then i = i + 1 + (b - 0xa0)
      elseif b == 0xc4 or b == 0xd9 then i = i + 2 + u8(s, i + 1)
      elseif b == 0xc5 or b == 0xda then i = i + 3 + u16(s, i + 1)
      elseif b == 0xc6 or b == 0xdb then i = i + 5 + u32(s, i + 1)
      elseif b == 0xc7 then i = i + 3 + u8(s, i + 1)
      elseif b == 0xc8 then i = i + 4 + u16(s, i + 1)
      elseif b == 0xc9 then i = i + 6 + u32(s, i + 1)
      elseif b == 0xca then i = i + 5
      elseif b == 0xcb then i = i + 9
      elseif b == 0xcc or b == 0xd0 then i = i + 2
      elseif b == 0xcd or b == 0xd1 then i = i + 3
      elseif b == 0xce or b == 0xd2 then i = i + 5
      elseif b == 0xcf or b == 0xd3 then i = i + 9
      elseif b == 0xd4 then i = i + 3
      elseif b == 0xd5 then i = i + 4
      elseif b == 0xd6 then i = i + 6
      elseif b == 0xd7 then i = i + 10
      elseif b == 0xd8 then i = i + 18
      elseif b == 0xdc then pending = pending + u16(s, i + 1); i = i + 3
      elseif b == 0xdd then pending = pending + u32(s, i + 1); i = i + 5
      elseif b == 0xde then pending = pending + 2 * u16(s, i + 1); i = i + 3
      elseif b == 0xdf then pending = pending + 2 * u32(s, i + 1); i = i + 5
      else error('bad msgpack byte') end
    end
    return i
  end

  -- returns an array of {key_bytes, value_bytes}, or nil if s is not exactly one map
  local function map_entries(s)
    local b = u8(s, 1)
    local n, i
    if b == nil then return nil end
    if b >= 0x80 and b <= 0x8f then n = b - 0x80; i = 2
    elseif b == 0xde then n = u16(s, 2); i = 4
    elseif b == 0xdf then n = u32(s, 2); i = 6
    else return nil end
    local out = {}
    for k = 1, n do
      local kend = skip(s, i)
      local vend = skip(s, kend)
      out[k] = {string.sub(s, i, kend - 1), string.sub(s, kend, vend - 1)}
      i = vend
    end
    if i ~= #s + 1 then return nil end
    return out
  end

  local function map_header(n)
    if n < 16 then return string.char(0x80 + n) end
    if n < 65536 then return string.char(0xde, math.floor(n / 256), n % 256) end
    return string.char(0xdf, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                       math.floor(n / 256) % 256, n % 256)
  end

  -- merge `patch` (msgpack map) into `stored` (msgpack map, or nil for a new object): returns
  -- the merged bytes, or nil and the reason
  merge = function(patch_bytes, stored)
    -- truncated or invalid msgpack raises inside skip(): caught, so one bad object is refused
    -- on its own instead of failing the rest of a batch
    local ok, patch = pcall(map_entries, patch_bytes)
    if not ok or patch == nil then return nil, 'merge patch is not a mapping' end
    if stored == nil then return patch_bytes end
    local base
    ok, base = pcall(map_entries, stored)
    if not ok or base == nil then return nil, 'stored value is not a mapping' end
    local pos = {}
    for k, kv in ipairs(base) do pos[kv[1]] = k end
    for _, kv in ipairs(patch) do
      local k = pos[kv[1]]
      if k then base[k][2] = kv[2] else base[#base + 1] = kv; pos[kv[1]] = #base end
    end
    local parts = {map_header(#base)}
    for _, kv in ipairs(base) do parts[#parts + 1] = kv[1]; parts[#parts + 1] = kv[2] end
    local merged = table.concat(parts)
    if #merged > tonumber(max_bytes) then
      return nil, 'merged value is ' .. #merged .. ' bytes; the limit is ' .. max_bytes
    end
    return merged
  end
end

-- move `obj` in a "<value>\0<key>" index from the old value to the new one
local function reindex(idx, obj, old, new)
  if new == '' or new == old then return end
  if old ~= '' then redis.call('ZREM', idx, old .. '\0' .. obj) end
  redis.call('ZADD', idx, 0, new .. '\0' .. obj)
end

-- The event members that are the same for every object of the call, encoded once; each
-- object's event is then one concatenation (members and order as event_body's, its `extra`
-- being size, scope and derived_from).
local ev_swarm = '","swarm":' .. jstr(swarm) .. ',"key":'
local ev_agent = ',"agent":' .. jstr(writer) .. ',"version":'
local ev_ts = ',"ts":' .. now .. ',"size":'
local ev_new_group = json_or_null(new_group)
local ev_tail = derived ~= '' and '},"derived_from":' .. derived .. '}' or '}}'

-- One object after another, in the main chunk rather than in a function per object: a
-- function here would capture some twenty of the locals above as upvalues, which Lua 5.1
-- builds (and closes) anew on every call, at a cost that showed as the largest share of the
-- script's own work. `repeat ... until true` gives the body a `break`: an object refused
-- leaves its reply and goes on to the next.
local replies = {}
for i = 1, n_objects do repeat
  local k = 8 + 4 * (i - 1)
  local a = 2 + 2 * (i - 1)
  local obj = KEYS[k]
  local value = ARGV[a]
  local digest = ARGV[a + 1]

  local cur = redis.call('HMGET', obj, 'ver', 'agent', 'group', 'ctx', 'wb', 'df', 'exp')
  local cur_ver = tonumber(cur[1]) or 0

  -- checks, in order; nothing is written before all of them pass
  local refusal = cur[5] and acl_refusal(cur[5], writer)
    or fence ~= '' and fence_refusal(KEYS[k + 2], fence)
    or lock_refusal(KEYS[k + 1], writer, fence, now, false)
  if refusal then replies[i] = refusal; break end

  -- compare-and-set (and the base version of a manual write)
  if policy ~= 'manual' and exp ~= nil and exp ~= cur_ver then replies[i] = {1, cur_ver}; break end

  -- merge: field-level, on the raw msgpack of each field
  if merge then
    local merged, why = merge(value, cur_ver > 0 and redis.call('HGET', obj, 'v') or nil)
    if merged == nil then replies[i] = {7, why}; break end
    value = merged
    digest = redis.sha1hex(value)
  end

  local cur_group = cur[3] or ''
  local cur_ctx = cur[4] or ''
  local group = new_group ~= '' and new_group or cur_group
  local ctx = new_ctx ~= '' and new_ctx or cur_ctx

  -- manual: a write based on an old version loses, and is kept for resolve()
  local lost = policy == 'manual' and exp ~= nil and exp ~= cur_ver
  local kind, version, vn, cid
  if lost then
    kind = 'conflict_detected'
    version = dec(cur_ver)
  else
    kind = 'memory_updated'
    vn = redis.call('INCR', KEYS[1])
    version = string.format('%d', vn)
  end

  -- the event goes out before the object changes: the object's hset notification must
  -- directly follow its event (that is how listeners tell memgang's changes from other
  -- tools', events.KeyspaceTracker)
  local id = emit(KEYS[2], log_maxlen, channel,
                  '"type":"' .. kind .. ev_swarm .. jstr(obj) .. ev_agent .. version .. ev_ts
                  .. string.format('%d', #value) .. ',"scope":{"group":'
                  .. (group == new_group and ev_new_group or json_or_null(group))
                  .. ',"context":' .. json_or_null(ctx) .. ev_tail)

  if lost then
    cid = string.format('%d', redis.call('INCR', KEYS[1]))
    local meta = cjson.encode({agent = writer, base = exp, current = cur_ver,
                               ts = tonumber(now), ttl_ms = ttl})
    redis.call('HSET', KEYS[k + 3], cid .. ':v', value, cid .. ':m', meta)
    redis.call('ZADD', KEYS[7], now, obj)
  else
    -- commit
    local fields = {'v', value, 'ver', version, 'agent', writer, 'mtime', now, 'hash', digest}
    if cur_ver == 0 then fields[11] = 'ctime'; fields[12] = now end
    if new_group ~= '' then fields[#fields + 1] = 'group'; fields[#fields + 1] = new_group end
    if new_ctx ~= '' then fields[#fields + 1] = 'ctx'; fields[#fields + 1] = new_ctx end
    if tags ~= '' then fields[#fields + 1] = 'tags'; fields[#fields + 1] = tags end
    if readable_by ~= '' then fields[#fields + 1] = 'rb'; fields[#fields + 1] = readable_by end
    if writable_by ~= '' then fields[#fields + 1] = 'wb'; fields[#fields + 1] = writable_by end
    if derived ~= '' then fields[#fields + 1] = 'df'; fields[#fields + 1] = derived end
    if ttl ~= '' then fields[#fields + 1] = 'exp'; fields[#fields + 1] = '1' end
    redis.call('HSET', obj, unpack(fields))
    -- fields of the previous version that this one does not have (checked, not blindly sent)
    if derived == '' and cur[6] then redis.call('HDEL', obj, 'df') end
    if ttl ~= '' then redis.call('PEXPIRE', obj, ttl)
    elseif cur[7] then redis.call('HDEL', obj, 'exp'); redis.call('PERSIST', obj) end

    -- indexes: all objects by creation time (only when created: an update keeps its
    -- place); writer, group and context as "<value>\0<key>" members, moved only when the
    -- value changes
    if cur_ver == 0 then
      redis.call('ZADD', KEYS[3], 'NX', now, obj)
      reindex(KEYS[4], obj, '', writer)
    elseif cur[2] ~= writer then
      reindex(KEYS[4], obj, cur[2] or '', writer)
    end
    if new_group ~= '' and new_group ~= cur_group then reindex(KEYS[5], obj, cur_group, new_group) end
    if new_ctx ~= '' and new_ctx ~= cur_ctx then reindex(KEYS[6], obj, cur_ctx, new_ctx) end

    -- resolve(): the conflicts this write settles are cleared in the same step
    if settled_ids ~= '' then
      for settled in string.gmatch(settled_ids, '[^,]+') do
        redis.call('HDEL', KEYS[k + 3], settled .. ':v', settled .. ':m')
      end
      if redis.call('HLEN', KEYS[k + 3]) == 0 then redis.call('ZREM', KEYS[7], obj) end
    end
  end
  if cid then replies[i] = {2, cur_ver, cid, id} else replies[i] = vn end
until true end
return replies
