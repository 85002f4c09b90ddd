-- Compare-and-set rotation of the refresh hash.
-- KEYS: session, index, grace, user_not_before
-- ARGV: expected, next, sealed, now, grace_ms, idle_ms, history_size, member, issued_at_seconds
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
save_session(KEYS[1], s, now)
index_put(KEYS[2], ARGV[8], s, now)
if tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[3], ms(now + tonumber(ARGV[5])) .. ':' .. ARGV[3], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[3])
end
return {'rotated', s[3]}
