-- Shared by every session script (prepended when the script is defined).
-- A session is one string key holding a MessagePack array:
--   {static, last_activity, idle_expires_at, absolute_expires_at, current_hash, history, rotated_at}
-- static is opaque JSON written by the application; history is the earlier
-- 16-byte refresh hashes, newest first, concatenated. One string instead of a
-- hash keeps a long user agent from pushing the whole session out of Redis's
-- compact encoding, which roughly halves memory per session.
local function ms(n) return string.format('%d', n) end

local function load_session(key, now)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local s = cmsgpack.unpack(raw)
  if now >= math.min(s[3], s[4]) then return nil end
  return s
end

local function save_session(key, s, now)
  redis.call('SET', key, cmsgpack.pack(s), 'PX', ms(math.min(s[3], s[4]) - now))
end

-- The per-user index is a sorted set scored by each session's expiry, written in
-- the same script as the session, so it cannot drift: a range query from now on
-- is exactly the live sessions.
local function index_put(index, sid, s, now)
  local expires = math.min(s[3], s[4])
  redis.call('ZADD', index, ms(expires), sid)
  if redis.call('PTTL', index) < expires - now then redis.call('PEXPIRE', index, ms(expires - now)) end
end
