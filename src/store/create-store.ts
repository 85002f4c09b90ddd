import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Config } from "../config/config.js";
import type { Logger } from "../shared/logger.js";
import { MemorySessionStore } from "./memory.js";
import { RedisSessionStore } from "./redis.js";
import type { SessionStore } from "./session-store.js";

/**
 * The store the configuration asks for: Redis when REDIS_URL is set, Redis
 * Cluster when REDIS_CLUSTER_NODES is, else the embedded in-memory store.
 * Either way Redis commands fail fast while disconnected (no offline queue) so
 * callers get UNAVAILABLE within their deadline, and the client keeps
 * reconnecting so service resumes without a restart.
 */
export async function createStore(config: Config, logger: Logger): Promise<SessionStore> {
  // The outbox fills only when something drains it: the NATS relay.
  const outbox = Boolean(config.natsUrl);
  if (!config.redisUrl && !config.redisCluster) return new MemorySessionStore({ outbox });
  const redis = redisClientFor(config);
  let lastError = "";
  const onError = (e: Error) => {
    if (e.message !== lastError) logger.warn({ err: e.message }, "redis connection error");
    lastError = e.message;
  };
  redis.on("error", onError);
  // A cluster reports trouble with one node here, not as "error".
  redis.on("node error", onError);
  redis.on("ready", () => {
    if (lastError) logger.info("redis connection restored");
    lastError = "";
  });
  await redis.connect().catch(async () => {
    logger.warn({ redis: describeRedis(config) }, "waiting for Redis");
    await new Promise<void>((resolve) => redis.once("ready", () => resolve()));
  });
  return new RedisSessionStore(redis, { prefix: config.redisKeyPrefix, outbox });
}

/**
 * The ioredis client for REDIS_URL or REDIS_CLUSTER_NODES, not yet connected.
 * Commands fail at once while it is disconnected and it reconnects on its own.
 */
export function redisClientFor(config: Pick<Config, "redisUrl" | "redisCluster" | "redisCommandTimeoutMs">): Redis | Cluster {
  const timeout = config.redisCommandTimeoutMs;
  const perConnection: RedisOptions = {
    maxRetriesPerRequest: 0,
    commandTimeout: timeout,
    connectTimeout: Math.max(1000, timeout),
  };
  const retry = (attempt: number) => Math.min(attempt * 100, 2000);
  if (config.redisCluster) {
    const { nodes, username, password, tls } = config.redisCluster;
    return new Cluster(nodes, {
      lazyConnect: true,
      // Grouped per master node in cluster mode: one write per node per tick.
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: retry,
      // A command for a master that is down is retried every 100 ms (after a
      // slot refresh) until it runs out of redirections; this many keep the
      // whole retry well inside the command timeout, as on a single Redis.
      maxRedirections: Math.max(3, Math.min(16, Math.floor(timeout / 200))),
      // Only some MOVED replies refresh the slot map (not those in an
      // autopipelined batch with writes), so it is refreshed periodically too.
      slotsRefreshInterval: 5000,
      redisOptions: { ...perConnection, username, password, ...(tls ? { tls: {} } : {}) },
    });
  }
  return new Redis(config.redisUrl, {
    ...perConnection,
    lazyConnect: true,
    // Off: the store coalesces each turn's commands into one write itself
    // (write-coalescer.ts says why).
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    retryStrategy: retry,
  });
}

/** Where the store lives, without credentials, for logs. */
export function describeRedis(config: Pick<Config, "redisUrl" | "redisCluster">): string {
  if (config.redisCluster) {
    const scheme = config.redisCluster.tls ? "rediss" : "redis";
    return `cluster ${config.redisCluster.nodes.map((n) => `${scheme}://${n.host.includes(":") ? `[${n.host}]` : n.host}:${n.port}`).join(",")}`;
  }
  return redactUrl(config.redisUrl);
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
