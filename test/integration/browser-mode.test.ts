// Browser (SPA) mode on a real redis-server: the handoff from CreateSession to
// an HttpOnly refresh cookie, refresh and logout through /auth/v1/*, CSRF and
// CORS rules, and the refresh token staying out of bodies and logs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { TokenDelivery } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { loadConfig } from '../../src/config/config.js';
import { ManualClock } from '../../src/shared/clock.js';
import { apiKey, bearer, expectRpcError, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { captureLogger } from '../support/capture-logger.js';
import { httpCall, type HttpReply } from '../support/http-call.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

const APP = 'https://app.example.com';
const COOKIE = '__Secure-sa-refresh';
const ATTRIBUTES = 'Path=/auth/v1; HttpOnly; Secure; SameSite=Strict';
const IDLE_S = 30 * 60;

let redis: RedisProcess;
let t: TestAuthority;
const clock = new ManualClock();
const log = captureLogger();
/** Every secret the tests saw, to prove none reached a log line. */
const secrets = new Set<string>();
const bodies: string[] = [];

beforeAll(async () => {
  redis = await startRedis();
  t = await startTestAuthority({
    redisUrl: redis.url, clock, logger: log.logger,
    env: { SA_ALLOWED_ORIGINS: `${APP}, http://localhost:5173`, SA_REFRESH_GRACE: '5s', SA_HANDOFF_TTL: '60s' },
  });
});
afterAll(async () => {
  await t?.stop();
  await redis?.stop();
});

interface Options {
  body?: unknown;
  cookie?: string;
  csrf?: boolean;
  origin?: string;
  method?: string;
}

async function auth(endpoint: 'session' | 'refresh' | 'logout', o: Options = {}): Promise<HttpReply> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.csrf !== false) headers['sa-csrf'] = '1';
  if (o.cookie) headers.cookie = `other=1; ${COOKIE}=${o.cookie}`;
  if (o.origin) headers.origin = o.origin;
  const reply = await httpCall(`${t.httpUrl}/auth/v1/${endpoint}`, {
    method: o.method ?? 'POST', headers, body: o.body === undefined ? undefined : JSON.stringify(o.body),
  });
  bodies.push(reply.text);
  return reply;
}

/** The refresh token a Set-Cookie carries, after checking its attributes. */
function cookieOf(reply: HttpReply, maxAge = IDLE_S): string {
  expect(reply.cookies).toHaveLength(1);
  const m = new RegExp(`^${COOKIE}=([^;]+); ${ATTRIBUTES}; Max-Age=(\\d+)$`).exec(reply.cookies[0]!);
  expect(m, reply.cookies[0]).not.toBeNull();
  expect(Number(m![2])).toBe(maxAge);
  secrets.add(m![1]!);
  return m![1]!;
}

function expectCleared(reply: HttpReply): void {
  expect(reply.cookies).toEqual([`${COOKIE}=; ${ATTRIBUTES}; Max-Age=0`]);
}

async function handoffCode(userId: string, deviceId = 'browser-1'): Promise<string> {
  const res = await t.connect.createSession(
    { userId, username: userId, device: { id: deviceId, name: 'Browser' }, userAgent: 'vitest', delivery: TokenDelivery.BROWSER_HANDOFF },
    apiKey(t.keys.login),
  );
  expect(res.tokens).toBeUndefined();
  expect(res.handoffCode).toMatch(/^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/);
  expect(res.handoffCode.startsWith(res.sessionId)).toBe(true);
  expect(Number(res.handoffExpiresAt!.seconds) * 1000).toBeGreaterThan(clock.now() + 59_000);
  secrets.add(res.handoffCode);
  return res.handoffCode;
}

/** A browser session: its grant and cookie. */
async function signIn(userId = uniqueUser('web'), deviceId?: string) {
  const reply = await auth('session', { body: { handoffCode: await handoffCode(userId, deviceId) } });
  expect(reply.status, reply.text).toBe(200);
  secrets.add(reply.json.accessToken);
  return { userId, grant: reply.json, cookie: cookieOf(reply) };
}

