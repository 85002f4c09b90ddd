// The signing thread dies while refreshes are in flight: the calls it owed get
// UNAVAILABLE and change nothing, so each one retried with the same refresh token
// rotates as if it had never been sent (not a grace-window replay, not reuse);
// signing carries on on a new thread.
import { Code, ConnectError } from '@connectrpc/connect';
import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningWorker } from '../../src/authority/signing-worker.js';
import { captureLogger } from '../support/capture-logger.js';
import { createSession, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { metricValue, scrape } from '../support/metrics.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

describe('signing thread lost mid-load', () => {
  let redis: RedisProcess;
  let t: TestAuthority;
  const log = captureLogger();
  const signer = new SigningWorker(log.logger);
  const thread = () => (signer as unknown as { thread?: { worker: Worker; owed: unknown[] } }).thread;
  /** Fault injection: once a batch is on the thread, the thread dies as an out-of-memory error would end it. */
  const killThreadWhenBusy = async () => {
    while (!thread()?.owed.length) await new Promise((r) => setImmediate(r));
    await thread()!.worker.terminate();
  };
  const refreshes = async (result: 'rotated' | 'grace') =>
    metricValue(await scrape(t.httpUrl), 'session_authority_refreshes_total', { result }) ?? 0;

  beforeAll(async () => {
    redis = await startRedis();
    t = await startTestAuthority({ redisUrl: redis.url, signer });
  });
  afterAll(async () => {
    await t?.stop();
    await signer.close();
    await redis?.stop();
  });

  it('refuses what the thread owed with UNAVAILABLE, and a retry of the same token rotates normally', async () => {
    const tokens = (await Promise.all(Array.from({ length: 120 }, () => createSession(t.grpc, t.keys.admin, { userId: uniqueUser('sign-loss') })))).map((s) => s.refresh);
    const calls = tokens.map((refreshToken) => t.grpc.refresh({ refreshToken }));
    await killThreadWhenBusy();
    const refused: number[] = [];
    (await Promise.allSettled(calls)).forEach((r, i) => {
      if (r.status === 'fulfilled') return void (tokens[i] = r.value.tokens!.refreshToken);
      const e = r.reason as ConnectError;
      expect([Code[e.code], e.metadata.get('sa-error-code'), e.rawMessage]).toEqual(['Unavailable', 'unavailable', 'signing was interrupted; retry']);
      refused.push(i);
    });
    expect(refused.length).toBeGreaterThan(0);
    expect(log.messages('error')).toContain('signing thread lost; the next signature starts another');

    const [rotatedBefore, graceBefore] = [await refreshes('rotated'), await refreshes('grace')];
    const retried = await Promise.all(refused.map((i) => t.grpc.refresh({ refreshToken: tokens[i]! })));
    retried.forEach((r, k) => (tokens[refused[k]!] = r.tokens!.refreshToken));
    expect(await refreshes('rotated')).toBe(rotatedBefore + refused.length);
    expect(await refreshes('grace')).toBe(graceBefore);

    // Every session is intact: its newest token rotates.
    const next = await Promise.all(tokens.map((refreshToken) => t.grpc.refresh({ refreshToken })));
    expect(next.filter((r) => r.tokens?.accessToken).length).toBe(tokens.length);
  });
});
