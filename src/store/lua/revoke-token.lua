-- KEYS: token_revoked, outbox   ARGV: reason, now, cover_until, emit, id_prefix, user_id, sid, jti
local now, cover = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl_until(cover, now))
outbox_push(KEYS[2], ARGV[4], ARGV[5], {type = 'token_revoked', userId = ARGV[6], sid = ARGV[7], jti = ARGV[8], reason = tonumber(ARGV[1]), at = now, expiresAt = cover})
return recorded
