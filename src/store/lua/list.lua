-- KEYS: index   ARGV: base, now
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms(now))
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local s = load_session(ARGV[1] .. 's:' .. sid, now)
  if s then
    for _, v in ipairs({sid, s[1], s[2], s[3], s[4]}) do table.insert(out, v) end
  end
end
return out
