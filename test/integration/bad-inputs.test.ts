// Malformed requests: each gets a precise status (INVALID_ARGUMENT with
// sa-error-code invalid_argument unless noted) and leaves the state unchanged.
import { Code } from '@connectrpc/connect';
import * as grpcJs from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LogoutScope, RevocationReason, TokenInvalidReason, ValidateTokenResponseSchema,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { fromBinary } from '@bufbuild/protobuf';
import {
  apiKey, bearer, createSession, expectRpcError, grpcJsRawCall, newGrpcJsClient, startTestAuthority, uniqueUser,
  type TestAuthority,
} from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { isSessionId } from '../../src/store/session-id.js';

describe('bad inputs (Redis)', () => {
  let redis: RedisProcess;
  let t: TestAuthority;
  let raw: grpcJs.Client;

  beforeAll(async () => {
    redis = await startRedis();
    t = await startTestAuthority({ redisUrl: redis.url });
    raw = newGrpcJsClient(t.grpcAddress);
  });
  afterAll(async () => {
    raw?.close();
    await t?.stop();
    await redis?.stop();
  });

  const sessionsOf = async (userId: string) => (await t.grpc.listSessions({ userId }, apiKey(t.keys.reader))).sessions;
  /** A live session, and a check that it is still exactly as live afterwards. */
  const witness = async () => {
    const userId = uniqueUser('witness');
    const s = await createSession(t.grpc, t.keys.admin, { userId });
    return {
      ...s, userId,
      async unchanged() {
        expect((await sessionsOf(userId)).map((x) => x.sessionId)).toEqual([s.sid]);
        expect((await t.grpc.validateToken({ accessToken: s.access })).valid).toBe(true);
      },
    };
  };

  describe('CreateSession', () => {
    const base = (userId: string) => ({
      userId, username: 'U', roles: ['user'], permissions: ['p'], device: { id: 'd', name: 'Device' }, userAgent: 'ua', ipAddress: '192.0.2.1',
    });
    const C1_CSI = '\u009b';
    const cases: [string, (u: string) => object][] = [
      ['empty user_id', () => ({ ...base(''), userId: '' })],
      ['user_id with a newline', (u) => ({ ...base(u), userId: `${u}\n` })],
      ['user_id with NUL', (u) => ({ ...base(u), userId: `${u}\u0000x` })],
      ['user_id of 257 characters', () => ({ ...base('x'.repeat(257)) })],
      ['username with ESC', (u) => ({ ...base(u), username: 'a\u001b[31mred' })],
      ['username with a C1 control (CSI)', (u) => ({ ...base(u), username: `a${C1_CSI}31mred` })],
      ['username with NEL', (u) => ({ ...base(u), username: 'line\u0085break' })],
      ['device name with DEL', (u) => ({ ...base(u), device: { id: 'd', name: 'a\u007f' } })],
      ['user agent with CR LF', (u) => ({ ...base(u), userAgent: 'ua\r\nX-Injected: 1' })],
      ['invalid ip_address', (u) => ({ ...base(u), ipAddress: '999.1.1.1' })],
      ['host name as ip_address', (u) => ({ ...base(u), ipAddress: 'localhost' })],
      ['ip_address with a port', (u) => ({ ...base(u), ipAddress: '192.0.2.1:443' })],
      ['65 roles', (u) => ({ ...base(u), roles: Array.from({ length: 65 }, (_, i) => `r${i}`) })],
      ['an empty role', (u) => ({ ...base(u), roles: ['user', ''] })],
      ['a role of 129 characters', (u) => ({ ...base(u), roles: ['r'.repeat(129)] })],
      ['65 permissions', (u) => ({ ...base(u), permissions: Array.from({ length: 65 }, (_, i) => `p${i}`) })],
      ['client_id of 129 characters', (u) => ({ ...base(u), clientId: 'c'.repeat(129) })],
    ];
    it.each(cases)('%s → INVALID_ARGUMENT, no session', async (_name, make) => {
      const userId = uniqueUser('bad');
      const req = make(userId) as { userId: string };
      await expectRpcError(t.grpc.createSession(req, apiKey(t.keys.admin)), Code.InvalidArgument, 'invalid_argument');
      await expectRpcError(t.connect.createSession(req, apiKey(t.keys.admin)), Code.InvalidArgument, 'invalid_argument');
      expect(await sessionsOf(userId)).toEqual([]);
      if (req.userId && req.userId.length <= 256 && !/[\u0000-\u001f\u007f-\u009f]/.test(req.userId)) {
        expect(await sessionsOf(req.userId)).toEqual([]);
      }
    });

    it('the limits themselves are accepted (user_id 256, 64 roles, IPv6, empty optional fields)', async () => {
      const long = 'u'.repeat(256);
      const ok = await t.grpc.createSession(
        { userId: long, roles: Array.from({ length: 64 }, (_, i) => `r${i}`), ipAddress: '2001:db8::7' },
        apiKey(t.keys.admin),
      );
      const v = await t.grpc.validateToken({ accessToken: ok.tokens!.accessToken });
      expect(v.principal!.userId).toBe(long);
      expect(v.principal!.roles).toHaveLength(64);
      expect(v.principal!.clientId).toBe('default');
      expect((await t.grpc.createSession({ userId: uniqueUser('unicode'), username: 'Zoë 🚀 日本' }, apiKey(t.keys.admin))).sessionId).toSatisfy(isSessionId);
    });
  });

  describe('Refresh', () => {
    it('an empty refresh token is INVALID_ARGUMENT', async () => {
      await expectRpcError(t.grpc.refresh({ refreshToken: '' }), Code.InvalidArgument, 'invalid_argument');
      await expectRpcError(t.connect.refresh({}), Code.InvalidArgument, 'invalid_argument');
    });

    it('a malformed refresh token is UNAUTHENTICATED refresh_token_invalid and changes nothing', async () => {
      const w = await witness();
      const secret = w.refresh.slice(w.sid.length + 1);
      for (const token of [
        'garbage',
        'x'.repeat(300),
        w.sid,
        `${w.sid}.`,
        `${w.sid}.${secret}x`, // one character too long
        `${w.sid}.${secret.slice(0, 42)}*`, // not base64url
        `${w.sid}:${secret}`,
        `${w.sid.slice(1)}.${secret}A`, // sid one short
        w.access,
      ]) {
        await expectRpcError(t.grpc.refresh({ refreshToken: token }), Code.Unauthenticated, 'refresh_token_invalid');
      }
      await w.unchanged();
      expect((await t.grpc.refresh({ refreshToken: w.refresh })).sessionId).toBe(w.sid);
    });
  });

  describe('ValidateToken', () => {
    it('garbage and oversized tokens are valid=false with MALFORMED / TOO_LARGE, not an RPC error', async () => {
      const cases: [string, TokenInvalidReason][] = [
        ['garbage', TokenInvalidReason.MALFORMED],
        ['a.b.c', TokenInvalidReason.MALFORMED],
        ['eyJhbGciOiJFUzI1NiJ9..sig', TokenInvalidReason.MALFORMED],
        ['a.b.c.d.e', TokenInvalidReason.MALFORMED],
        ['x'.repeat(8192), TokenInvalidReason.MALFORMED],
        ['x'.repeat(8193), TokenInvalidReason.TOO_LARGE],
        ['x'.repeat(60_000), TokenInvalidReason.TOO_LARGE],
      ];
      for (const [token, reason] of cases) {
        for (const client of [t.grpc, t.connect]) {
          const v = await client.validateToken({ accessToken: token });
          expect({ valid: v.valid, reason: TokenInvalidReason[v.reason] }).toEqual({ valid: false, reason: TokenInvalidReason[reason] });
          expect(v.principal).toBeUndefined();
          expect(v.revocationReason).toBe(RevocationReason.UNSPECIFIED);
          expect(v.message).not.toBe('');
          expect(v.message).not.toContain(token.slice(0, 20));
        }
      }
    });

    it('an empty access token is INVALID_ARGUMENT', async () => {
      await expectRpcError(t.grpc.validateToken({}), Code.InvalidArgument, 'invalid_argument');
    });
  });

  describe('Revoke', () => {
    it('each malformed Revoke is INVALID_ARGUMENT and ends nothing', async () => {
      const w = await witness();
      const key = apiKey(t.keys.admin);
      const user = { case: 'userId' as const, value: w.userId };
      const reason = RevocationReason.ADMIN_ACTION;
      const bad = [
        { target: user }, // no reason
        { target: user, reason: RevocationReason.UNSPECIFIED },
        { target: user, reason: 99 as RevocationReason },
        { reason }, // no target
        { target: { case: 'sessionId' as const, value: '' }, reason },
        { target: { case: 'sessionId' as const, value: 'not-a-session-id' }, reason },
        { target: { case: 'sessionId' as const, value: `${w.sid}A` }, reason },
        { target: { case: 'sessionId' as const, value: `${w.sid.slice(0, -1)}!` }, reason },
        { target: { case: 'userId' as const, value: '' }, reason },
        { target: { case: 'userId' as const, value: `${w.userId}\n` }, reason },
        { target: { case: 'accessToken' as const, value: 'garbage' }, reason },
        { target: { case: 'accessToken' as const, value: '' }, reason },
        { target: { case: 'accessToken' as const, value: 'x'.repeat(8193) }, reason },
        { target: user, reason, detail: 'd'.repeat(201) },
        { target: user, reason, detail: 'bad\u0007bell' },
      ];
      for (const req of bad) {
        await expectRpcError(t.grpc.revoke(req, key), Code.InvalidArgument, 'invalid_argument');
      }
      await expectRpcError(t.connect.revoke({ target: user }, key), Code.InvalidArgument, 'invalid_argument');
      await w.unchanged();
      // Detail of exactly 200 characters is fine.
      expect((await t.grpc.revoke({ target: user, reason, detail: 'd'.repeat(200) }, key)).sessionsEnded).toBe(1);
    });
  });

  describe('Logout and ListSessions', () => {
    it('bad scope / session_id combinations are INVALID_ARGUMENT and end nothing', async () => {
      const w = await witness();
      const bad = [
        { scope: LogoutScope.SESSION },
        { scope: LogoutScope.SESSION, sessionId: 'short' },
        { scope: LogoutScope.CURRENT, sessionId: w.sid },
        { scope: LogoutScope.ALL, sessionId: w.sid },
        { scope: 99 as LogoutScope },
      ];
      for (const req of bad) {
        await expectRpcError(t.grpc.logout(req, bearer(w.access)), Code.InvalidArgument, 'invalid_argument');
      }
      await w.unchanged();
    });

    it('ListSessions with a malformed user_id is INVALID_ARGUMENT', async () => {
      await expectRpcError(t.grpc.listSessions({ userId: 'a\u0000b' }, apiKey(t.keys.reader)), Code.InvalidArgument, 'invalid_argument');
      await expectRpcError(t.grpc.listSessions({ userId: 'u'.repeat(257) }, apiKey(t.keys.reader)), Code.InvalidArgument, 'invalid_argument');
    });
  });

  describe('wire-level garbage', () => {
    it('malformed protobuf bytes from a plain grpc-js client are INVALID_ARGUMENT, not INTERNAL', async () => {
      const w = await witness();
      const auth = new grpcJs.Metadata();
      auth.set('authorization', `ApiKey ${t.keys.admin}`);
      const payloads: [string, Buffer][] = [
        ['invalid wire type', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])],
        ['truncated length-delimited field', Buffer.from([0x0a, 0x10, 0x61, 0x62])],
        ['unterminated varint', Buffer.from([0x08, 0xff, 0xff, 0xff])],
        ['field number 0', Buffer.from([0x02, 0x00])],
      ];
      for (const method of ['CreateSession', 'Refresh', 'ValidateToken', 'Revoke', 'Logout', 'ListSessions']) {
        for (const [name, bytes] of payloads) {
          const r = await grpcJsRawCall(raw, method, bytes, auth);
          expect({ method, name, code: r.error && grpcJs.status[r.error.code] }).toEqual({ method, name, code: 'INVALID_ARGUMENT' });
          expect(r.error!.metadata.get('sa-error-code')).toEqual(['invalid_argument']);
        }
      }
      await w.unchanged();
    });

    it('invalid UTF-8 in a string field is not an INTERNAL error', async () => {
      // ValidateTokenRequest.access_token = 0xff 0xfe
      const r = await grpcJsRawCall(raw, 'ValidateToken', Buffer.from([0x0a, 0x02, 0xff, 0xfe]));
      if (r.error) {
        expect(grpcJs.status[r.error.code]).toBe('INVALID_ARGUMENT');
      } else {
        const v = fromBinary(ValidateTokenResponseSchema, r.response);
        expect(v.valid).toBe(false);
        expect(v.reason).toBe(TokenInvalidReason.MALFORMED);
      }
    });

    it('a request above the 64 KiB message limit is refused with RESOURCE_EXHAUSTED', async () => {
      const big = Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x05]), Buffer.alloc(81920, 0x61)]); // access_token of 80 KiB
      const r = await grpcJsRawCall(raw, 'ValidateToken', big);
      expect(r.error && grpcJs.status[r.error.code]).toBe('RESOURCE_EXHAUSTED');
      const viaConnect = await fetch(`${t.httpUrl}/sessionauthority.v1.SessionAuthorityService/ValidateToken`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ accessToken: 'a'.repeat(81920) }),
      });
      expect(viaConnect.status).toBe(429); // Connect's HTTP status for resource_exhausted
      expect(((await viaConnect.json()) as { code: string }).code).toBe('resource_exhausted');
    });

    it('Connect JSON with wrong field types is INVALID_ARGUMENT', async () => {
      const post = (method: string, body: string, headers: Record<string, string> = {}) =>
        fetch(`${t.httpUrl}/sessionauthority.v1.SessionAuthorityService/${method}`, {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: `ApiKey ${t.keys.admin}`, ...headers }, body,
        });
      const userId = uniqueUser('json');
      const bodies: [string, string][] = [
        ['CreateSession', JSON.stringify({ userId: 123 })],
        ['CreateSession', JSON.stringify({ userId, roles: 'admin' })],
        ['CreateSession', JSON.stringify({ userId, device: 'laptop' })],
        ['CreateSession', JSON.stringify({ userId, roles: [1, 2] })],
        ['CreateSession', `{"userId": "${userId}"`], // not JSON
        ['CreateSession', JSON.stringify([userId])],
        ['Revoke', JSON.stringify({ userId, sessionId: 'x', reason: 'REVOCATION_REASON_ADMIN_ACTION' })], // two oneof members
        ['ValidateToken', JSON.stringify({ accessToken: { nested: true } })],
        ['ValidateToken', JSON.stringify({ accessToken: 'a.b.c', acessToken: 'typo' })], // unknown field
        ['CreateSession', JSON.stringify({ userId, ipAdress: '192.0.2.1' })], // unknown field
      ];
      for (const [method, body] of bodies) {
        const res = await post(method, body);
        const json = (await res.json()) as { code: string };
        expect({ method, body, status: res.status, code: json.code }).toEqual({ method, body, status: 400, code: 'invalid_argument' });
      }
      expect(await sessionsOf(userId)).toEqual([]);

      // With the user's own token, so the scope is what decides: an enum name the
      // server does not know must not fall back to UNSPECIFIED (= CURRENT).
      const w = await witness();
      for (const body of [{ scope: 'LOGOUT_SCOPE_EVERYWHERE' }, { scope: 1.5 }, { scope: 9 }, { scope: true }]) {
        const res = await post('Logout', JSON.stringify(body), { authorization: `Bearer ${w.access}` });
        expect({ body, status: res.status, code: ((await res.json()) as { code: string }).code }).toEqual({ body, status: 400, code: 'invalid_argument' });
      }
      await w.unchanged();
      // A known name works.
      const other = await createSession(t.grpc, t.keys.admin, { userId: w.userId, deviceId: 'other' });
      const ok = await post('Logout', JSON.stringify({ scope: 'LOGOUT_SCOPE_SESSION', sessionId: other.sid }), { authorization: `Bearer ${w.access}` });
      expect([ok.status, await ok.json()]).toEqual([200, { sessionsEnded: 1 }]);
      await w.unchanged();

      // A handler-level rejection over Connect JSON carries sa-error-code as a header.
      const res = await post('CreateSession', JSON.stringify({ userId: '' }));
      expect(res.status).toBe(400);
      expect(res.headers.get('sa-error-code')).toBe('invalid_argument');
      expect(((await res.json()) as { code: string }).code).toBe('invalid_argument');
    });
  });
});
