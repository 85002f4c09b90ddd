// A full run against real redis-server and nats-server (RPCs, browser mode and a
// sidecar), with the authority and the sidecar logging at debug level into memory: afterwards no log
// line holds a token, a refresh secret, an API key, the key-encryption key or
// private key material, every line written during an RPC carries its request
// id, and /metrics on both shows exactly what happened.
import { createDecipheriv, createPrivateKey, randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogoutScope, RevocationReason, TokenDelivery } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { ManualClock } from '../../src/shared/clock.js';
import {
  apiKey, bearer, createSession, expectRpcError, startTestAuthority, TEST_KEK, uniqueUser, type TestAuthority,
} from '../support/authority.js';
import { captureLogger, LEVEL } from '../support/capture-logger.js';
import { httpCall } from '../support/http-call.js';
import { metricValue, scrape } from '../support/metrics.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { servingStatus, startInProcessSidecar, until, verdictOf, type Sidecar } from '../support/sidecars.js';

const SEC = 1000;
let redis: RedisProcess;
let nats: NatsProcess;
let auth: TestAuthority;
let sidecar: Sidecar;
const authorityLog = captureLogger();
const sidecarLog = captureLogger();
const clock = new ManualClock();

/** Every string that must never reach a log line. */
const secrets: { what: string; value: string }[] = [];
const secret = (what: string, value: string) => secrets.push({ what, value });
/** An access token, and the parts of it that would give it away. */
const accessToken = (what: string, token: string) => {
  const [, payload, signature] = token.split('.');
  secret(`${what} access token`, token);
  secret(`${what} access token payload`, payload!);
  secret(`${what} access token signature`, signature!);
};
const refreshToken = (what: string, token: string) => {
  secret(`${what} refresh token`, token);
  secret(`${what} refresh secret`, token.slice(token.indexOf('.') + 1));
};

let sidecarCalls = 0;
const sidecarVerdict = (token: string) => {
  sidecarCalls++;
  return verdictOf(sidecar.grpc, token);
};

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  auth = await startTestAuthority({
    redisUrl: redis.url, clock, logger: authorityLog.logger,
    env: { NATS_URL: nats.url, SA_ACTIVE_SESSIONS_INTERVAL: '200ms' },
  });
  sidecar = await startInProcessSidecar({ name: 'sidecar', authorityUrl: auth.httpUrl, natsUrl: nats.url, logger: sidecarLog.logger });
  await until(async () => (await servingStatus(sidecar)) === 'SERVING', 20_000, 'sidecar SERVING');
});

