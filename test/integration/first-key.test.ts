// Replicas that start together on an empty store must agree on one signing key.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startTestAuthority, type TestAuthority } from '../support/authority.js';

let redis: RedisProcess;
const running: TestAuthority[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await Promise.all(running.map((a) => a.stop()));
  await redis?.stop();
});

it('four replicas starting at once on an empty Redis publish and sign with one key', async () => {
  running.push(...(await Promise.all([1, 2, 3, 4].map(() => startTestAuthority({ redisUrl: redis.url })))));
  const kids = await Promise.all(running.map(async (a) => (await a.grpc.getJwks({})).keys.map((k) => k.kid)));
  expect(kids[0]).toHaveLength(1);
  for (const k of kids) expect(k).toEqual(kids[0]);
  expect(new Set(running.map((a) => a.authority.keys.signingKey().kid))).toEqual(new Set(kids[0]));
});
