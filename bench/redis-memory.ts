// Redis memory of what the store keeps, measured with INFO memory on a fresh
// redis-server around writes through the production store. Used by
// bench:authority (memory per session) and bench:capacity (every kind of entry).
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { RedisSessionStore } from "../src/store/redis.js";
import { newSessionId } from "../src/store/session-id.js";
import type { StoredSession } from "../src/store/session-store.js";
import { startRedis } from "../test/support/redis-server.js";

export const UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/** A realistic session: a full Chrome user agent, two roles, two permissions, a device and an IP. */
export function benchSession(userId: string, n: number, now: number): StoredSession {
  return {
    sid: newSessionId(userId), userId, username: `User ${n}`, roles: ["user", "beta"], permissions: ["orders:read", "orders:write"],
    clientId: "web", deviceId: `device-${n}`, deviceName: "Chrome on Windows", userAgent: UA, ip: "203.0.113.7",
    createdAt: now, lastActivityAt: now, idleExpiresAt: now + 1_800_000, absoluteExpiresAt: now + 30 * 86_400_000,
  };
}

/**
 * Bytes of Redis memory per item: `prepare` runs first (not counted), then
 * `write` for items 0..count-1, 500 at a time, between two INFO memory readings.
 */
export async function redisBytesPer<T>(
  count: number,
  write: (store: RedisSessionStore, i: number, prepared: T) => Promise<unknown>,
  prepare: (store: RedisSessionStore) => Promise<T> = async () => undefined as T,
): Promise<number> {
  const server = await startRedis();
  const redis = new Redis(server.url);
  try {
    const store = new RedisSessionStore(redis, "sa");
    const prepared = await prepare(store);
    const used = async () => Number(/used_memory:(\d+)/.exec(await redis.info("memory"))![1]);
    const before = await used();
    for (let i = 0; i < count; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, count - i) }, (_, j) => write(store, i + j, prepared)));
    }
    return Math.round(((await used()) - before) / count);
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

/** Sessions written through the production store: one per user (each with its own index) and four per user. */
export async function memoryPerSession(sessions: number): Promise<[string, number][]> {
  const now = Date.now();
  const out: [string, number][] = [];
  for (const [shape, perUser] of [["one session per user", 1], ["four sessions per user", 4]] as const) {
    out.push([shape, await redisBytesPer(sessions, (store, n) => {
      const s = benchSession(`user-${Math.floor(n / perUser)}`, n, now);
      return store.createSession(s, randomBytes(16), now);
    })]);
  }
  return out;
}
