-- _lib.lua: helpers shared by every script. memgang/scripts.py prepends this file to each
-- lua/*.lua before loading it (Redis scripts cannot include one another), so every check
-- below is written once. It defines only local functions and writes nothing by itself.

-- server time in ms: never the client's clock
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- the same as a decimal string, built from TIME's two strings without number conversions
-- (a Lua number handed to redis.call or concatenated is printed with "%.17g", which costs
-- more than the command it is for); tonumber() of it is the number
local function now_ms_str()
  local t = redis.call('TIME')
  local us = t[2]
  if #us < 6 then us = string.rep('0', 6 - #us) .. us end
  return t[1] .. string.sub(us, 1, 3)
end

-- decimal text of an integer that may already be text
local function dec(x)
  if type(x) == 'string' then return x end
  return string.format('%d', x)
end

-- {5, list} if `agent` is not in the JSON list `acl` ("" or "[]" = everyone), else nil
local function acl_refusal(acl, agent)
  if not acl or acl == '' or acl == '[]' then return nil end
  -- a list another tool broke is not a reason to fail a whole batch: refuse (fail closed)
  local ok, names = pcall(cjson.decode, acl)
  if not ok or type(names) ~= 'table' then return {5, acl} end
  for _, name in ipairs(names) do
    if name == agent then return nil end
  end
  return {5, acl}
end

-- {4, newest} if `fence` is given and is not the newest token issued for the key, else nil.
-- Tokens only grow (INCR of a key that never expires), so "not the newest" means stale.
local function fence_refusal(fence_key, fence)
  if fence == '' then return nil end
  local newest = tonumber(redis.call('GET', fence_key) or '0')
  if tonumber(fence) ~= newest then return {4, newest} end
  return nil
end

-- A lock holder's entry "<mode>|<agent>|<expires_ms>|<token>" (token "" for read leases):
-- its mode, agent, expiry (ms, a number) and token; nil if malformed. The mode is not
-- checked here.
local function holder_fields(v)
  local mode, agent, expires, token = string.match(v, '^(%a+)|([^|]*)|(%d+)|(%d*)$')
  if not mode then return nil end
  return mode, agent, tonumber(expires), token
end

-- {3, holder, mode} if a live lease that bars the caller is held on the key by someone other
-- than `agent` carrying `fence`; else nil. The leases that bar: `exclusive` only if
-- `exclusive_only` (reads), else `write` and `exclusive` (writes, deletes). `now`: ms, a
-- number or its text. Holder fields of the lock hash are "<mode>|<agent>|<expires_ms>|<token>";
-- leases past their expiry do not count.
-- `fence` nil (reads): only the holder agent matters. A string (writes, deletes; "" = no
-- token): the holder agent must also carry its lease's token.
local function lock_refusal(lock_key, agent, fence, now, exclusive_only)
  local held = redis.call('HGETALL', lock_key)
  if #held == 0 then return nil end
  now = tonumber(now)
  for i = 2, #held, 2 do
    local mode, holder, expires, token = holder_fields(held[i])
    if (mode == 'exclusive' or (mode == 'write' and not exclusive_only)) and expires > now then
      if holder ~= agent or (fence ~= nil and (fence == '' or token ~= fence)) then
        return {3, holder, mode}
      end
    end
  end
  return nil
end

-- JSON string of a memgang name: names are validated (no backslash, no control characters),
-- so only the double quote needs escaping; cjson would also turn every '/' into '\/'.
local function jstr(s)
  if not s then return 'null' end
  if not string.find(s, '"', 1, true) then return '"' .. s .. '"' end
  return '"' .. string.gsub(s, '"', '\\"') .. '"'
end

-- JSON of an event without its opening brace and its id (the log entry id is known only
-- after XADD; emit() puts both in front). `version` and `now` are integers or their decimal text;
-- `extra` is pre-encoded JSON members ("" or ',"name":value...').
local function event_body(kind, swarm, key, agent, version, now, extra)
  return '"type":"' .. kind .. '","swarm":' .. jstr(swarm) .. ',"key":' .. jstr(key)
    .. ',"agent":' .. jstr(agent) .. ',"version":' .. dec(version) .. ',"ts":' .. dec(now)
    .. extra .. '}'
end

-- XADD the event to the swarm's bounded log, then PUBLISH it with its log id; returns the id.
-- Each entry also carries n, its position in the log (1, 2, 3, ...), counted by the key
-- {s}/_logn, which every script that emits passes as its LAST key (KEYS[#KEYS]).
-- Subscribers use n to tell exactly how many events a trimmed log cost them, and to notice a
-- lost live message by a jump in n (memgang/events.py).
local function emit(log_key, maxlen, channel, body)
  local ns = string.format('%d', redis.call('INCR', KEYS[#KEYS]))
  local id = redis.call('XADD', log_key, 'MAXLEN', '~', maxlen, '*', 'e', '{' .. body, 'n', ns)
  redis.call('PUBLISH', channel, '{"id":"' .. id .. '","n":' .. ns .. ',' .. body)
  return id
end

local function json_or_null(s)
  if not s or s == '' then return 'null' end
  return jstr(s)
end

-- Ring a doorbell list: replace its content with `n` tokens (one per counted waiter, each
-- BLPOPs one) that expire after `keep_ms` if nobody takes them. n = 0 rings nobody.
local function ring(list_key, n, keep_ms)
  redis.call('DEL', list_key)
  if n < 1 then return end
  local batch = {}
  for i = 1, math.min(n, 100) do batch[i] = '1' end
  while n > 0 do
    local k = math.min(n, 100)
    redis.call('RPUSH', list_key, unpack(batch, 1, k))
    n = n - k
  end
  redis.call('PEXPIRE', list_key, keep_ms)
end
