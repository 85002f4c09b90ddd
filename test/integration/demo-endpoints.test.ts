// The dev demo's HTTP endpoints on a real authority (embedded store), without a
// browser: what the login accepts and refuses, and the token check of /demo/v1/me.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { apiKey, uniqueUser, type TestAuthority } from '../support/authority.js';
import { startDemoAuthority } from '../support/demo-page.js';
import { httpCall } from '../support/http-call.js';

describe('demo endpoints', () => {
  let t: TestAuthority;
  beforeAll(async () => {
    t = await startDemoAuthority();
  });
  afterAll(async () => {
    await t?.stop();
  });

  const json = { 'content-type': 'application/json' };
  const login = (body: unknown, headers: Record<string, string> = {}) =>
    httpCall(`${t.httpUrl}/demo/v1/login`, { headers: { ...json, 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0 Safari/537.36', ...headers }, body: JSON.stringify(body) });
  const collect = async (handoffCode: string) =>
    (await httpCall(`${t.httpUrl}/auth/v1/session`, { headers: { ...json, 'sa-csrf': '1' }, body: JSON.stringify({ handoffCode }) })).json;
  const listOf = async (userId: string) => (await t.connect.listSessions({ userId }, apiKey(t.keys.reader))).sessions;

  it('login: a handoff session for demo-<lower-case username>, device named from the browser, with the chosen lifetime', async () => {
    const name = uniqueUser('Zoe');
    const answer = await login({ username: name, maxLifetimeSeconds: 300 });
    expect(answer.status).toBe(200);
    expect(Object.keys(answer.json)).toEqual(['handoffCode']);
    expect(answer.headers['cache-control']).toBe('no-store');
    const grant = await collect(answer.json.handoffCode);
    expect(grant.userId).toBe(`demo-${name.toLowerCase()}`);
    expect(grant.sessionExpiresAt - Date.now()).toBeGreaterThan(290_000);
    expect(grant.sessionExpiresAt - Date.now()).toBeLessThanOrEqual(300_000);
    const [session] = await listOf(grant.userId);
    expect(session).toMatchObject({ sessionId: grant.sessionId, device: { name: 'Chrome on Linux' }, ipAddress: '127.0.0.1' });

    const named = await login({ username: name.toLowerCase(), deviceName: 'Kitchen tablet' });
    const second = await collect(named.json.handoffCode);
    expect(second.userId).toBe(grant.userId);
    expect((await listOf(grant.userId)).map((s) => s.device?.name).sort()).toEqual(['Chrome on Linux', 'Kitchen tablet']);
    // No lifetime asked: the configured one (30 days by default).
    expect(second.sessionExpiresAt - Date.now()).toBeGreaterThan(29 * 86_400_000);
  });

  it.each([
    [{}, "username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"],
    [{ username: '' }, "username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"],
    [{ username: 'a'.repeat(33) }, "username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"],
    [{ username: 'bob smith' }, "username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"],
    [{ username: '.bob' }, "username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"],
    [{ username: 7 }, "username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"],
    [{ username: 'bob', maxLifetimeSeconds: 59 }, 'maxLifetimeSeconds must be a whole number from 60 to 86400'],
    [{ username: 'bob', maxLifetimeSeconds: 86_401 }, 'maxLifetimeSeconds must be a whole number from 60 to 86400'],
    [{ username: 'bob', maxLifetimeSeconds: 90.5 }, 'maxLifetimeSeconds must be a whole number from 60 to 86400'],
    [{ username: 'bob', maxLifetimeSeconds: '120' }, 'maxLifetimeSeconds must be a whole number from 60 to 86400'],
    [{ username: 'bob', deviceName: 'x'.repeat(65) }, 'deviceName must be text of at most 64 characters'],
    [{ username: 'bob', deviceName: 'tab\u0007' }, 'deviceName must be text of at most 64 characters'],
  ])('login refuses %j (400) and creates nothing', async (body, message) => {
    const answer = await login(body);
    expect({ status: answer.status, body: answer.json }).toEqual({ status: 400, body: { code: 'invalid_argument', message } });
    expect(await listOf('demo-bob')).toEqual([]);
  });

  it('login refuses another origin (403), a body that is not a JSON object (400) and other methods (405)', async () => {
    const foreign = await login({ username: 'bob' }, { origin: 'https://evil.example' });
    expect({ status: foreign.status, code: foreign.json.code }).toEqual({ status: 403, code: 'permission_denied' });
    const own = await login({ username: 'own-origin' }, { origin: t.httpUrl });
    expect(own.status).toBe(200);
    const notJson = await httpCall(`${t.httpUrl}/demo/v1/login`, { headers: json, body: '[1]' });
    expect({ status: notJson.status, body: notJson.json }).toEqual({ status: 400, body: { code: 'invalid_argument', message: 'request body must be a JSON object' } });
    const get = await httpCall(`${t.httpUrl}/demo/v1/login`, { method: 'GET' });
    expect({ status: get.status, allow: get.headers.allow }).toEqual({ status: 405, allow: 'POST' });
    expect(await listOf('demo-bob')).toEqual([]);
  });

  it('/demo/v1/me answers the principal for a live token and 401 for none, a bad one or a revoked one', async () => {
    const grant = await collect((await login({ username: 'meg' })).json.handoffCode);
    const me = (authorization?: string) => httpCall(`${t.httpUrl}/demo/v1/me`, { method: 'GET', headers: authorization ? { authorization } : {} });
    const ok = await me(`Bearer ${grant.accessToken}`);
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({
      userId: 'demo-meg', username: 'meg', sessionId: grant.sessionId, roles: ['demo'],
      tokenIssuedAt: expect.any(Number), tokenExpiresAt: grant.accessTokenExpiresAt,
    });
    const none = await me();
    expect({ status: none.status, code: none.json.code, challenge: none.headers['www-authenticate'] }).toEqual({ status: 401, code: 'unauthenticated', challenge: 'Bearer realm="demo"' });
    const bad = await me('Bearer not.a.token');
    expect({ status: bad.status, challenge: bad.headers['www-authenticate'] }).toEqual({ status: 401, challenge: 'Bearer realm="demo", error="invalid_token"' });
    await t.connect.revoke({ target: { case: 'sessionId', value: grant.sessionId }, reason: RevocationReason.ADMIN_ACTION }, apiKey(t.keys.admin));
    const revoked = await me(`Bearer ${grant.accessToken}`);
    expect({ status: revoked.status, body: revoked.json }).toEqual({
      status: 401, body: { code: 'unauthenticated', message: 'the access token was refused (revoked): token has been revoked' },
    });
    expect(revoked.text).not.toContain(grant.accessToken);
  });

  it('serves the page (with its CSP) and the script; other demo paths are 404', async () => {
    const page = await httpCall(`${t.httpUrl}/demo/`, { method: 'GET' });
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toMatch(/^default-src 'self'; script-src 'self';/);
    expect(page.text).toContain('id="sign-in-form"');
    expect((await httpCall(`${t.httpUrl}/demo`, { method: 'GET' })).headers.location).toBe('/demo/');
    const script = await httpCall(`${t.httpUrl}/demo/app.js`, { method: 'GET' });
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.text.length).toBeGreaterThan(10_000);
    expect((await httpCall(`${t.httpUrl}/demo/nothing`, { method: 'GET' })).status).toBe(404);
  });
});
