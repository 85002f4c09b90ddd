// Redis dies mid-run: calls fail fast with UNAVAILABLE (well inside the client
// deadline) and the same authority serves again once Redis is back, without a
// restart. Persistence is off, so the restarted Redis is empty.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RevocationReason, TokenInvalidReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import {
  apiKey, bearer, createSession, decodeJwt, expectRpcError, sleep, startTestAuthority, uniqueUser, type TestAuthority,
} from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

const DEADLINE_MS = 3000;

describe('Redis outage', () => {
  let redis: RedisProcess;
  let t: TestAuthority;

  beforeAll(async () => {
    redis = await startRedis();
    // The key ring rereads the store every second here, so the test sees what
    // that periodic reload does once Redis comes back empty.
    t = await startTestAuthority({ redisUrl: redis.url, env: { SA_KEY_REFRESH_INTERVAL: '1s', SA_REDIS_COMMAND_TIMEOUT: '1s' } });
  });
  afterAll(async () => {
    await t?.stop();
    await redis?.stop();
  });

  /** Runs a call that must fail with UNAVAILABLE/store_unavailable, and returns how long it took. */
  const unavailable = async (call: (opts: { timeoutMs: number }) => Promise<unknown>) => {
    const started = performance.now();
    await expectRpcError(call({ timeoutMs: DEADLINE_MS }), Code.Unavailable, 'store_unavailable');
    return performance.now() - started;
  };

  it('fails fast while Redis is down, and serves again after it restarts', async () => {
    const userId = uniqueUser('outage');
    const before = await createSession(t.grpc, t.keys.admin, { userId });
    const kidBefore = decodeJwt(before.access).header.kid;

    await redis.kill();

    const elapsed = [
      await unavailable((o) => t.grpc.createSession({ userId }, { ...apiKey(t.keys.admin), ...o })),
      await unavailable((o) => t.connect.createSession({ userId }, { ...apiKey(t.keys.admin), ...o })),
      await unavailable((o) => t.grpc.refresh({ refreshToken: before.refresh }, o)),
      await unavailable((o) => t.grpc.validateToken({ accessToken: before.access }, o)),
      await unavailable((o) => t.grpc.listSessions({ userId }, { ...apiKey(t.keys.reader), ...o })),
      await unavailable((o) => t.grpc.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.ADMIN_ACTION }, { ...apiKey(t.keys.admin), ...o })),
      await unavailable((o) => t.grpc.logout({}, { ...bearer(before.access), ...o })),
    ];
    for (const ms of elapsed) expect(ms).toBeLessThan(DEADLINE_MS / 3);

    // What needs no store keeps working.
    const garbage = await t.grpc.validateToken({ accessToken: 'not-a-token' }, { timeoutMs: DEADLINE_MS });
    expect([garbage.valid, TokenInvalidReason[garbage.reason]]).toEqual([false, 'MALFORMED']);
    expect((await t.grpc.getJwks({}, { timeoutMs: DEADLINE_MS })).keys.map((k) => k.kid)).toContain(kidBefore);
    const health = await fetch(`${t.httpUrl}/healthz`);
    expect(health.status).toBe(503);

    // Longer than a key refresh interval while down: the ring keeps its keys.
    await sleep(1200);
    await unavailable((o) => t.grpc.createSession({ userId }, { ...apiKey(t.keys.admin), ...o }));

    await redis.restart();

    // The client reconnects on its own; poll until the authority serves again.
    let after: Awaited<ReturnType<typeof createSession>> | undefined;
    const until = Date.now() + 10_000;
    while (!after && Date.now() < until) {
      after = await createSession(t.grpc, t.keys.admin, { userId }).catch(() => undefined);
      if (!after) await sleep(100);
    }
    expect(after, 'the authority did not recover within 10 s').toBeDefined();
    expect((await fetch(`${t.httpUrl}/healthz`)).status).toBe(200);
    expect((await t.grpc.validateToken({ accessToken: after!.access })).valid).toBe(true);
    const rotated = await t.grpc.refresh({ refreshToken: after!.refresh });
    expect((await t.grpc.validateToken({ accessToken: rotated.tokens!.accessToken })).valid).toBe(true);
    // The data is gone with the old Redis: the old session no longer exists.
    await expectRpcError(t.grpc.refresh({ refreshToken: before.refresh }), Code.Unauthenticated, 'session_ended');

    // Several key refresh intervals later the authority still signs and
    // verifies: it kept (and re-published) the signing key the empty store lost.
    await sleep(2500);
    const later = await createSession(t.grpc, t.keys.admin, { userId });
    expect(decodeJwt(later.access).header.kid).toBe(kidBefore);
    expect((await t.grpc.validateToken({ accessToken: later.access })).valid).toBe(true);
    expect((await t.grpc.validateToken({ accessToken: rotated.tokens!.accessToken })).valid).toBe(true);
    expect((await t.grpc.getJwks({})).keys.map((k) => k.kid)).toEqual([kidBefore]);
    expect((await t.store.listSigningKeys()).map((k) => k.kid)).toEqual([kidBefore]);
    expect((await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions.map((s) => s.sessionId).sort())
      .toEqual([after!.sid, later.sid].sort());
  });
});
