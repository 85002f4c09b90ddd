// Starts a session authority in-process (Redis or memory store) for
// integration tests, and builds clients for its two ports.
import { createHash, randomBytes } from 'node:crypto';
import * as grpcJs from '@grpc/grpc-js';
import { fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape, create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { expect } from 'vitest';
import { startAuthority, type AuthorityOptions, type RunningAuthority } from '../../src/authority/authority-server.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { SessionAuthorityService } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import type { Clock } from '../../src/shared/clock.js';
import { silentLogger, type Logger } from '../../src/shared/logger.js';
import { createStore } from '../../src/store/create-store.js';
import type { SessionStore } from '../../src/store/session-store.js';

export type AuthorityClient = Client<typeof SessionAuthorityService>;

/** API keys every test authority knows, by purpose. */
export interface TestKeys {
  /** All three scopes. */
  admin: string;
  /** sessions:create only. */
  login: string;
  /** sessions:read only. */
  reader: string;
  /** sessions:revoke only. */
  revoker: string;
}

export interface TestAuthority {
  authority: RunningAuthority;
  store: SessionStore;
  config: Config;
  env: Record<string, string>;
  keys: TestKeys;
  /** Connect client over HTTP/2 gRPC against the grpc-js port. */
  grpc: AuthorityClient;
  /** Connect client using the Connect protocol over HTTP/1.1 against the HTTP port. */
  connect: AuthorityClient;
  grpcAddress: string;
  httpUrl: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Empty or absent: the in-memory store. */
  redisUrl?: string;
  clock?: Clock;
  /** Extra environment (SA_* keys) layered over the test defaults. */
  env?: Record<string, string>;
  /** The authority's logger (default: silent). */
  logger?: Logger;
  /** More routes on the HTTP port (e.g. the demo's). */
  httpRoutes?: AuthorityOptions['httpRoutes'];
  /** Where tokens are signed (default: the authority's own thread). */
  signer?: AuthorityOptions['signer'];
}

export const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

export function newTestKeys(): TestKeys {
  const k = () => `test_${randomBytes(24).toString('base64url')}`;
  return { admin: k(), login: k(), reader: k(), revoker: k() };
}

export function apiKeysJson(keys: TestKeys): string {
  return JSON.stringify([
    { name: 'admin', sha256: sha256Hex(keys.admin), scopes: ['sessions:create', 'sessions:revoke', 'sessions:read'] },
    { name: 'login', sha256: sha256Hex(keys.login), scopes: ['sessions:create'] },
    { name: 'reader', sha256: sha256Hex(keys.reader), scopes: ['sessions:read'] },
    { name: 'revoker', sha256: sha256Hex(keys.revoker), scopes: ['sessions:revoke'] },
  ]);
}

export const TEST_KEK = randomBytes(32).toString('base64');

export async function startTestAuthority(options: StartOptions = {}): Promise<TestAuthority> {
  const keys = newTestKeys();
  const env: Record<string, string> = {
    SA_GRPC_PORT: '0',
    SA_HTTP_PORT: '0',
    SA_API_KEYS: apiKeysJson(keys),
    SA_KEY_ENCRYPTION_KEY: TEST_KEK,
    SA_LOG_LEVEL: 'silent',
    ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
    ...options.env,
  };
  const config = loadConfig(env);
  const logger = options.logger ?? silentLogger;
  const store = await createStore(config, logger);
  const authority = await startAuthority({ config, store, logger, clock: options.clock, httpRoutes: options.httpRoutes, signer: options.signer });
  const grpcAddress = `127.0.0.1:${authority.grpcPort}`;
  const httpUrl = `http://127.0.0.1:${authority.httpPort}`;
  const h2 = new Http2SessionManager(`http://${grpcAddress}`);
  const grpc = createClient(SessionAuthorityService, createGrpcTransport({ baseUrl: `http://${grpcAddress}`, sessionManager: h2 }));
  const connect = createClient(SessionAuthorityService, createConnectTransport({ baseUrl: httpUrl, httpVersion: '1.1' }));
  return {
    authority, store, config, env, keys, grpc, connect, grpcAddress, httpUrl,
    async stop() {
      h2.abort();
      await authority.stop();
      await store.close();
    },
  };
}

/** Call options carrying an `authorization` header. */
export const apiKey = (key: string, timeoutMs = 10_000) => ({ headers: { authorization: `ApiKey ${key}` }, timeoutMs });
export const bearer = (token: string, timeoutMs = 10_000) => ({ headers: { authorization: `Bearer ${token}` }, timeoutMs });

/** Awaits a call that must fail; checks the status code and the `sa-error-code` metadata. */
export async function expectRpcError(call: Promise<unknown>, code: Code, saErrorCode?: string): Promise<ConnectError> {
  let error: unknown;
  try {
    await call;
  } catch (e) {
    error = e;
  }
  expect(error, 'the call should have failed').toBeInstanceOf(ConnectError);
  const ce = error as ConnectError;
  expect({ code: Code[ce.code], message: ce.rawMessage }).toMatchObject({ code: Code[code] });
  if (saErrorCode !== undefined) expect(ce.metadata.get('sa-error-code')).toBe(saErrorCode);
  return ce;
}

export interface SessionInput {
  userId: string;
  username?: string;
  roles?: string[];
  permissions?: string[];
  deviceId?: string;
  ip?: string;
}

/** CreateSession with the admin key. */
export async function createSession(client: AuthorityClient, key: string, input: SessionInput) {
  const res = await client.createSession(
    {
      userId: input.userId,
      username: input.username ?? input.userId,
      roles: input.roles ?? ['user'],
      permissions: input.permissions ?? [],
      device: { id: input.deviceId ?? 'device-1', name: 'Test device' },
      userAgent: 'vitest',
      ipAddress: input.ip ?? '203.0.113.7',
    },
    apiKey(key),
  );
  return { sid: res.sessionId, access: res.tokens!.accessToken, refresh: res.tokens!.refreshToken, res };
}

/** Decodes a JWT's header and payload without verifying it. */
export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')),
  };
}

