-- KEYS: session, index, user_not_before
-- ARGV: static, now, idle_expires_at, absolute_expires_at, hash, member, last_activity_at
local now = tonumber(ARGV[2])
local s = {ARGV[1], tonumber(ARGV[7]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], '', now}
save_session(KEYS[1], s, now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms(now))
index_put(KEYS[2], ARGV[6], s, now)
local nbf = redis.call('GET', KEYS[3])
if nbf then return string.match(nbf, '^(%d+)') end
return false
