import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNatsInfo, startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

// A client that fails fast instead of retrying, to observe a dead server.
const oneShot = (url: string) =>
  new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false });

describe('test harness: real redis-server and nats-server', () => {
  let redis: RedisProcess;
  let nats: NatsProcess;

  beforeAll(async () => {
    [redis, nats] = await Promise.all([startRedis(), startNats()]);
  });
  afterAll(async () => {
    await Promise.all([redis?.stop(), nats?.stop()]);
  });

  it('redis answers, dies on kill(), and answers again after restart() on the same port', async () => {
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const client = oneShot(redis.url);
    await client.connect();
    await client.set('harness:k', 'v');
    expect(await client.get('harness:k')).toBe('v');
    client.disconnect();

    await redis.kill();
    const dead = oneShot(redis.url);
    dead.on('error', () => {}); // the rejected connect() below is the assertion
    await expect(dead.connect()).rejects.toThrow();
    dead.disconnect();

    await redis.restart();
    const again = oneShot(redis.url);
    await again.connect();
    expect(await again.ping()).toBe('PONG');
    expect(await again.get('harness:k')).toBeNull(); // persistence is off by default
    again.disconnect();
  });

  it('nats sends its INFO line with JetStream enabled, also after restart()', async () => {
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    const info = await readNatsInfo(nats.port);
    expect(info).toMatch(/^INFO \{/);
    expect(JSON.parse(info!.slice(5)).jetstream).toBe(true);

    await nats.kill();
    expect(await readNatsInfo(nats.port)).toBeNull();
    await nats.restart();
    expect(await readNatsInfo(nats.port)).toMatch(/^INFO \{/);
  });
});
