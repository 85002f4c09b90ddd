// A plain @grpc/grpc-js client (no Connect) against the grpc-js port, and the
// JWKS document on the HTTP port.
import * as grpcJs from '@grpc/grpc-js';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateSessionRequestSchema, CreateSessionResponseSchema, GetJwksRequestSchema, GetJwksResponseSchema, RefreshRequestSchema,
  RefreshResponseSchema, TokenInvalidReason, ValidateTokenRequestSchema, ValidateTokenResponseSchema,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { decodeJwt, grpcJsCall, grpcJsRawCall, newGrpcJsClient, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { isSessionId } from '../../src/store/session-id.js';

describe('grpc-js interop (Redis)', () => {
  let redis: RedisProcess;
  let t: TestAuthority;
  let client: grpcJs.Client;

  beforeAll(async () => {
    redis = await startRedis();
    t = await startTestAuthority({ redisUrl: redis.url });
    client = newGrpcJsClient(t.grpcAddress);
  });
  afterAll(async () => {
    client?.close();
    await t?.stop();
    await redis?.stop();
  });

  const withAuth = (value: string) => {
    const m = new grpcJs.Metadata();
    m.set('authorization', value);
    return m;
  };

  it('CreateSession, ValidateToken, Refresh and GetJwks with a plain grpc-js client', async () => {
    const userId = uniqueUser('interop');
    const created = await grpcJsCall(client, 'CreateSession', CreateSessionRequestSchema, CreateSessionResponseSchema, {
      userId, username: 'Interop', roles: ['user'], permissions: ['read'], device: { id: 'cli', name: 'CLI' }, ipAddress: '192.0.2.10',
    }, withAuth(`ApiKey ${t.keys.login}`));
    expect(created.error).toBeUndefined();
    const res = created.response!;
    expect(res.sessionId).toSatisfy(isSessionId);
    expect(res.tokens!.tokenType).toBe('Bearer');
    expect(timestampMs(res.sessionExpiresAt!)).toBeGreaterThan(Date.now());

    const validated = await grpcJsCall(client, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, {
      accessToken: res.tokens!.accessToken,
    });
    expect(validated.response!.valid).toBe(true);
    expect(validated.response!.principal).toMatchObject({ userId, username: 'Interop', sessionId: res.sessionId, roles: ['user'], permissions: ['read'] });

    const garbage = await grpcJsCall(client, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'nope' });
    expect(garbage.response!.valid).toBe(false);
    expect(garbage.response!.reason).toBe(TokenInvalidReason.MALFORMED);

    const refreshed = await grpcJsCall(client, 'Refresh', RefreshRequestSchema, RefreshResponseSchema, { refreshToken: res.tokens!.refreshToken });
    expect(refreshed.response!.sessionId).toBe(res.sessionId);
    expect(refreshed.response!.tokens!.refreshToken).not.toBe(res.tokens!.refreshToken);

    const jwks = await grpcJsCall(client, 'GetJwks', GetJwksRequestSchema, GetJwksResponseSchema, {});
    const keys = jwks.response!.keys;
    expect(keys.length).toBeGreaterThanOrEqual(1);
    const kid = decodeJwt(res.tokens!.accessToken).header.kid;
    const key = keys.find((k) => k.kid === kid);
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(key!.x).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(key!.y).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(key!.n).toBe('');
  });

  it('errors carry the gRPC status and sa-error-code trailer to a grpc-js client', async () => {
    const req = { userId: uniqueUser('e') };
    const none = await grpcJsCall(client, 'CreateSession', CreateSessionRequestSchema, CreateSessionResponseSchema, req);
    expect(grpcJs.status[none.error!.code]).toBe('UNAUTHENTICATED');
    expect(none.error!.metadata.get('sa-error-code')).toEqual(['unauthenticated']);
    const denied = await grpcJsCall(client, 'CreateSession', CreateSessionRequestSchema, CreateSessionResponseSchema, req, withAuth(`ApiKey ${t.keys.reader}`));
    expect(grpcJs.status[denied.error!.code]).toBe('PERMISSION_DENIED');
    expect(denied.error!.metadata.get('sa-error-code')).toEqual(['permission_denied']);
    const badRefresh = await grpcJsCall(client, 'Refresh', RefreshRequestSchema, RefreshResponseSchema, { refreshToken: 'x' });
    expect(grpcJs.status[badRefresh.error!.code]).toBe('UNAUTHENTICATED');
    expect(badRefresh.error!.metadata.get('sa-error-code')).toEqual(['refresh_token_invalid']);
    expect(badRefresh.error!.details).toBe('refresh token is malformed');
    const unknownMethod = await grpcJsRawCall(client, 'NoSuchMethod', Buffer.alloc(0));
    expect(grpcJs.status[unknownMethod.error!.code]).toBe('UNIMPLEMENTED');
  });

  it('GET /.well-known/jwks.json is cacheable and lists the same kids as GetJwks; /healthz answers', async () => {
    const res = await fetch(`${t.httpUrl}/.well-known/jwks.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/jwk-set+json');
    const cacheControl = res.headers.get('cache-control')!;
    expect(cacheControl).toMatch(/\bpublic\b/);
    expect(Number(/max-age=(\d+)/.exec(cacheControl)![1])).toBeGreaterThan(0);
    const doc = (await res.json()) as { keys: Record<string, unknown>[] };
    const viaGrpc = await t.grpc.getJwks({});
    expect(doc.keys.map((k) => k.kid).sort()).toEqual(viaGrpc.keys.map((k) => k.kid).sort());
    for (const k of doc.keys) {
      // Public members only.
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(k).not.toHaveProperty(secret);
      expect(k).toMatchObject({ use: 'sig', alg: 'ES256' });
    }
    const head = await fetch(`${t.httpUrl}/.well-known/jwks.json`, { method: 'HEAD' });
    expect(head.status).toBe(200);

    const health = await fetch(`${t.httpUrl}/healthz`);
    expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
  });
});
