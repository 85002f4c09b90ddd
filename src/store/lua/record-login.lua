-- Remembers a login's device id and address for the user and says which of the
-- two was new. Each is a sorted set scored by when a value was last seen, kept
-- to the `keep` most recent and forgetting values unseen for forget_ms.
-- KEYS: devices, addresses, outbox
-- ARGV: device_id, ip, now, keep, forget_ms, emit, id_prefix, user_id, sid
local now, keep, forget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function sight(key, value)
  if value == '' then return 0 end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ms(now - forget))
  -- Nothing remembered yet (a first login) is a baseline, not news.
  local new = redis.call('ZCARD', key) > 0 and not redis.call('ZSCORE', key, value)
  redis.call('ZADD', key, ms(now), value)
  redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1))
  redis.call('PEXPIRE', key, ms(forget))
  return new and 1 or 0
end
local new_device, new_ip = sight(KEYS[1], ARGV[1]), sight(KEYS[2], ARGV[2])
if new_device == 1 or new_ip == 1 then
  outbox_push(KEYS[3], ARGV[6], ARGV[7], {
    type = 'new_device_login', userId = ARGV[8], sid = ARGV[9], reason = 0, at = now, expiresAt = now,
    deviceId = new_device == 1 and ARGV[1] or nil, ip = new_ip == 1 and ARGV[2] or nil,
  })
end
return {new_device, new_ip, recorded}
