-- Shared by every session script (prepended when the script is defined).
-- A session is one string key holding a MessagePack array:
--   {static, last_activity, idle_expires_at, absolute_expires_at, current_hash, history, rotated_at}
-- static is an opaque compressed blob written by the application (scripts
-- never read it); history is the earlier 16-byte refresh hashes, newest first,
-- concatenated. One string instead of a hash keeps a long user agent from
-- pushing the whole session out of Redis's compact encoding.
-- Keys of one user share the prefix "<prefix>:{<tag>}:" and so one slot; a
-- session's keys end in the random part of its id (the "member").
local function ms(n) return string.format('%d', n) end

local function load_session(key, now)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local s = cmsgpack.unpack(raw)
  if now >= math.min(s[3], s[4]) then return nil end
  return s
end

-- The sealed successor is stored as "<until ms>:<sealed bytes>" with a PX TTL of
-- the grace window; its visibility is decided by `now` like every other deadline,
-- the TTL only frees the memory.
local function sealed_successor(key, now)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local untl = string.match(raw, '^(%d+):')
  if not untl or now >= tonumber(untl) then return nil end
  return string.sub(raw, #untl + 2)
end

-- Revocation entries need a positive lifetime even if cover_until is already past.
local function ttl_until(t, now) return ms(math.max(1, t - now)) end

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

-- The outbox: events recorded in the same script as the change they describe,
-- published to NATS by the relay until acknowledged. ARGV carries '1' to enable,
-- an id prefix (unique per call) and the user id.
-- Scripts return `recorded` too, so the caller can publish at once instead of
-- waiting for the relay to read the outbox back.
local recorded = {}
local function outbox_push(key, enabled, id_prefix, event)
  if enabled ~= '1' then return end
  event.id = id_prefix .. '.' .. (#recorded + 1)
  local json = cjson.encode(event)
  redis.call('RPUSH', key, json)
  table.insert(recorded, json)
end
