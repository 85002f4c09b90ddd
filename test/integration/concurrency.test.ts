// Many concurrent Refresh calls with one token on a real Redis: exactly one
// rotation happens and every caller gets the same successor pair.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SecurityEvent } from '../../src/authority/security-events.js';
import { ManualClock } from '../../src/shared/clock.js';
import { apiKey, createSession, expectRpcError, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

describe('concurrent refresh on Redis', () => {
  let redis: RedisProcess;
  let t: TestAuthority;
  const clock = new ManualClock();
  const events: SecurityEvent[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    t = await startTestAuthority({ redisUrl: redis.url, clock, env: { SA_REFRESH_GRACE: '10s' } });
    t.authority.events.subscribe((e) => events.push(e));
  });
  afterAll(async () => {
    await t?.stop();
    await redis?.stop();
  });

  it('50 concurrent Refresh calls with the same token all succeed with the identical pair; one branch lives on', async () => {
    const userId = uniqueUser('race');
    const s = await createSession(t.grpc, t.keys.admin, { userId });

    // Half over HTTP/2 gRPC to grpc-js, half over Connect on HTTP/1.1: both hit the same store.
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? t.connect : t.grpc).refresh({ refreshToken: s.refresh }, { timeoutMs: 10_000 })),
    );
    expect(results).toHaveLength(50);
    expect(new Set(results.map((r) => r.sessionId))).toEqual(new Set([s.sid]));
    expect(new Set(results.map((r) => r.tokens!.accessToken)).size).toBe(1);
    expect(new Set(results.map((r) => r.tokens!.refreshToken)).size).toBe(1);
    const pair = results[0]!.tokens!;
    expect(pair.refreshToken).not.toBe(s.refresh);
    expect(events).toEqual([]);

    // The winning pair works and continues the (single) session.
    expect((await t.grpc.validateToken({ accessToken: pair.accessToken })).valid).toBe(true);
    const next = await t.grpc.refresh({ refreshToken: pair.refreshToken });
    expect(next.sessionId).toBe(s.sid);
    expect(next.tokens!.refreshToken).not.toBe(pair.refreshToken);
    const sessions = (await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions;
    expect(sessions.map((x) => x.sessionId)).toEqual([s.sid]);

    // The original token is two generations old now, and later out of grace anyway: reuse.
    clock.advance(10_001);
    await expectRpcError(t.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated, 'refresh_token_reused');
    expect(events.map((e) => e.sid)).toEqual([s.sid]);
    await expectRpcError(t.grpc.refresh({ refreshToken: next.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
  });

  it('concurrent refreshes of a token that is already the grace predecessor return its successor', async () => {
    const s = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser('race2') });
    const first = await t.grpc.refresh({ refreshToken: s.refresh });
    const again = await Promise.all(Array.from({ length: 20 }, () => t.grpc.refresh({ refreshToken: s.refresh })));
    for (const r of again) {
      expect(r.tokens!.refreshToken).toBe(first.tokens!.refreshToken);
      expect(r.tokens!.accessToken).toBe(first.tokens!.accessToken);
    }
    // And racing the successor itself rotates once more, again to a single pair.
    const third = await Promise.all(Array.from({ length: 20 }, () => t.grpc.refresh({ refreshToken: first.tokens!.refreshToken })));
    expect(new Set(third.map((r) => r.tokens!.refreshToken)).size).toBe(1);
    expect(third[0]!.tokens!.refreshToken).not.toBe(first.tokens!.refreshToken);
  });

  it('50 concurrent CreateSession calls for one user make 50 distinct live sessions', async () => {
    const userId = uniqueUser('many');
    const created = await Promise.all(
      Array.from({ length: 50 }, (_, i) => createSession(i % 2 ? t.connect : t.grpc, t.keys.login, { userId, deviceId: `d${i}` })),
    );
    expect(new Set(created.map((c) => c.sid)).size).toBe(50);
    const sessions = (await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions;
    expect(new Set(sessions.map((x) => x.sessionId))).toEqual(new Set(created.map((c) => c.sid)));
  });
});