export const uniqueUser = (prefix = 'user') => `${prefix}-${randomBytes(6).toString('hex')}`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const SERVICE_PATH = '/sessionauthority.v1.SessionAuthorityService';

export type RawResult<O> = { response: O; error?: undefined } | { response?: undefined; error: grpcJs.ServiceError };

/** One unary call with a plain @grpc/grpc-js client, on bytes (no serialization). */
export function grpcJsRawCall(
  client: grpcJs.Client, method: string, bytes: Buffer, metadata = new grpcJs.Metadata(), deadlineMs = 5000,
): Promise<RawResult<Buffer>> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      `${SERVICE_PATH}/${method}`, (b) => b, (b) => b, bytes, metadata, { deadline: Date.now() + deadlineMs },
      (error, response) => resolve(error ? { error } : { response: response! }),
    );
  });
}

/** One unary call with a plain @grpc/grpc-js client, serialized with protobuf-es toBinary/fromBinary. */
export function grpcJsCall<I extends DescMessage, O extends DescMessage>(
  client: grpcJs.Client, method: string, input: I, output: O, request: MessageInitShape<I>, metadata = new grpcJs.Metadata(), deadlineMs = 5000,
): Promise<RawResult<MessageShape<O>>> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
      `${SERVICE_PATH}/${method}`,
      (m) => Buffer.from(toBinary(input, m)),
      (b) => fromBinary(output, b),
      create(input, request), metadata, { deadline: Date.now() + deadlineMs },
      (error, response) => resolve(error ? { error } : { response: response! }),
    );
  });
}

export const newGrpcJsClient = (address: string) => new grpcJs.Client(address, grpcJs.credentials.createInsecure());
