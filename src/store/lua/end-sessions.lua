-- Ends one, all, or all-but-one sessions of a user. Per-session keys are named
-- from ARGV[1] (the user's key prefix, which carries the hash tag), so every key
-- stays in the slot of KEYS[1].
-- Returns {found, ended members, recorded outbox events, absolute expiry of each ended member}.
-- KEYS: index, user_not_before, outbox
-- ARGV: base, mode (one|all|others), member, now, cover_until, reason, require_ownership, emit, id_prefix, user_id, tag
local base, mode, target, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local cover, reason = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl = ttl_until(cover, now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms(now))
local absolute = {}
local function drop(member)
  local raw = redis.call('GET', base .. 's:' .. member)
  table.insert(absolute, raw and cmsgpack.unpack(raw)[4] or 0)
  redis.call('DEL', base .. 's:' .. member, base .. 'g:' .. member)
  redis.call('ZREM', KEYS[1], member)
end
local function mark(member)
  redis.call('SET', base .. 'r:' .. member, ARGV[6], 'PX', ttl)
  outbox_push(KEYS[3], ARGV[8], ARGV[9], {type = 'session_revoked', userId = ARGV[10], sid = ARGV[11] .. member, reason = reason, at = now, expiresAt = cover})
end

if mode == 'one' then
  local live = redis.call('ZSCORE', KEYS[1], target)
  if not live and ARGV[7] == '1' then return {0, {}, recorded, absolute} end
  mark(target)
  if not live then return {1, {}, recorded, absolute} end
  drop(target)
  return {1, {target}, recorded, absolute}
end

local ended = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if mode == 'all' or member ~= target then
    drop(member)
    if mode ~= 'all' then mark(member) end
    table.insert(ended, member)
  end
end
if mode == 'all' then
  -- Tokens issued before the next whole second are revoked; the authority
  -- issues later tokens with iat >= that second.
  local nbf = math.floor(now / 1000) + 1
  local prev = redis.call('GET', KEYS[2])
  if prev then nbf = math.max(nbf, tonumber(string.match(prev, '^(%d+)'))) end
  redis.call('SET', KEYS[2], ms(nbf) .. ':' .. ARGV[6], 'PX', ttl)
  outbox_push(KEYS[3], ARGV[8], ARGV[9], {type = 'user_revoked', userId = ARGV[10], notBefore = nbf, reason = reason, at = now, expiresAt = cover})
end
return {1, ended, recorded, absolute}
