// The single-Redis client sends every command a turn of the event loop issues
// in one socket write (write-coalescer.ts), without ioredis's Pipelines.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { redisClientFor } from '../../src/store/create-store.js';
import { RedisSessionStore } from '../../src/store/redis.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

let server: RedisProcess;
let client: Redis;
let store: RedisSessionStore;

beforeAll(async () => {
  server = await startRedis();
  client = redisClientFor(loadConfig({ REDIS_URL: server.url, SA_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') })) as Redis;
  await client.connect();
  store = new RedisSessionStore(client, { prefix: 'coalesce' });
});

afterAll(async () => {
  client?.disconnect();
  await server?.stop();
});

/** Counts the socket writes (single and vectored) and the chunks they carry while `work` runs. */
async function writesDuring(work: () => Promise<unknown>): Promise<{ writes: number; chunks: number }> {
  const socket = client.stream as unknown as { _write: (...a: unknown[]) => void; _writev: (chunks: unknown[], cb: unknown) => void };
  const { _write: write, _writev: writev } = socket;
  const seen = { writes: 0, chunks: 0 };
  socket._write = function (...a) { seen.writes++; seen.chunks++; return write.apply(this, a); };
  socket._writev = function (chunks, cb) { seen.writes++; seen.chunks += chunks.length; return writev.call(this, chunks, cb); };
  try {
    await work();
  } finally {
    Object.assign(socket, { _write: write, _writev: writev });
  }
  return seen;
}

const check = (i: number) =>
  store.checkToken({ userId: `user-${i}`, sid: `sid-${i}`, jti: `jti-${i}`, issuedAt: 1, now: Date.now(), touchIntervalMs: 60_000, idleTimeoutMs: 3_600_000 });

describe('coalesced writes on a single Redis', () => {
  it('is ioredis without autopipelining: the store batches', () => {
    expect(client.options.enableAutoPipelining).toBe(false);
  });

  it('sends the commands of one turn in one write, and each gets its own answer', async () => {
    const seen = await writesDuring(async () => {
      const results = await Promise.all(Array.from({ length: 25 }, (_, i) => check(i)));
      expect(results).toEqual(Array.from({ length: 25 }, () => ({ revoked: false })));
    });
    expect(seen).toEqual({ writes: 1, chunks: 25 });
  });

  it('sends the commands of separate turns separately', async () => {
    const seen = await writesDuring(async () => {
      for (let i = 0; i < 3; i++) await check(i);
    });
    expect(seen).toEqual({ writes: 3, chunks: 3 });
  });
});
