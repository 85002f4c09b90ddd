-- Ends the session when an earlier refresh token comes back outside the grace window.
-- KEYS: session, index, grace, session_revoked, outbox
-- ARGV: presented, now, grace_ms, cover_until, reason, member, emit, id_prefix, user_id, sid
local now = tonumber(ARGV[2])
local s = load_session(KEYS[1], now)
if not s then return 'unknown' end
local found
for i = 1, #s[6], 16 do
  if string.sub(s[6], i, i + 15) == ARGV[1] then found = i break end
end
if not found then return 'unknown' end
if found == 1 and now - s[7] <= tonumber(ARGV[3]) and sealed_successor(KEYS[3], now) then return 'grace' end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[6])
redis.call('SET', KEYS[4], ARGV[5], 'PX', ttl_until(tonumber(ARGV[4]), now))
local reason, cover = tonumber(ARGV[5]), tonumber(ARGV[4])
outbox_push(KEYS[5], ARGV[7], ARGV[8], {type = 'session_revoked', userId = ARGV[9], sid = ARGV[10], reason = reason, at = now, expiresAt = cover})
outbox_push(KEYS[5], ARGV[7], ARGV[8], {type = 'refresh_reuse', userId = ARGV[9], sid = ARGV[10], reason = reason, at = now, expiresAt = cover})
return {'revoked', recorded}
