-- KEYS: session, grace, user_not_before   ARGV: now
local now = tonumber(ARGV[1])
local s = load_session(KEYS[1], now)
if not s then return false end
local nbf = redis.call('GET', KEYS[3])
return {s[1], s[2], s[3], s[4], s[5], s[6], s[7], sealed_successor(KEYS[2], now) or '', nbf and string.match(nbf, '^(%d+)') or ''}
