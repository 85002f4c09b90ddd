// Create → refresh → validate, the refresh grace window, reuse detection and
// idle/absolute expiry, driven by a ManualClock. Runs against a real
// redis-server and against the embedded memory store.
import { Code } from '@connectrpc/connect';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RevocationReason, TokenInvalidReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import type { SecurityEvent } from '../../src/authority/security-events.js';
import { ManualClock } from '../../src/shared/clock.js';
import {
  apiKey, createSession, decodeJwt, expectRpcError, startTestAuthority, uniqueUser, type TestAuthority,
} from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { isSessionId } from '../../src/store/session-id.js';

const SEC = 1000;
const MIN = 60 * SEC;

describe.each(['redis', 'memory'] as const)('session lifecycle (%s store)', (storeKind) => {
  let redis: RedisProcess | undefined;
  let t: TestAuthority;
  // Whole second + 250 ms, so second-granular JWT times are predictable.
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000 + 250);
  const events: SecurityEvent[] = [];

  beforeAll(async () => {
    if (storeKind === 'redis') redis = await startRedis();
    t = await startTestAuthority({
      redisUrl: redis?.url,
      clock,
      env: {
        SA_ACCESS_TOKEN_TTL: '60s',
        SA_REFRESH_GRACE: '10s',
        SA_SESSION_IDLE_TIMEOUT: '2m',
        SA_SESSION_ABSOLUTE_LIFETIME: '5m',
      },
    });
    t.authority.events.subscribe((e) => events.push(e));
  });
  afterAll(async () => {
    await t?.stop();
    await redis?.stop();
  });

  const listOf = async (userId: string) => (await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions;

  it('CreateSession returns a token pair; ValidateToken returns the principal; Refresh rotates', async () => {
    const userId = uniqueUser('alice');
    const created = await t.grpc.createSession(
      {
        userId, username: 'Alice', roles: ['user', 'admin'], permissions: ['orders:read', 'orders:write'],
        device: { id: 'laptop-1', name: "Alice's laptop" }, userAgent: 'vitest/1', ipAddress: '2001:db8::1', clientId: 'web',
      },
      apiKey(t.keys.login),
    );
    const now = clock.now();
    const sid = created.sessionId;
    expect(sid).toSatisfy(isSessionId);
    expect(sid).toMatch(/^[A-Za-z0-9_-]{30,}$/);
    const first = created.tokens!;
    expect(first.tokenType).toBe('Bearer');
    expect(first.refreshToken.startsWith(`${sid}.`)).toBe(true);
    expect(timestampMs(first.accessTokenExpiresAt!)).toBe(Math.floor(now / 1000) * 1000 + 60 * SEC);
    expect(timestampMs(first.refreshTokenExpiresAt!)).toBe(now + 2 * MIN);
    expect(timestampMs(created.sessionExpiresAt!)).toBe(now + 5 * MIN);

    const { header, payload } = decodeJwt(first.accessToken);
    expect(header).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    expect(payload).toMatchObject({ sub: userId, sid, client_id: 'web', aud: 'api', iss: 'https://session-authority.local' });

    const v = await t.grpc.validateToken({ accessToken: first.accessToken });
    expect(v.valid).toBe(true);
    expect(v.reason).toBe(TokenInvalidReason.UNSPECIFIED);
    const p = v.principal!;
    expect({
      userId: p.userId, username: p.username, sessionId: p.sessionId, roles: p.roles, permissions: p.permissions, clientId: p.clientId,
    }).toEqual({ userId, username: 'Alice', sessionId: sid, roles: ['user', 'admin'], permissions: ['orders:read', 'orders:write'], clientId: 'web' });
    expect(p.tokenId).toBe(payload.jti);
    expect(timestampMs(p.issuedAt!)).toBe(Math.floor(now / 1000) * 1000);
    expect(timestampMs(p.expiresAt!)).toBe(timestampMs(first.accessTokenExpiresAt!));

    clock.advance(5 * SEC);
    // Over the Connect protocol on the HTTP/1.1 port: same handlers.
    const rotated = await t.connect.refresh({ refreshToken: first.refreshToken });
    expect(rotated.sessionId).toBe(sid);
    const second = rotated.tokens!;
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(second.refreshToken.startsWith(`${sid}.`)).toBe(true);
    expect(timestampMs(second.refreshTokenExpiresAt!)).toBe(clock.now() + 2 * MIN);
    expect(timestampMs(rotated.sessionExpiresAt!)).toBe(now + 5 * MIN); // rotation never extends it

    const v2 = await t.grpc.validateToken({ accessToken: second.accessToken });
    expect(v2.valid).toBe(true);
    expect(v2.principal!.sessionId).toBe(sid);
    expect(v2.principal!.tokenId).not.toBe(p.tokenId);
    // Rotation does not revoke the earlier access token: it simply expires.
    expect((await t.grpc.validateToken({ accessToken: first.accessToken })).valid).toBe(true);

    // The old refresh token is now the predecessor, within grace: same pair back.
    const again = await t.grpc.refresh({ refreshToken: first.refreshToken });
    expect(again.tokens!.refreshToken).toBe(second.refreshToken);

    const sessions = await listOf(userId);
    expect(sessions.map((s) => s.sessionId)).toEqual([sid]);
    expect(sessions[0]).toMatchObject({ userAgent: 'vitest/1', ipAddress: '2001:db8::1', clientId: 'web', device: { id: 'laptop-1', name: "Alice's laptop" } });
    expect(timestampMs(sessions[0]!.lastActivityAt!)).toBe(clock.now());
  });

  it('grace: the previous refresh token again within the window returns the identical pair', async () => {
    const userId = uniqueUser('grace');
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    clock.advance(1 * SEC);
    const r1 = await t.grpc.refresh({ refreshToken: s.refresh });
    clock.advance(4 * SEC);
    const r2 = await t.grpc.refresh({ refreshToken: s.refresh });
    clock.advance(5 * SEC - 1); // 9.999 s after the rotation
    const r3 = await t.connect.refresh({ refreshToken: s.refresh });
    for (const r of [r2, r3]) {
      expect(r.sessionId).toBe(r1.sessionId);
      expect(r.tokens!.accessToken).toBe(r1.tokens!.accessToken);
      expect(r.tokens!.refreshToken).toBe(r1.tokens!.refreshToken);
      expect(r.tokens!.refreshTokenExpiresAt).toEqual(r1.tokens!.refreshTokenExpiresAt);
      expect(r.tokens!.accessTokenExpiresAt).toEqual(r1.tokens!.accessTokenExpiresAt);
    }
    expect(events.filter((e) => e.sid === s.sid)).toEqual([]);

    // The successor still rotates normally, and the session is intact.
    const r4 = await t.grpc.refresh({ refreshToken: r1.tokens!.refreshToken });
    expect(r4.tokens!.refreshToken).not.toBe(r1.tokens!.refreshToken);
    expect((await t.grpc.validateToken({ accessToken: r4.tokens!.accessToken })).valid).toBe(true);
    expect((await listOf(userId)).map((x) => x.sessionId)).toEqual([s.sid]);
  });

  it('reuse after the grace window ends the session, reports refresh_token_reused and records a security event', async () => {
    const userId = uniqueUser('victim');
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    const other = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'phone' });
    const r1 = await t.grpc.refresh({ refreshToken: s.refresh });
    clock.advance(10 * SEC + 1);

    await expectRpcError(t.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated, 'refresh_token_reused');
    expect(events.filter((e) => e.sid === s.sid)).toEqual([{ type: 'refresh_reuse', userId, sid: s.sid, at: clock.now() }]);

    // The whole session is gone: the newest refresh token no longer works ...
    await expectRpcError(t.grpc.refresh({ refreshToken: r1.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
    // ... and every access token of it is refused with the reuse reason.
    for (const access of [s.access, r1.tokens!.accessToken]) {
      const v = await t.grpc.validateToken({ accessToken: access });
      expect(v.valid).toBe(false);
      expect(v.reason).toBe(TokenInvalidReason.REVOKED);
      expect(v.revocationReason).toBe(RevocationReason.REFRESH_TOKEN_REUSE);
      expect(v.principal).toBeUndefined();
    }
    // The stolen token again: the session is already gone.
    await expectRpcError(t.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated, 'session_ended');
    expect(events.filter((e) => e.sid === s.sid)).toHaveLength(1);

    // The user's other session is untouched.
    expect((await listOf(userId)).map((x) => x.sessionId)).toEqual([other.sid]);
    expect((await t.grpc.validateToken({ accessToken: other.access })).valid).toBe(true);
    expect((await t.grpc.refresh({ refreshToken: other.refresh })).sessionId).toBe(other.sid);
  });

  it('reuse of an older (not the latest previous) refresh token ends the session even within grace', async () => {
    const userId = uniqueUser('older');
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    const r1 = await t.grpc.refresh({ refreshToken: s.refresh });
    clock.advance(1 * SEC);
    const r2 = await t.grpc.refresh({ refreshToken: r1.tokens!.refreshToken });
    clock.advance(1 * SEC);
    // s.refresh is two generations old: no grace for it.
    await expectRpcError(t.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated, 'refresh_token_reused');
    await expectRpcError(t.grpc.refresh({ refreshToken: r2.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
    expect(await listOf(userId)).toEqual([]);
  });

  it('a well-formed refresh token that was never issued is refresh_token_invalid and changes nothing', async () => {
    const userId = uniqueUser('forged');
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    const forged = `${s.sid}.${'A'.repeat(43)}`;
    await expectRpcError(t.grpc.refresh({ refreshToken: forged }), Code.Unauthenticated, 'refresh_token_invalid');
    expect((await listOf(userId)).length).toBe(1);
    expect((await t.grpc.refresh({ refreshToken: s.refresh })).sessionId).toBe(s.sid);
  });

  it('idle timeout: no refresh for the idle timeout ends the session', async () => {
    const userId = uniqueUser('idle');
    const a = await createSession(t.grpc, t.keys.admin, { userId });
    clock.advance(2 * MIN - 1);
    const r = await t.grpc.refresh({ refreshToken: a.refresh }); // just in time
    expect(timestampMs(r.tokens!.refreshTokenExpiresAt!)).toBe(clock.now() + 2 * MIN);

    const b = await createSession(t.grpc, t.keys.admin, { userId, deviceId: 'b' });
    expect((await listOf(userId)).length).toBe(2);
    clock.advance(2 * MIN); // b idle for exactly the timeout, a for 2 min since its refresh
    await expectRpcError(t.grpc.refresh({ refreshToken: b.refresh }), Code.Unauthenticated, 'session_ended');
    await expectRpcError(t.grpc.refresh({ refreshToken: r.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
    expect(await listOf(userId)).toEqual([]);
  });

  it('regular refreshes keep a session alive, but never past its absolute lifetime', async () => {
    const userId = uniqueUser('absolute');
    const start = clock.now();
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    const absolute = start + 5 * MIN;
    expect(timestampMs(s.res.sessionExpiresAt!)).toBe(absolute);

    let refresh = s.refresh;
    let last;
    for (const step of [100, 100, 90]) { // t = 100 s, 200 s, 290 s
      clock.advance(step * SEC);
      last = await t.grpc.refresh({ refreshToken: refresh });
      refresh = last.tokens!.refreshToken;
      expect(timestampMs(last.sessionExpiresAt!)).toBe(absolute);
      expect(timestampMs(last.tokens!.refreshTokenExpiresAt!)).toBe(Math.min(clock.now() + 2 * MIN, absolute));
    }
    // At 290 s the access token is cut at the absolute end (TTL would give 350 s).
    expect(timestampMs(last!.tokens!.accessTokenExpiresAt!)).toBe(Math.floor(absolute / 1000) * 1000);
    const [info] = await listOf(userId);
    expect(timestampMs(info!.expiresAt!)).toBe(absolute);
    expect(timestampMs(info!.absoluteExpiresAt!)).toBe(absolute);

    clock.advance(10 * SEC - 1); // 299.999 s: still alive
    const r = await t.grpc.refresh({ refreshToken: refresh });
    clock.advance(1); // 300 s
    await expectRpcError(t.grpc.refresh({ refreshToken: r.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
    expect(await listOf(userId)).toEqual([]);
  });

  it('validating an access token counts as activity (touch) and slides the idle deadline', async () => {
    // SA_SESSION_TOUCH_INTERVAL is not set: with a 2 min idle timeout it defaults to 20 s.
    const userId = uniqueUser('touch');
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    const start = clock.now();
    clock.advance(10 * SEC);
    expect((await t.grpc.validateToken({ accessToken: s.access })).valid).toBe(true); // too soon to touch
    expect(timestampMs((await listOf(userId))[0]!.lastActivityAt!)).toBe(start);
    clock.advance(20 * SEC); // 30 s
    expect((await t.grpc.validateToken({ accessToken: s.access })).valid).toBe(true); // touches
    const [info] = await listOf(userId);
    expect(timestampMs(info!.lastActivityAt!)).toBe(start + 30 * SEC);
    expect(timestampMs(info!.expiresAt!)).toBe(start + 30 * SEC + 2 * MIN);
    clock.advance(2 * MIN - 1); // 2 min 30 s after creation, no refresh in between: alive thanks to the touch
    expect((await t.grpc.refresh({ refreshToken: s.refresh })).sessionId).toBe(s.sid);
  });
});
