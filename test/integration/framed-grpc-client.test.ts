// The benchmarks' load generator speaks HTTP/2 on a bare socket. Its figures are
// only worth something if every call it counts got a real answer and every
// failure is counted as one, so it is held to that against the real server.
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FramedGrpcClient } from '../../bench/framed-grpc-client.js';
import {
  CreateSessionRequestSchema, CreateSessionResponseSchema, RefreshRequestSchema, RefreshResponseSchema, SessionAuthorityService,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';

const path = (m: string) => `/${SessionAuthorityService.typeName}/${m}`;

describe('FramedGrpcClient (bench load generator)', () => {
  let t: TestAuthority;
  let client: FramedGrpcClient;
  beforeAll(async () => {
    t = await startTestAuthority();
    client = new FramedGrpcClient(t.grpcAddress);
  });
  afterAll(async () => {
    client?.close();
    await t?.stop();
  });

  const createSession = () =>
    client.call(path('CreateSession'), CreateSessionRequestSchema, CreateSessionResponseSchema, create(CreateSessionRequestSchema, { userId: uniqueUser() }), {
      authorization: `ApiKey ${t.keys.admin}`,
    });

  it('many concurrent calls on one connection each get their own answer', async () => {
    const created = await Promise.all(Array.from({ length: 300 }, createSession));
    expect(new Set(created.map((c) => c.sessionId)).size).toBe(300);
    const refreshed = await Promise.all(
      created.map((c) => client.call(path('Refresh'), RefreshRequestSchema, RefreshResponseSchema, create(RefreshRequestSchema, { refreshToken: c.tokens!.refreshToken }))),
    );
    refreshed.forEach((r, i) => expect(r.sessionId).toBe(created[i]!.sessionId));
  });

  it('an error answer rejects the call', async () => {
    await expect(client.call(path('Refresh'), RefreshRequestSchema, RefreshResponseSchema, create(RefreshRequestSchema, { refreshToken: 'not-a-token' }))).rejects.toThrow(/without a message/);
    await expect(client.call(path('CreateSession'), CreateSessionRequestSchema, CreateSessionResponseSchema, create(CreateSessionRequestSchema, { userId: 'x' }))).rejects.toThrow();
    // The connection is still good afterwards.
    expect((await createSession()).sessionId).not.toBe('');
  });

  it('a header value longer than one HPACK length byte is sent intact', async () => {
    const long = await client.call(path('CreateSession'), CreateSessionRequestSchema, CreateSessionResponseSchema, create(CreateSessionRequestSchema, { userId: uniqueUser() }), {
      authorization: `ApiKey ${t.keys.admin}`,
      'x-padding': 'p'.repeat(300),
    });
    expect(long.sessionId).not.toBe('');
  });
});