afterAll(async () => {
  await sidecar?.stop();
  await auth?.stop();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

describe('a full run', () => {
  const user = uniqueUser('telemetry');

  it('create, refresh, grace retry, reuse, validate, revoke, logout, sidecar validate and bad inputs', async () => {
    const admin = apiKey(auth.keys.admin);
    for (const [name, key] of Object.entries(auth.keys)) secret(`API key ${name}`, key);

    const a = await auth.grpc.createSession(
      { userId: user, username: 'T', device: { id: 'laptop', name: 'Laptop' }, ipAddress: '203.0.113.7' },
      { headers: { authorization: `ApiKey ${auth.keys.admin}`, 'x-request-id': 'trace-create-1' } },
    );
    accessToken('A', a.tokens!.accessToken);
    refreshToken('A', a.tokens!.refreshToken);

    clock.advance(SEC);
    const a1 = (await auth.grpc.refresh({ refreshToken: a.tokens!.refreshToken })).tokens!;
    accessToken('A1', a1.accessToken);
    refreshToken('A1', a1.refreshToken);
    clock.advance(SEC);
    const retried = (await auth.connect.refresh({ refreshToken: a.tokens!.refreshToken })).tokens!;
    expect(retried.refreshToken).toBe(a1.refreshToken); // the grace path: the same pair
    clock.advance(SEC);
    const a2 = (await auth.grpc.refresh({ refreshToken: a1.refreshToken })).tokens!;
    accessToken('A2', a2.accessToken);
    refreshToken('A2', a2.refreshToken);
    clock.advance(SEC);
    await expectRpcError(auth.grpc.refresh({ refreshToken: a.tokens!.refreshToken }), Code.Unauthenticated, 'refresh_token_reused');

    const b = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    const c = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    const d = await createSession(auth.connect, auth.keys.admin, { userId: user });
    for (const [what, s] of [['B', b], ['C', c], ['D', d]] as const) {
      accessToken(what, s.access);
      refreshToken(what, s.refresh);
    }
    // Browser mode: a handoff, then a refresh with the HttpOnly cookie.
    const e = await auth.connect.createSession(
      { userId: user, username: 'T', device: { id: 'device-1', name: 'Browser' }, ipAddress: '203.0.113.7', delivery: TokenDelivery.BROWSER_HANDOFF }, admin,
    );
    secret('handoff code', e.handoffCode);
    const browser = (path: string, headers: Record<string, string>, body?: unknown) =>
      httpCall(`${auth.httpUrl}/auth/v1/${path}`, { headers: { 'content-type': 'application/json', 'sa-csrf': '1', ...headers }, body: JSON.stringify(body ?? {}) });
    const cookieOf = (cookies: string[]) => /^__Secure-sa-refresh=([^;]+);/.exec(cookies[0]!)![1]!;
    const granted = await browser('session', { 'x-request-id': 'trace-browser-1' }, { handoffCode: e.handoffCode });
    expect(granted.status).toBe(200);
    accessToken('E', granted.json.accessToken);
    refreshToken('E cookie', cookieOf(granted.cookies));
    const cookieRefreshed = await browser('refresh', { cookie: `__Secure-sa-refresh=${cookieOf(granted.cookies)}` });
    expect(cookieRefreshed.status).toBe(200);
    accessToken('E2', cookieRefreshed.json.accessToken);
    refreshToken('E2 cookie', cookieOf(cookieRefreshed.cookies));

    expect((await auth.grpc.validateToken({ accessToken: b.access })).valid).toBe(true);
    expect((await sidecarVerdict(b.access)).verdict).toBe('VALID');

    clock.advance(SEC);
    await auth.grpc.revoke({ target: { case: 'sessionId', value: c.sid }, reason: RevocationReason.ADMIN_ACTION }, admin);
    clock.advance(SEC);
    await auth.grpc.logout({ scope: LogoutScope.CURRENT }, bearer(d.access));
    await auth.connect.revoke({ target: { case: 'accessToken', value: b.access }, reason: RevocationReason.SECURITY_RISK }, admin);
    await until(async () => (await sidecarVerdict(b.access)).verdict === 'REVOKED', 5000, 'sidecar sees the token revocation');
    expect((await sidecarVerdict(c.access)).verdict).toBe('REVOKED');

    // Bad inputs, with garbage standing in for tokens and keys.
    const garbageRefresh = `${b.sid}.${randomBytes(32).toString('base64url')}`;
    const garbageJwt = `${Buffer.from('{"alg":"ES256","kid":"nope"}').toString('base64url')}.${randomBytes(40).toString('base64url')}.${randomBytes(64).toString('base64url')}`;
    const [h, p, sig] = b.access.split('.');
    const tampered = `${h}.${p}.${sig!.slice(0, -6)}${sig!.slice(-6).split('').reverse().join('')}`;
    const wrongKey = `test_${randomBytes(24).toString('base64url')}`;
    const junk = `junk-${randomBytes(16).toString('hex')}`;
    for (const [what, value] of [['garbage refresh token', garbageRefresh], ['garbage JWT', garbageJwt], ['tampered token', tampered], ['wrong API key', wrongKey], ['junk token', junk]]) {
      secret(what, value!);
    }
    await expectRpcError(auth.grpc.refresh({ refreshToken: junk }), Code.Unauthenticated, 'refresh_token_invalid');
    await expectRpcError(auth.grpc.refresh({ refreshToken: garbageRefresh }), Code.Unauthenticated, 'refresh_token_invalid');
    expect((await auth.grpc.validateToken({ accessToken: garbageJwt })).valid).toBe(false);
    expect((await auth.connect.validateToken({ accessToken: tampered })).valid).toBe(false);
    await expectRpcError(auth.grpc.logout({}, bearer(garbageJwt)), Code.Unauthenticated, 'unauthenticated');
    await expectRpcError(auth.grpc.logout({}, bearer(tampered)), Code.Unauthenticated, 'unauthenticated');
    await expectRpcError(createSession(auth.grpc, wrongKey, { userId: user }), Code.Unauthenticated, 'unauthenticated');
    await expectRpcError(auth.grpc.revoke({ target: { case: 'accessToken', value: junk }, reason: RevocationReason.OTHER }, admin), Code.InvalidArgument);
    for (const t of [garbageJwt, tampered, junk]) expect((await sidecarVerdict(t)).verdict).not.toBe('VALID');
  });

  it('no log line holds a token, a refresh secret, an API key, the key-encryption key or private key material', async () => {
    secret('key-encryption key', TEST_KEK);
    secret('key-encryption key (hex)', Buffer.from(TEST_KEK, 'base64').toString('hex'));
    const [stored] = await auth.store.listSigningKeys();
    const blob = Buffer.from(stored!.encryptedPrivateKey, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', Buffer.from(TEST_KEK, 'base64'), blob.subarray(0, 12));
    decipher.setAAD(Buffer.from(stored!.kid));
    decipher.setAuthTag(blob.subarray(12, 28));
    const der = Buffer.concat([decipher.update(blob.subarray(28)), decipher.final()]);
    const jwk = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
    secret('encrypted private key', stored!.encryptedPrivateKey);
    secret('private key (DER, base64; its end, past the common ASN.1 header)', der.toString('base64').slice(-40));
    secret('private key (JWK d)', jwk.d!);

    const lines = [...authorityLog.lines, ...sidecarLog.lines].map((l) => JSON.stringify(l));
    // Not vacuous: the run logged, debug lines included.
    expect(authorityLog.lines.filter((l) => l.level === LEVEL.debug).length).toBeGreaterThan(5);
    expect(authorityLog.messages('warn')).toContain('security event');
    expect(sidecarLog.messages('info')).toContain('verifier ready');
    expect(secrets.length).toBeGreaterThan(40);
    const leaks = secrets.flatMap(({ what, value }) => lines.filter((l) => l.includes(value)).map((l) => `${what} in ${l}`));
    expect(leaks).toEqual([]);
  });

  it('every line written during an RPC carries the request id; a caller\'s x-request-id is used', async () => {
    const rpcMessages = ['session created', 'session revoked', 'logout', 'access token revoked', 'security event', 'session handed off to a browser'];
    const during = authorityLog.lines.filter((l) => rpcMessages.includes(l.msg) || (l.level === LEVEL.debug && 'code' in l));
    expect(during.length).toBeGreaterThan(10);
    for (const line of during) expect(line.requestId, JSON.stringify(line)).toMatch(/^\S+$/);
    const created = authorityLog.lines.filter((l) => l.msg === 'session created');
    expect(created[0]!.requestId).toBe('trace-create-1');
    expect(new Set(created.map((l) => l.requestId)).size).toBe(created.length);
    // The browser endpoints (not RPCs) run in a request scope too.
    expect(authorityLog.lines.find((l) => l.msg === 'session handed off to a browser')!.requestId).toBe('trace-browser-1');
    // The reuse's security event and the failed call's line are the same call.
    const reuse = authorityLog.lines.find((l) => l.msg === 'security event')!;
    expect(authorityLog.lines.some((l) => l.code === 'refresh_token_reused' && l.requestId === reuse.requestId)).toBe(true);
  });

  it('the authority\'s /metrics counts exactly what happened', async () => {
    const text = await scrape(auth.httpUrl);
    const v = (name: string, labels: Record<string, string> = {}) => metricValue(text, `session_authority_${name}`, labels);
    expect(v('logins_total')).toBe(5);
    expect(v('refreshes_total', { result: 'rotated' })).toBe(3); // two Refresh RPCs, one browser refresh
    expect(v('refreshes_total', { result: 'grace' })).toBe(1);
    expect(v('refresh_reuse_detected_total')).toBe(1);
    expect(v('logouts_total', { reason: 'refresh_token_reuse' })).toBe(1);
    expect(v('logouts_total', { reason: 'admin_action' })).toBe(1);
    expect(v('logouts_total', { reason: 'user_request' })).toBe(1);
    expect(v('logouts_total', { reason: 'security_risk' })).toBe(0); // a token revocation ends no session
    // A lived 4 s (created, then reused at +4 s), C 1 s, D 2 s (ManualClock).
    expect(v('session_length_seconds_count')).toBe(3);
    expect(v('session_length_seconds_sum')).toBe(7);
    expect(v('session_length_seconds_bucket', { le: '60' })).toBe(3);
    expect(v('security_events_total', { type: 'refresh_reuse' })).toBe(1);
    // A came from "laptop", B from "device-1" (the helper's default): new; C, D and E from it again: not.
    expect(v('security_events_total', { type: 'new_device_login' })).toBe(1);
    expect(v('security_events_total', { type: 'mass_logout' })).toBe(0);
    expect(v('rpc_duration_seconds_count', { method: 'CreateSession', code: 'OK' })).toBe(5);
    expect(v('rpc_duration_seconds_count', { method: 'CreateSession', code: 'UNAUTHENTICATED' })).toBe(1);
    expect(v('rpc_duration_seconds_count', { method: 'Refresh', code: 'OK' })).toBe(3);
    expect(v('rpc_duration_seconds_count', { method: 'Refresh', code: 'UNAUTHENTICATED' })).toBe(3);
    expect(v('rpc_duration_seconds_count', { method: 'ValidateToken', code: 'OK' })).toBe(3);
    expect(v('rpc_duration_seconds_count', { method: 'Revoke', code: 'OK' })).toBe(2);
    expect(v('rpc_duration_seconds_count', { method: 'Revoke', code: 'INVALID_ARGUMENT' })).toBe(1);
    expect(v('rpc_duration_seconds_count', { method: 'Logout', code: 'OK' })).toBe(1);
    expect(v('rpc_duration_seconds_count', { method: 'Logout', code: 'UNAUTHENTICATED' })).toBe(2);
    expect(v('rpc_duration_seconds_bucket', { method: 'Refresh', code: 'OK', le: '+Inf' })).toBe(3);
    expect(v('store_errors_total')).toBe(0);
    expect(v('signing_keys')).toBe(1);
    expect(v('signing_key_age_seconds')).toBeGreaterThanOrEqual(6);
    // B and E are live: A was reused, C revoked, D logged out. Counted from Redis by SCAN.
    await until(async () => metricValue(await scrape(auth.httpUrl), 'session_authority_active_sessions') === 2, 5000, 'active sessions 2');
  });

  it('the sidecar\'s /metrics shows its revocation set, propagation, keys and feed', async () => {
    const text = await sidecar.metrics();
    const v = (name: string, labels: Record<string, string> = {}) => metricValue(text, `session_verifier_${name}`, labels);
    expect(v('ready')).toBe(1);
    expect(v('revocations', { kind: 'token' })).toBe(1);
    expect(v('revocations', { kind: 'session' })).toBe(3);
    expect(v('revocations', { kind: 'user' })).toBe(0);
    // All four revocations arrived live, after the replay at start.
    expect(v('revocation_propagation_seconds_count')).toBe(4);
    expect(v('keys')).toBe(1);
    expect(v('key_set_age_seconds')).toBeGreaterThanOrEqual(0);
    expect(v('key_set_age_seconds')).toBeLessThan(300);
    expect(v('feed_stale')).toBe(0);
    expect(v('feed_disconnected_seconds')).toBe(0);
    expect(v('rpc_duration_seconds_count', { method: 'ValidateToken', code: 'OK' })).toBe(sidecarCalls);
  });
});
