-- Remembers a login's device id and address for the user and says which of the
-- two was new. One sorted set per user holds both ("d:<device id>", "i:<address>"),
-- scored by when each was last seen: one key costs far less than two. It keeps
-- the `keep` most recent of each kind and forgets what was unseen for forget_ms.
-- KEYS: sightings, outbox
-- ARGV: device_id, ip, now, keep, forget_ms, emit, id_prefix, user_id, sid
local key, now, keep, forget = KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if ARGV[1] == '' and ARGV[2] == '' then return {0, 0, recorded} end
redis.call('ZREMRANGEBYSCORE', key, '-inf', ms(now - forget))
local held = redis.call('ZRANGE', key, 0, -1)
local function sight(kind, value)
  if value == '' then return 0 end
  local member, known, found = kind .. value, false, false
  for _, m in ipairs(held) do
    if string.sub(m, 1, 2) == kind then
      known = true
      if m == member then found = true end
    end
  end
  redis.call('ZADD', key, ms(now), member)
  -- Nothing of this kind remembered yet (a first login) is a baseline, not news.
  return (known and not found) and 1 or 0
end
local new_device, new_ip = sight('d:', ARGV[1]), sight('i:', ARGV[2])
-- Newest first: past `keep` of a kind, the older ones go.
local kept = {}
local members = redis.call('ZRANGE', key, 0, -1)
for i = #members, 1, -1 do
  local kind = string.sub(members[i], 1, 2)
  kept[kind] = (kept[kind] or 0) + 1
  if kept[kind] > keep then redis.call('ZREM', key, members[i]) end
end
redis.call('PEXPIRE', key, ms(forget))
if new_device == 1 or new_ip == 1 then
  outbox_push(KEYS[2], ARGV[6], ARGV[7], {
    type = 'new_device_login', userId = ARGV[8], sid = ARGV[9], reason = 0, at = now, expiresAt = now,
    deviceId = new_device == 1 and ARGV[1] or nil, ip = new_ip == 1 and ARGV[2] or nil,
  })
end
return {new_device, new_ip, recorded}
