// Who may call what: API keys with scopes for services, the user's own access
// token for Logout and own ListSessions. Both transports, real Redis.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogoutScope, RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import {
  apiKey, bearer, createSession, expectRpcError, startTestAuthority, uniqueUser, type AuthorityClient, type TestAuthority,
} from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { isSessionId } from '../../src/store/session-id.js';

describe('caller authentication and authorization (Redis)', () => {
  let redis: RedisProcess;
  let t: TestAuthority;

  beforeAll(async () => {
    redis = await startRedis();
    t = await startTestAuthority({ redisUrl: redis.url });
  });
  afterAll(async () => {
    await t?.stop();
    await redis?.stop();
  });

  const request = (userId: string) => ({ userId, username: userId, roles: ['user'], device: { id: 'd', name: 'D' } });
  const transports = (): [string, AuthorityClient][] => [['grpc', t.grpc], ['connect', t.connect]];
  const count = async (userId: string) => (await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions.length;

  it('CreateSession without credentials, with an unknown key or a malformed header is UNAUTHENTICATED', async () => {
    const userId = uniqueUser('nocreds');
    for (const [, client] of transports()) {
      await expectRpcError(client.createSession(request(userId)), Code.Unauthenticated, 'unauthenticated');
      await expectRpcError(client.createSession(request(userId), apiKey('test_not-a-configured-key')), Code.Unauthenticated, 'unauthenticated');
      for (const authorization of ['Basic dXNlcjpwYXNz', 'ApiKey', t.keys.admin, `ApiKey ${t.keys.admin} extra`, 'Bearer not-a-jwt']) {
        await expectRpcError(client.createSession(request(userId), { headers: { authorization } }), Code.Unauthenticated, 'unauthenticated');
      }
    }
    expect(await count(userId)).toBe(0);
  });

  it('CreateSession with a key lacking sessions:create, or with a user token, is PERMISSION_DENIED', async () => {
    const userId = uniqueUser('noscope');
    const user = await createSession(t.grpc, t.keys.login, { userId: uniqueUser('someone') });
    for (const [, client] of transports()) {
      for (const key of [t.keys.reader, t.keys.revoker]) {
        await expectRpcError(client.createSession(request(userId), apiKey(key)), Code.PermissionDenied, 'permission_denied');
      }
      await expectRpcError(client.createSession(request(userId), bearer(user.access)), Code.PermissionDenied, 'permission_denied');
    }
    expect(await count(userId)).toBe(0);
    // The scheme is case-insensitive; the right scope works.
    const ok = await t.grpc.createSession(request(userId), { headers: { authorization: `apikey ${t.keys.login}` } });
    expect(ok.sessionId).toSatisfy(isSessionId);
    expect(await count(userId)).toBe(1);
  });

  it('Revoke needs sessions:revoke', async () => {
    const userId = uniqueUser('revoke');
    const s = await createSession(t.grpc, t.keys.login, { userId });
    const revoke = (opts?: object) =>
      t.grpc.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.ADMIN_ACTION }, opts);
    await expectRpcError(revoke(), Code.Unauthenticated, 'unauthenticated');
    await expectRpcError(revoke(apiKey(t.keys.login)), Code.PermissionDenied, 'permission_denied');
    await expectRpcError(revoke(apiKey(t.keys.reader)), Code.PermissionDenied, 'permission_denied');
    await expectRpcError(revoke(bearer(s.access)), Code.PermissionDenied, 'permission_denied');
    expect((await t.grpc.validateToken({ accessToken: s.access })).valid).toBe(true);
    expect((await revoke(apiKey(t.keys.revoker))).sessionsEnded).toBe(1);
  });

  it('ListSessions of another user: PERMISSION_DENIED with a user token or a key without sessions:read; ok with sessions:read', async () => {
    const alice = uniqueUser('alice');
    const bob = uniqueUser('bob');
    const a = await createSession(t.grpc, t.keys.login, { userId: alice });
    const b = await createSession(t.grpc, t.keys.login, { userId: bob });
    for (const [, client] of transports()) {
      await expectRpcError(client.listSessions({ userId: bob }, bearer(a.access)), Code.PermissionDenied, 'permission_denied');
      await expectRpcError(client.listSessions({ userId: bob }, apiKey(t.keys.login)), Code.PermissionDenied, 'permission_denied');
      await expectRpcError(client.listSessions({ userId: bob }), Code.Unauthenticated, 'unauthenticated');
      await expectRpcError(client.listSessions({}), Code.Unauthenticated, 'unauthenticated');
      const listed = await client.listSessions({ userId: bob }, apiKey(t.keys.reader));
      expect(listed.sessions.map((s) => ({ sid: s.sessionId, current: s.current }))).toEqual([{ sid: b.sid, current: false }]);
      const admin = await client.listSessions({ userId: bob }, apiKey(t.keys.admin));
      expect(admin.sessions.map((s) => s.sessionId)).toEqual([b.sid]);
    }
    // A service has no "own" sessions.
    await expectRpcError(t.grpc.listSessions({}, apiKey(t.keys.reader)), Code.PermissionDenied, 'permission_denied');
  });

  it('own ListSessions (empty or own user_id) lists the caller\'s sessions and marks the current one', async () => {
    const userId = uniqueUser('own');
    const a = await createSession(t.grpc, t.keys.login, { userId, deviceId: 'laptop', ip: '198.51.100.4' });
    const b = await createSession(t.grpc, t.keys.login, { userId, deviceId: 'phone' });
    await createSession(t.grpc, t.keys.login, { userId: uniqueUser('stranger') });
    for (const [, client] of transports()) {
      for (const req of [{}, { userId }]) {
        const listed = await client.listSessions(req, bearer(b.access));
        const bySid = Object.fromEntries(listed.sessions.map((s) => [s.sessionId, s]));
        expect(Object.keys(bySid).sort()).toEqual([a.sid, b.sid].sort());
        expect(bySid[b.sid]!.current).toBe(true);
        expect(bySid[a.sid]!.current).toBe(false);
        expect(bySid[a.sid]!.device).toMatchObject({ id: 'laptop', name: 'Test device' });
        expect(bySid[a.sid]!.ipAddress).toBe('198.51.100.4');
      }
    }
  });

  it('a revoked or garbage Bearer token is UNAUTHENTICATED for Logout and ListSessions', async () => {
    const userId = uniqueUser('gone');
    const s = await createSession(t.grpc, t.keys.login, { userId });
    await t.grpc.logout({ scope: LogoutScope.CURRENT }, bearer(s.access));
    await expectRpcError(t.grpc.listSessions({}, bearer(s.access)), Code.Unauthenticated, 'unauthenticated');
    await expectRpcError(t.grpc.logout({}, bearer('a.b.c')), Code.Unauthenticated, 'unauthenticated');
    await expectRpcError(t.connect.listSessions({}, bearer('x'.repeat(9000))), Code.Unauthenticated, 'unauthenticated');
  });

  it('Refresh, ValidateToken and GetJwks are open', async () => {
    const s = await createSession(t.grpc, t.keys.login, { userId: uniqueUser('open') });
    expect((await t.grpc.validateToken({ accessToken: s.access })).valid).toBe(true);
    expect((await t.connect.refresh({ refreshToken: s.refresh })).sessionId).toBe(s.sid);
    expect((await t.connect.getJwks({})).keys.length).toBeGreaterThan(0);
  });
});
