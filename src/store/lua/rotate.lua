-- Compare-and-set rotation of the refresh hash.
-- KEYS: session, index, grace, user_not_before, outbox
-- ARGV: expected, next, sealed, now, grace_ms, idle_ms, history_size, member, issued_at_seconds,
--       rate_limit (0: rotations not counted), rate_window_ms, emit, user_id, sid
local now = tonumber(ARGV[4])
local s = load_session(KEYS[1], now)
if not s then return {'gone'} end
if s[5] ~= ARGV[1] then return {'conflict'} end
-- A global logout since the caller last looked would revoke the token it signed.
local nbf = redis.call('GET', KEYS[4])
if nbf and tonumber(ARGV[9]) < tonumber(string.match(nbf, '^(%d+)')) then return {'conflict'} end
s[6] = string.sub(s[5] .. s[6], 1, 16 * tonumber(ARGV[7]))
s[5] = ARGV[2]
s[7] = now
s[2] = now
s[3] = math.min(now + tonumber(ARGV[6]), s[4])
-- Rotations in the current window ride in the session record (s[8] window
-- start in whole seconds, 5 bytes of MessagePack; s[9] count): no extra key, no
-- extra round trip.
local exceeded = 0
local limit = tonumber(ARGV[10])
if limit > 0 then
  local window = tonumber(ARGV[11])
  if not s[8] or now - s[8] * 1000 >= window then
    s[8] = math.floor(now / 1000)
    s[9] = 0
  end
  s[9] = s[9] + 1
  if s[9] == limit + 1 then
    exceeded = 1
    -- The id names the session and the window: a window alerts once, however often it is relayed.
    outbox_push(KEYS[5], ARGV[12], 'rate' .. ARGV[8] .. '.' .. ms(s[8]),
      {type = 'refresh_rate_exceeded', userId = ARGV[13], sid = ARGV[14], reason = 0, at = now, expiresAt = now, count = s[9], windowMs = window})
  end
end
save_session(KEYS[1], s, now)
index_put(KEYS[2], ARGV[8], s, now)
if tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[3], ms(now + tonumber(ARGV[5])) .. ':' .. ARGV[3], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[3])
end
return {'rotated', s[3], exceeded, recorded}
