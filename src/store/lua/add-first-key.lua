-- Adds a signing key only if there is none: replicas starting together on an
-- empty store agree on one first key.   KEYS: keys   ARGV: kid, json
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
