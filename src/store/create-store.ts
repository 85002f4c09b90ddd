import { Redis } from "ioredis";
import type { Config } from "../config/config.js";
import type { Logger } from "../shared/logger.js";
import { MemorySessionStore } from "./memory.js";
import { RedisSessionStore } from "./redis.js";
import type { SessionStore } from "./session-store.js";

/**
 * The store the configuration asks for: Redis when REDIS_URL is set, else the
 * embedded in-memory store. Redis commands fail fast while disconnected (no
 * offline queue) so callers get UNAVAILABLE within their deadline, and the
 * client keeps reconnecting so service resumes without a restart.
 */
export async function createStore(config: Config, logger: Logger): Promise<SessionStore> {
  // The outbox fills only when something drains it: the NATS relay.
  const outbox = Boolean(config.natsUrl);
  if (!config.redisUrl) return new MemorySessionStore({ outbox });
  const redis = new Redis(config.redisUrl, {
    lazyConnect: true,
    // Commands issued in the same tick go out in one write: under load this
    // cuts the socket writes that dominated the authority's CPU profile.
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: config.redisCommandTimeoutMs,
    connectTimeout: Math.max(1000, config.redisCommandTimeoutMs),
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
  });
  let lastError = "";
  redis.on("error", (e: Error) => {
    if (e.message !== lastError) logger.warn({ err: e.message }, "redis connection error");
    lastError = e.message;
  });
  redis.on("ready", () => {
    if (lastError) logger.info("redis connection restored");
    lastError = "";
  });
  await redis.connect().catch(async () => {
    logger.warn({ redis: redactUrl(config.redisUrl) }, "waiting for Redis");
    await new Promise<void>((resolve) => redis.once("ready", () => resolve()));
  });
  return new RedisSessionStore(redis, { prefix: config.redisKeyPrefix, outbox });
}

/** A Redis URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable url)";
  }
}
