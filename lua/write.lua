-- write.lua: create or update one memory object, under a conflict policy, with its indexes,
-- its event (PUBLISH) and its log entry (XADD), all in one atomic step. Everything is checked
-- before the first write, so a refused write leaves nothing behind and publishes nothing.
--
-- KEYS[1]  the object hash                  {s}/space/id
-- KEYS[2]  the swarm's version counter      {s}/_seq
-- KEYS[3]  the swarm's event log (stream)   {s}/_log
-- KEYS[4]  index of all objects (zset, scored by creation ms)   {s}/_idx/all
-- KEYS[5]  index by writer  (zset, members "<agent>\0<key>")    {s}/_idx/agent
-- KEYS[6]  index by group   (zset, members "<group>\0<key>")    {s}/_idx/group
-- KEYS[7]  index by context (zset, members "<context>\0<key>")  {s}/_idx/context
-- KEYS[8]  lock holders of this key (hash)  {s}/_lock/space/id
-- KEYS[9]  newest fencing token of the key  {s}/_fence/space/id
-- KEYS[10] kept losing writes (hash)        {s}/_conflicts/space/id
-- KEYS[11] keys with conflicts (zset)       {s}/_conflicts
-- KEYS[12] the log's position counter       {s}/_logn
--
-- The scope indexes hold "<value>\0<key>" members (score 0, read by ZRANGEBYLEX), so moving an
-- object to another writer, group or context is a ZREM + ZADD inside these three fixed keys:
-- the script never needs a key named after the previous scope.
--
-- ARGV[1]  writer agent name
-- ARGV[2]  value: msgpack bytes (for "merge": a msgpack map of the fields to set)
-- ARGV[3]  policy: "lww" | "merge" | "manual"
-- ARGV[4]  expected version: "" = any; "0" = must not exist; N = compare-and-set
--          (for "manual": the version the writer based its change on)
-- ARGV[5]  ttl in ms: "" = no expiry (PERSIST)
-- ARGV[6]  group: "" = keep the object's group
-- ARGV[7]  context: "" = keep
-- ARGV[8]  tags (JSON array): "" = keep
-- ARGV[9]  readable_by (JSON array): "" = keep; "[]" = everyone
-- ARGV[10] writable_by (JSON array): "" = keep; "[]" = everyone
-- ARGV[11] derived_from (JSON array of [key, version]): "" = none
-- ARGV[12] fencing token: "" = none
-- ARGV[13] approximate max length of the event log
-- ARGV[14] max encoded value bytes (checked on the merged value)
-- ARGV[15] swarm name (for the event)
-- ARGV[16] event channel
-- ARGV[17] conflict ids to clear, comma separated ("" = none): resolve() of manual conflicts
--
-- Returns one of
--   {0, version, event_id, updated_ms}        written
--   {1, current_version}                      expected version did not match
--   {2, current_version, conflict_id, event_id}  manual: write kept as a conflict
--   {3, holder_agent, mode}                   locked write/exclusive by someone else, or
--                                             by the writer without its fencing token
--   {4, newest_token}                         stale (or never issued) fencing token
--   {5, writable_by_json}                     writer not in writable_by
--   {7, reason}                               merge of / into something that is not a map,
--                                             or merged value over the size bound

local obj = KEYS[1]
local writer = ARGV[1]
local value = ARGV[2]
local policy = ARGV[3]
local expected = ARGV[4]
local fence = ARGV[12]

local now = now_ms()

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

-- ---- read the current state ---------------------------------------------------------------
local cur = redis.call('HMGET', obj, 'ver', 'agent', 'group', 'ctx', 'wb', 'df', 'exp')
local cur_ver = tonumber(cur[1]) or 0
local cur_writer = cur[2] or ''
local cur_group = cur[3] or ''
local cur_ctx = cur[4] or ''
local cur_wb = cur[5] or ''
local cur_df = cur[6]
local cur_exp = cur[7]

-- ---- checks, in order; nothing is written before all of them pass ------------------------

local refusal = acl_refusal(cur_wb, writer) or fence_refusal(KEYS[9], fence)
  or lock_refusal(KEYS[8], writer, fence, now, {write = true, exclusive = true})
if refusal then return refusal end

-- compare-and-set (and the base version of a manual write)
local exp = tonumber(expected)
if expected ~= '' and exp == nil then return redis.error_reply('bad expected version') end
if policy ~= 'manual' and exp ~= nil and exp ~= cur_ver then return {1, cur_ver} end

local new_group = ARGV[6]
local new_ctx = ARGV[7]

