-- Removes published events from a user's outbox; returns how many remain.
-- KEYS: outbox   ARGV: the published entries, verbatim
for i = 1, #ARGV do redis.call('LREM', KEYS[1], 1, ARGV[i]) end
return redis.call('LLEN', KEYS[1])