describe('browser session lifecycle', () => {
  it('handoff → cookie → refresh rotates the cookie → logout clears it', async () => {
    const userId = uniqueUser('web');
    const code = await handoffCode(userId);
    const first = await auth('session', { body: { handoffCode: code } });
    expect(first.status, first.text).toBe(200);
    expect(first.headers['cache-control']).toBe('no-store');
    const grant = first.json;
    expect(Object.keys(grant).sort()).toEqual(['accessToken', 'accessTokenExpiresAt', 'refreshExpiresAt', 'sessionExpiresAt', 'sessionId', 'userId']);
    expect(grant.userId).toBe(userId);
    expect(code.startsWith(grant.sessionId)).toBe(true);
    expect(grant.accessTokenExpiresAt).toBe((Math.floor(clock.now() / 1000) + 15 * 60) * 1000);
    expect(grant.refreshExpiresAt).toBe(clock.now() + IDLE_S * 1000);
    expect(grant.sessionExpiresAt).toBe(clock.now() + 30 * 86_400_000);
    const cookie0 = cookieOf(first);
    secrets.add(grant.accessToken);
    expect((await t.connect.validateToken({ accessToken: grant.accessToken })).valid).toBe(true);

    clock.advance(60_000);
    const refreshed = await auth('refresh', { cookie: cookie0 });
    expect(refreshed.status, refreshed.text).toBe(200);
    const cookie1 = cookieOf(refreshed);
    expect(cookie1).not.toBe(cookie0);
    expect(refreshed.json.sessionId).toBe(grant.sessionId);
    expect(refreshed.json.refreshExpiresAt).toBe(clock.now() + IDLE_S * 1000);
    expect(refreshed.json.accessToken).not.toBe(grant.accessToken);
    secrets.add(refreshed.json.accessToken);
    const listed = await t.connect.listSessions({}, bearer(refreshed.json.accessToken));
    expect(listed.sessions.map((s) => [s.sessionId, s.current])).toEqual([[grant.sessionId, true]]);

    const out = await auth('logout', { cookie: cookie1, body: { scope: 'current' } });
    expect(out.status, out.text).toBe(200);
    expect(out.json).toEqual({ sessionsEnded: 1 });
    expectCleared(out);
    const after = await auth('refresh', { cookie: cookie1 });
    expect(after.status).toBe(401);
    expect(after.json.code).toBe('session_ended');
    expectCleared(after);
    expect((await t.connect.validateToken({ accessToken: refreshed.json.accessToken })).valid).toBe(false);
  });

  it('signing in again in the same browser ends the session its old cookie held', async () => {
    const first = await signIn();
    const again = await auth('session', { cookie: first.cookie, body: { handoffCode: await handoffCode(first.userId) } });
    expect(again.status, again.text).toBe(200);
    const cookie = cookieOf(again);
    secrets.add(again.json.accessToken);
    expect(again.json.sessionId).not.toBe(first.grant.sessionId);
    const listed = await t.connect.listSessions({}, bearer(again.json.accessToken));
    expect(listed.sessions.map((s) => s.sessionId)).toEqual([again.json.sessionId]);
    expect((await auth('refresh', { cookie: first.cookie })).status).toBe(401);
    expect((await auth('refresh', { cookie })).status).toBe(200);
  });

  it('a handoff code works once, and not after SA_HANDOFF_TTL', async () => {
    const code = await handoffCode(uniqueUser('web'));
    expect((await auth('session', { body: { handoffCode: code } })).status).toBe(200);
    const again = await auth('session', { body: { handoffCode: code } });
    expect(again.status).toBe(401);
    expect(again.json).toEqual({ code: 'unauthenticated', message: 'the handoff code is unknown, expired or already used' });
    expect(again.cookies).toEqual([]);

    const late = await handoffCode(uniqueUser('web'));
    clock.advance(60_000);
    expect((await auth('session', { body: { handoffCode: late } })).status).toBe(401);

    expect((await auth('session', { body: { handoffCode: 'x'.repeat(76) } })).status).toBe(401);
    const missing = await auth('session', { body: {} });
    expect(missing.status).toBe(400);
    expect(missing.json.code).toBe('invalid_argument');
    expect((await auth('session', { body: [1] })).status).toBe(400);
    expect((await auth('session', { body: { handoffCode: 'y'.repeat(5000) } })).status).toBe(400);
  });

  it('a handoff for a session revoked before the exchange is refused', async () => {
    const userId = uniqueUser('web');
    const code = await handoffCode(userId);
    await t.connect.revoke({ target: { case: 'userId', value: userId }, reason: 2 }, apiKey(t.keys.admin));
    const reply = await auth('session', { body: { handoffCode: code } });
    expect(reply.status).toBe(401);
    expect(reply.json.code).toBe('session_ended');
  });

  it('inside the grace window the old cookie gets the same pair (two tabs); after it the session ends', async () => {
    const { cookie: c0, grant } = await signIn();
    const a = await auth('refresh', { cookie: c0 });
    clock.advance(4000);
    const b = await auth('refresh', { cookie: c0 });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(b.json).toEqual(a.json);
    expect(cookieOf(b, IDLE_S - 4)).toBe(cookieOf(a));

    clock.advance(2000);
    const stale = await auth('refresh', { cookie: c0 });
    expect(stale.status).toBe(401);
    expect(stale.json.code).toBe('refresh_token_reused');
    expectCleared(stale);
    const current = await auth('refresh', { cookie: cookieOf(a) });
    expect(current.status).toBe(401);
    expect(current.json.code).toBe('session_ended');
    expect((await t.connect.validateToken({ accessToken: grant.accessToken })).revocationReason).toBe(6);
  });

  it('logout "others" keeps this browser signed in; "all" ends everything', async () => {
    const { userId, cookie } = await signIn();
    await signIn(userId, 'browser-2');
    const third = await signIn(userId, 'browser-3');

    const others = await auth('logout', { cookie, body: { scope: 'others' } });
    expect(others.status, others.text).toBe(200);
    expect(others.json).toEqual({ sessionsEnded: 2 });
    expect(others.cookies).toEqual([]);
    expect((await auth('refresh', { cookie: third.cookie })).json.code).toBe('session_ended');
    const still = await auth('refresh', { cookie });
    expect(still.status).toBe(200);

    await signIn(userId, 'browser-4');
    const all = await auth('logout', { cookie: cookieOf(still), body: { scope: 'all' } });
    expect(all.json).toEqual({ sessionsEnded: 2 });
    expectCleared(all);
    expect(await t.connect.listSessions({ userId }, apiKey(t.keys.reader))).toMatchObject({ sessions: [] });
  });

  it('logout refuses a bad scope, a missing cookie and a stale one, changing nothing', async () => {
    const { cookie, grant } = await signIn();
    const bad = await auth('logout', { cookie, body: { scope: 'everyone' } });
    expect(bad.status).toBe(400);
    expect(bad.json).toEqual({ code: 'invalid_argument', message: 'scope must be "current", "all" or "others"' });
    const none = await auth('logout', { body: { scope: 'current' } });
    expect(none.status).toBe(401);
    expect(none.json.code).toBe('unauthenticated');
    const wrong = await auth('logout', { cookie: `${grant.sessionId}.${'A'.repeat(43)}`, body: { scope: 'all' } });
    expect(wrong.status).toBe(401);
    expect(wrong.json.code).toBe('refresh_token_invalid');
    expect((await t.connect.validateToken({ accessToken: grant.accessToken })).valid).toBe(true);
  });
});