-- merge: field-level, on the raw msgpack of each field
if policy == 'merge' then
  local patch = map_entries(value)
  if patch == nil then return {7, 'merge patch is not a mapping'} end
  if cur_ver > 0 then
    local stored = redis.call('HGET', obj, 'v')
    local base = map_entries(stored)
    if base == nil then return {7, 'stored value is not a mapping'} end
    local pos = {}
    for k, kv in ipairs(base) do pos[kv[1]] = k end
    for _, kv in ipairs(patch) do
      local k = pos[kv[1]]
      if k then base[k][2] = kv[2] else base[#base + 1] = kv; pos[kv[1]] = #base end
    end
    local parts = {map_header(#base)}
    for _, kv in ipairs(base) do parts[#parts + 1] = kv[1]; parts[#parts + 1] = kv[2] end
    value = table.concat(parts)
    if #value > tonumber(ARGV[14]) then
      return {7, 'merged value is ' .. #value .. ' bytes; the limit is ' .. ARGV[14]}
    end
  end
elseif policy ~= 'lww' and policy ~= 'manual' then
  return redis.error_reply('unknown policy ' .. policy)
end

local function emit_event(kind, version)
  local group = new_group ~= '' and new_group or cur_group
  local ctx = new_ctx ~= '' and new_ctx or cur_ctx
  local extra = ',"size":' .. #value .. ',"scope":{"group":' .. json_or_null(group)
    .. ',"context":' .. json_or_null(ctx) .. '}'
  if ARGV[11] ~= '' then extra = extra .. ',"derived_from":' .. ARGV[11] end
  return emit(KEYS[3], ARGV[13], ARGV[16],
              event_body(kind, ARGV[15], obj, writer, version, now, extra))
end

-- manual: a write based on an old version loses, and is kept for resolve()
if policy == 'manual' and exp ~= nil and exp ~= cur_ver then
  local cid = redis.call('INCR', KEYS[2])
  local meta = cjson.encode({agent = writer, base = exp, current = cur_ver, ts = now,
                             ttl_ms = ARGV[5]})
  redis.call('HSET', KEYS[10], cid .. ':v', value, cid .. ':m', meta)
  redis.call('ZADD', KEYS[11], now, obj)
  local id = emit_event('conflict_detected', cur_ver)
  return {2, cur_ver, tostring(cid), id}
end

-- ---- commit ---------------------------------------------------------------------------------
local version = redis.call('INCR', KEYS[2])
local fields = {'v', value, 'ver', version, 'agent', writer, 'mtime', now,
                'hash', redis.sha1hex(value)}
if cur_ver == 0 then fields[#fields + 1] = 'ctime'; fields[#fields + 1] = now end
if new_group ~= '' then fields[#fields + 1] = 'group'; fields[#fields + 1] = new_group end
if new_ctx ~= '' then fields[#fields + 1] = 'ctx'; fields[#fields + 1] = new_ctx end
if ARGV[8] ~= '' then fields[#fields + 1] = 'tags'; fields[#fields + 1] = ARGV[8] end
if ARGV[9] ~= '' then fields[#fields + 1] = 'rb'; fields[#fields + 1] = ARGV[9] end
if ARGV[10] ~= '' then fields[#fields + 1] = 'wb'; fields[#fields + 1] = ARGV[10] end
if ARGV[11] ~= '' then fields[#fields + 1] = 'df'; fields[#fields + 1] = ARGV[11] end
if ARGV[5] ~= '' then fields[#fields + 1] = 'exp'; fields[#fields + 1] = '1' end
redis.call('HSET', obj, unpack(fields))
-- fields of the previous version that this one does not have (checked, not blindly sent)
if ARGV[11] == '' and cur_df then redis.call('HDEL', obj, 'df') end
if ARGV[5] ~= '' then redis.call('PEXPIRE', obj, ARGV[5])
elseif cur_exp then redis.call('HDEL', obj, 'exp'); redis.call('PERSIST', obj) end

-- indexes: all objects by creation time (NX: an update does not reorder the skiplist);
-- writer, group and context as "<value>\0<key>" members, moved only when the value changes
redis.call('ZADD', KEYS[4], 'NX', now, obj)
local function reindex(idx, old, new)
  if new == '' or new == old then return end
  if old ~= '' then redis.call('ZREM', idx, old .. '\0' .. obj) end
  redis.call('ZADD', idx, 0, new .. '\0' .. obj)
end
reindex(KEYS[5], cur_ver > 0 and cur_writer or '', writer)
reindex(KEYS[6], cur_group, new_group)
reindex(KEYS[7], cur_ctx, new_ctx)

-- resolve(): the conflicts this write settles are cleared in the same step
if ARGV[17] ~= '' then
  for cid in string.gmatch(ARGV[17], '[^,]+') do
    redis.call('HDEL', KEYS[10], cid .. ':v', cid .. ':m')
  end
  if redis.call('HLEN', KEYS[10]) == 0 then redis.call('ZREM', KEYS[11], obj) end
end

local id = emit_event('memory_updated', version)
return {0, version, id, now}
