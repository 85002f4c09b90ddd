-- Is a token revoked? Also slides the session's idle deadline when a touch is due.
-- KEYS: token_revoked, session_revoked, user_not_before, session, index
-- ARGV: issued_at_seconds, now, touch_interval_ms (negative: never touch), idle_ms, member
local r = redis.call('GET', KEYS[1])
if r then return r end
r = redis.call('GET', KEYS[2])
if r then return r end
local n = redis.call('GET', KEYS[3])
if n then
  local nbf, reason = string.match(n, '^(%d+):(%d+)$')
  if tonumber(ARGV[1]) < tonumber(nbf) then return reason end
end
local now, touch = tonumber(ARGV[2]), tonumber(ARGV[3])
if touch < 0 then return false end
local s = load_session(KEYS[4], now)
if s and now - s[2] >= touch then
  s[2] = now
  s[3] = math.min(now + tonumber(ARGV[4]), s[4])
  save_session(KEYS[4], s, now)
  index_put(KEYS[5], ARGV[5], s, now)
end
return false
