-- KEYS: session, grace   ARGV: now, base
local s = load_session(KEYS[1], tonumber(ARGV[1]))
if not s then return false end
local nbf = redis.call('GET', ARGV[2] .. 'n:' .. cjson.decode(s[1])[1])
return {s[1], s[2], s[3], s[4], s[5], s[6], s[7], redis.call('GET', KEYS[2]) or '', nbf and string.match(nbf, '^(%d+)') or ''}