describe('CSRF and CORS', () => {
  it('a POST without sa-csrf: 1 is 403 and changes nothing', async () => {
    const { cookie } = await signIn();
    const reply = await auth('refresh', { cookie, csrf: false });
    expect(reply.status).toBe(403);
    expect(reply.json).toEqual({ code: 'permission_denied', message: 'the sa-csrf: 1 header is required' });
    expect(reply.cookies).toEqual([]);
    const wrongValue = await httpCall(`${t.httpUrl}/auth/v1/refresh`, { headers: { 'sa-csrf': 'yes', cookie: `${COOKIE}=${cookie}` } });
    expect(wrongValue.status).toBe(403);
    // the cookie was not rotated by the refused calls
    expect((await auth('refresh', { cookie })).status).toBe(200);
  });

  it('a foreign Origin is 403 with no CORS headers, even with sa-csrf; its preflight is refused', async () => {
    const { cookie } = await signIn();
    const reply = await auth('logout', { cookie, origin: 'https://evil.example', body: { scope: 'all' } });
    expect(reply.status).toBe(403);
    expect(reply.json.code).toBe('permission_denied');
    expect(reply.headers['access-control-allow-origin']).toBeUndefined();
    expect(reply.cookies).toEqual([]);
    const preflight = await httpCall(`${t.httpUrl}/auth/v1/logout`, {
      method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    // a look-alike of an allowed origin is foreign too
    expect((await auth('refresh', { cookie, origin: `${APP}.evil.example` })).status).toBe(403);
    expect((await auth('refresh', { cookie })).status).toBe(200);
  });

  it('an allowed origin gets credentialed CORS, and its preflight works; the own origin is allowed', async () => {
    const preflight = await httpCall(`${t.httpUrl}/auth/v1/refresh`, {
      method: 'OPTIONS', headers: { origin: APP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'sa-csrf,content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers).toMatchObject({
      'access-control-allow-origin': APP,
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'POST',
      vary: 'Origin',
    });
    expect(String(preflight.headers['access-control-allow-headers']).toLowerCase().split(', ')).toEqual(expect.arrayContaining(['sa-csrf', 'content-type']));

    const { cookie } = await signIn();
    const reply = await auth('refresh', { cookie, origin: APP });
    expect(reply.status).toBe(200);
    expect(reply.headers['access-control-allow-origin']).toBe(APP);
    expect(reply.headers['access-control-allow-credentials']).toBe('true');
    const own = await auth('refresh', { cookie: cookieOf(reply), origin: t.httpUrl });
    expect(own.status, own.text).toBe(200);
  });

  it('Connect routes: preflight for an allowed origin, CORS headers on the call, sa-error-code exposed', async () => {
    const path = `${t.httpUrl}/sessionauthority.v1.SessionAuthorityService/ListSessions`;
    const preflight = await httpCall(path, {
      method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('http://localhost:5173');
    const allowed = String(preflight.headers['access-control-allow-headers']).toLowerCase().split(', ');
    expect(allowed).toEqual(expect.arrayContaining(['authorization', 'connect-protocol-version', 'content-type', 'connect-timeout-ms']));

    const { grant } = await signIn();
    const list = await httpCall(path, {
      headers: { origin: 'http://localhost:5173', 'content-type': 'application/json', authorization: `Bearer ${grant.accessToken}` }, body: '{}',
    });
    expect(list.status).toBe(200);
    expect(list.json.sessions).toHaveLength(1);
    expect(list.headers['access-control-allow-origin']).toBe('http://localhost:5173');
    expect(String(list.headers['access-control-expose-headers']).toLowerCase()).toContain('sa-error-code');

    const foreign = await httpCall(path, { headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{}' });
    expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('other methods and paths under /auth/v1 are refused', async () => {
    expect((await auth('refresh', { method: 'GET' })).status).toBe(405);
    const unknown = await httpCall(`${t.httpUrl}/auth/v1/nope`, { headers: { 'sa-csrf': '1' } });
    expect(unknown.status).toBe(404);
  });
});

describe('secrets', () => {
  it('the refresh token never appears in a response body, and no secret in a log line', async () => {
    // Runs last: the lifecycle tests above have filled `secrets` and `bodies`.
    const refreshTokens = [...secrets].filter((s) => /^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/.test(s));
    expect(refreshTokens.length).toBeGreaterThan(10);
    expect(bodies.length).toBeGreaterThan(20);
    for (const body of bodies) for (const token of refreshTokens) expect(body.includes(token), 'a refresh token or code in a body').toBe(false);
    expect(log.lines.length).toBeGreaterThan(5);
    const logged = log.lines.map((l) => JSON.stringify(l)).join('\n');
    for (const secret of secrets) expect(logged.includes(secret), 'a secret in the log').toBe(false);
    // and the handoff really was logged, so the check above looked at something
    expect(log.messages('info')).toContain('session handed off to a browser');
  });
});

it('CreateSession refuses an unknown delivery', async () => {
  await expectRpcError(
    t.connect.createSession({ userId: 'u', delivery: 7 as TokenDelivery }, apiKey(t.keys.login)),
    Code.InvalidArgument, 'invalid_argument',
  );
});

describe('configuration', () => {
  it('SA_ALLOWED_ORIGINS takes exact origins only; the new durations and limits are checked', () => {
    expect(loadConfig({ SA_ALLOWED_ORIGINS: ' https://App.example.com , http://localhost:5173/ ' }).allowedOrigins)
      .toEqual(['https://app.example.com', 'http://localhost:5173']);
    expect(loadConfig({}).allowedOrigins).toEqual([]);
    for (const bad of ['*', 'app.example.com', 'https://app.example.com/path', 'ftp://x.example', 'https://*.example.com']) {
      expect(() => loadConfig({ SA_ALLOWED_ORIGINS: bad }), bad).toThrow(/^SA_ALLOWED_ORIGINS: /);
    }
    expect(loadConfig({}).handoffTtlMs).toBe(60_000);
    expect(loadConfig({}).watchHeartbeatMs).toBe(25_000);
    expect(loadConfig({}).watchMaxPerUser).toBe(32);
    expect(() => loadConfig({ SA_HANDOFF_TTL: '11m' })).toThrow(/^SA_HANDOFF_TTL: /);
    expect(() => loadConfig({ SA_WATCH_HEARTBEAT: '10ms' })).toThrow(/^SA_WATCH_HEARTBEAT: /);
    expect(() => loadConfig({ SA_WATCH_MAX_PER_USER: '0' })).toThrow(/^SA_WATCH_MAX_PER_USER: /);
  });
});
