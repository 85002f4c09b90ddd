// Revoke (API key) of a user, a session or one access token, and the user's own
// Logout scopes, on a real Redis.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LogoutScope, RevocationReason, TokenInvalidReason,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { loadConfig } from '../../src/config/config.js';
import { ManualClock } from '../../src/shared/clock.js';
import {
  apiKey, bearer, createSession, decodeJwt, expectRpcError, startTestAuthority, uniqueUser, type TestAuthority,
} from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

describe('revocation and logout (Redis)', () => {
  let redis: RedisProcess;
  let t: TestAuthority;
  // 250 ms into a whole second; the clock only moves when a test says so, so
  // "right after" below really is the same second.
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000 + 250);

  beforeAll(async () => {
    redis = await startRedis();
    t = await startTestAuthority({ redisUrl: redis.url, clock });
  });
  afterAll(async () => {
    await t?.stop();
    await redis?.stop();
  });

  const revoked = async (access: string, reason: RevocationReason) => {
    const v = await t.grpc.validateToken({ accessToken: access });
    expect({ valid: v.valid, reason: TokenInvalidReason[v.reason], revocationReason: RevocationReason[v.revocationReason] })
      .toEqual({ valid: false, reason: 'REVOKED', revocationReason: RevocationReason[reason] });
  };
  const valid = async (access: string) => {
    const v = await t.grpc.validateToken({ accessToken: access });
    expect({ valid: v.valid, reason: TokenInvalidReason[v.reason] }).toEqual({ valid: true, reason: 'UNSPECIFIED' });
  };
  const sidsOf = async (userId: string) =>
    (await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions.map((s) => s.sessionId).sort();

  it('Revoke{user_id} ends every session of the user; a session created right after (same second) is valid', async () => {
    const userId = uniqueUser('global');
    const bystander = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser('bystander') });
    const sessions = await Promise.all([1, 2, 3].map((i) => createSession(t.grpc, t.keys.admin, { userId, deviceId: `d${i}` })));
    const refreshed = await t.grpc.refresh({ refreshToken: sessions[0]!.refresh });
    clock.advance(100);

    const revokedAt = clock.now();
    const res = await t.grpc.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.PASSWORD_CHANGED, detail: 'password reset' }, apiKey(t.keys.revoker));
    expect(res.sessionsEnded).toBe(3);
    expect(await sidsOf(userId)).toEqual([]);
    for (const s of sessions) {
      await revoked(s.access, RevocationReason.PASSWORD_CHANGED);
      await expectRpcError(t.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated);
    }
    await revoked(refreshed.tokens!.accessToken, RevocationReason.PASSWORD_CHANGED);
    await expectRpcError(t.grpc.refresh({ refreshToken: refreshed.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
    // Another user is not affected.
    await valid(bystander.access);

    // Same second as the revocation.
    clock.advance(100);
    const fresh = await createSession(t.grpc, t.keys.admin, { userId });
    expect(Math.floor(clock.now() / 1000)).toBe(Math.floor(revokedAt / 1000));
    // Issued at the next second, the not-before the revocation set.
    expect(decodeJwt(fresh.access).payload.iat).toBe(Math.floor(revokedAt / 1000) + 1);
    await valid(fresh.access);
    expect(await sidsOf(userId)).toEqual([fresh.sid]);
    const r = await t.grpc.refresh({ refreshToken: fresh.refresh });
    await valid(r.tokens!.accessToken);
    // Its token works as a caller credential too.
    expect((await t.grpc.listSessions({}, bearer(r.tokens!.accessToken))).sessions.map((s) => s.sessionId)).toEqual([fresh.sid]);

    // Nothing left to end from before; the fresh session would be, though.
    clock.advance(2000);
    const again = await t.grpc.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.ACCOUNT_LOCKED }, apiKey(t.keys.admin));
    expect(again.sessionsEnded).toBe(1);
    await revoked(r.tokens!.accessToken, RevocationReason.ACCOUNT_LOCKED);
  });

  it('with the smallest clock skew allowed (1 s) a token issued right after a global logout is valid; less is refused', async () => {
    // Tokens issued right after a global logout carry iat = the whole-second
    // not-before, up to 1 s ahead of now; a smaller skew would refuse them.
    expect(() => loadConfig({ SA_CLOCK_SKEW: '500ms' })).toThrow(/SA_CLOCK_SKEW/);
    expect(() => loadConfig({ SA_CLOCK_SKEW: '0' })).toThrow(/SA_CLOCK_SKEW/);
    for (const offset of [0, 999]) {
      const edge = new ManualClock(Math.floor(Date.now() / 1000) * 1000 + offset);
      const t2 = await startTestAuthority({ redisUrl: redis.url, clock: edge, env: { SA_CLOCK_SKEW: '1s', SA_REDIS_KEY_PREFIX: `skew${offset}` } });
      try {
        const userId = uniqueUser('skew');
        await t2.grpc.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.PASSWORD_CHANGED }, apiKey(t2.keys.admin));
        const fresh = await createSession(t2.grpc, t2.keys.admin, { userId });
        const v = await t2.grpc.validateToken({ accessToken: fresh.access });
        expect({ offset, valid: v.valid, reason: TokenInvalidReason[v.reason] }).toEqual({ offset, valid: true, reason: 'UNSPECIFIED' });
      } finally {
        await t2.stop();
      }
    }
  });

  it('Revoke{session_id} ends one session; its access tokens are refused, other sessions live on', async () => {
    const userId = uniqueUser('one');
    const a = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'a' });
    const b = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'b' });
    const res = await t.grpc.revoke({ target: { case: 'sessionId', value: a.sid }, reason: RevocationReason.ADMIN_ACTION }, apiKey(t.keys.revoker));
    expect(res.sessionsEnded).toBe(1);
    await revoked(a.access, RevocationReason.ADMIN_ACTION);
    await expectRpcError(t.grpc.refresh({ refreshToken: a.refresh }), Code.Unauthenticated, 'session_ended');
    await valid(b.access);
    expect(await sidsOf(userId)).toEqual([b.sid]);
    // Idempotent: ending it again ends nothing and is not an error.
    const again = await t.grpc.revoke({ target: { case: 'sessionId', value: a.sid }, reason: RevocationReason.ADMIN_ACTION }, apiKey(t.keys.revoker));
    expect(again.sessionsEnded).toBe(0);
  });

  it('Revoke{access_token} refuses that token only; the session and its refresh token keep working', async () => {
    const userId = uniqueUser('jti');
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    const r = await t.grpc.refresh({ refreshToken: s.refresh });
    const res = await t.grpc.revoke({ target: { case: 'accessToken', value: s.access }, reason: RevocationReason.SECURITY_RISK }, apiKey(t.keys.revoker));
    expect(res.sessionsEnded).toBe(0);
    await revoked(s.access, RevocationReason.SECURITY_RISK);
    await valid(r.tokens!.accessToken);
    await expectRpcError(t.grpc.listSessions({}, bearer(s.access)), Code.Unauthenticated, 'unauthenticated');
    const r2 = await t.grpc.refresh({ refreshToken: r.tokens!.refreshToken });
    await valid(r2.tokens!.accessToken);
    expect(await sidsOf(userId)).toEqual([s.sid]);
  });

  describe('Logout', () => {
    it('CURRENT (and UNSPECIFIED) ends the session of the presented token only', async () => {
      const userId = uniqueUser('cur');
      const a = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'a' });
      const b = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'b' });
      const c = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'c' });
      expect((await t.grpc.logout({ scope: LogoutScope.CURRENT }, bearer(a.access))).sessionsEnded).toBe(1);
      await revoked(a.access, RevocationReason.USER_REQUEST);
      await expectRpcError(t.grpc.refresh({ refreshToken: a.refresh }), Code.Unauthenticated, 'session_ended');
      // The token is no longer a credential.
      await expectRpcError(t.grpc.logout({ scope: LogoutScope.CURRENT }, bearer(a.access)), Code.Unauthenticated, 'unauthenticated');
      expect((await t.connect.logout({}, bearer(b.access))).sessionsEnded).toBe(1);
      await revoked(b.access, RevocationReason.USER_REQUEST);
      await valid(c.access);
      expect(await sidsOf(userId)).toEqual([c.sid]);
    });

    it('OTHERS ends every other session and keeps the current one', async () => {
      const userId = uniqueUser('others');
      const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((d) => createSession(t.grpc, t.keys.admin, { userId, deviceId: d })));
      expect((await t.grpc.logout({ scope: LogoutScope.OTHERS }, bearer(a!.access))).sessionsEnded).toBe(2);
      await valid(a!.access);
      for (const s of [b!, c!]) {
        await revoked(s.access, RevocationReason.USER_REQUEST);
        await expectRpcError(t.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated, 'session_ended');
      }
      expect(await sidsOf(userId)).toEqual([a!.sid]);
      expect((await t.grpc.refresh({ refreshToken: a!.refresh })).sessionId).toBe(a!.sid);
      // Nobody else left.
      expect((await t.grpc.logout({ scope: LogoutScope.OTHERS }, bearer(a!.access))).sessionsEnded).toBe(0);
    });

    it('ALL ends every session including the current one', async () => {
      const userId = uniqueUser('all');
      const [a, b] = await Promise.all(['a', 'b'].map((d) => createSession(t.grpc, t.keys.admin, { userId, deviceId: d })));
      clock.advance(1000);
      expect((await t.grpc.logout({ scope: LogoutScope.ALL }, bearer(a!.access))).sessionsEnded).toBe(2);
      for (const s of [a!, b!]) {
        await revoked(s.access, RevocationReason.USER_REQUEST);
        await expectRpcError(t.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated, 'session_ended');
      }
      expect(await sidsOf(userId)).toEqual([]);
      const fresh = await createSession(t.grpc, t.keys.admin, { userId });
      await valid(fresh.access);
    });

    it('SESSION ends one named session of the caller; another user\'s session is NOT_FOUND and untouched', async () => {
      const userId = uniqueUser('named');
      const a = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'a' });
      const b = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'b' });
      const mallory = await createSession(t.grpc, t.keys.admin, { userId: uniqueUser('mallory') });

      await expectRpcError(
        t.grpc.logout({ scope: LogoutScope.SESSION, sessionId: a.sid }, bearer(mallory.access)),
        Code.NotFound, 'not_found',
      );
      await expectRpcError(
        t.connect.logout({ scope: LogoutScope.SESSION, sessionId: a.sid }, bearer(mallory.access)),
        Code.NotFound, 'not_found',
      );
      await valid(a.access);
      await valid(mallory.access);
      expect(await sidsOf(userId)).toEqual([a.sid, b.sid].sort());
      expect((await t.grpc.refresh({ refreshToken: a.refresh })).sessionId).toBe(a.sid);

      expect((await t.grpc.logout({ scope: LogoutScope.SESSION, sessionId: b.sid }, bearer(a.access))).sessionsEnded).toBe(1);
      await revoked(b.access, RevocationReason.USER_REQUEST);
      await valid(a.access);
      expect(await sidsOf(userId)).toEqual([a.sid]);
      // Already ended: not found.
      await expectRpcError(t.grpc.logout({ scope: LogoutScope.SESSION, sessionId: b.sid }, bearer(a.access)), Code.NotFound, 'not_found');
      // SESSION naming the current session ends it.
      expect((await t.grpc.logout({ scope: LogoutScope.SESSION, sessionId: a.sid }, bearer(a.access))).sessionsEnded).toBe(1);
      await revoked(a.access, RevocationReason.USER_REQUEST);
    });

    it('needs the user\'s own access token', async () => {
      await expectRpcError(t.grpc.logout({ scope: LogoutScope.ALL }), Code.Unauthenticated, 'unauthenticated');
      await expectRpcError(t.grpc.logout({ scope: LogoutScope.ALL }, apiKey(t.keys.admin)), Code.PermissionDenied, 'permission_denied');
    });
  });
});
