// What a newcomer does after `npm ci && npm start`: run the printed curl call, then the
// README's Refresh and ValidateToken calls, against the embedded default.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGTERM');
});

/** Starts the command; resolves with its output once `done` matches it. */
function start(command: 'dev' | 'serve', done: RegExp): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', command], {
    env: { ...process.env, SA_GRPC_PORT: '0', SA_HTTP_PORT: '0', SA_LOG_LEVEL: 'warn', REDIS_URL: '', NATS_URL: '', SA_API_KEYS: '[]' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (done.test(out)) resolve(out);
    });
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code}: ${out}`)));
  });
}

let dev: Promise<string> | undefined;
/** One `npm start` for the file. */
const startDev = () => (dev ??= start('dev', /-d '.*'\n/));

/** Runs a printed `curl -s URL -H '..' -H '..' -d '..'` command with fetch. */
async function curl(command: string): Promise<Response> {
  const url = /curl -s (\S+)/.exec(command)![1]!;
  const headers = Object.fromEntries([...command.matchAll(/-H '([^:]+): ([^']*)'/g)].map((m) => [m[1]!, m[2]!]));
  const body = /-d '([^']*)'/.exec(command)![1]!;
  return fetch(url, { method: 'POST', headers, body });
}

it('the call `npm start` prints works, and so do the README calls after it', async () => {
  const out = await startDev();
  expect(out).toMatch(/store\s+in-memory/);
  const command = out.slice(out.indexOf('curl -s')).replace(/\\\n\s*/g, ' ');
  const created = await curl(command);
  expect(created.status).toBe(200);
  const session = (await created.json()) as { sessionId: string; tokens: { accessToken: string; refreshToken: string } };
  expect(session.sessionId).toMatch(/^[A-Za-z0-9_-]{32}$/);

  const base = /curl -s (\S+)\/sessionauthority/.exec(command)![1]!;
  const call = (method: string, body: unknown) =>
    fetch(`${base}/sessionauthority.v1.SessionAuthorityService/${method}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const refreshed = (await (await call('Refresh', { refreshToken: session.tokens.refreshToken })).json()) as { tokens: { accessToken: string; refreshToken: string } };
  expect(refreshed.tokens.refreshToken).not.toBe(session.tokens.refreshToken);
  const validated = (await (await call('ValidateToken', { accessToken: refreshed.tokens.accessToken })).json()) as { valid: boolean; principal: { userId: string } };
  expect(validated).toMatchObject({ valid: true, principal: { userId: 'alice' } });
  const jwks = await fetch(`${base}/.well-known/jwks.json`);
  expect(jwks.headers.get('cache-control')).toMatch(/max-age=\d+/);
  expect(((await jwks.json()) as { keys: unknown[] }).keys).toHaveLength(1);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  expect(metrics).toMatch(/^session_authority_logins_total 1$/m);
  expect(metrics).toMatch(/^session_authority_refreshes_total\{result="rotated"\} 1$/m);
  expect(metrics).toMatch(/^process_cpu_user_seconds_total \d/m); // the process metrics the CLI adds
});

it('`npm start` serves the demo it prints: the page, its script, and a login whose code the browser endpoint takes', async () => {
  const out = await startDev();
  const demo = /demo\s+(http:\/\/\S+\/demo\/)/.exec(out)?.[1];
  expect(demo, out).toBeDefined();
  const page = await fetch(demo!);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
  const html = await page.text();
  expect(html).toContain('<script type="module" src="app.js"></script>');
  const script = await fetch(new URL('app.js', demo));
  expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
  const code = await script.text();
  // The SDK, bundled for a browser: its own code is in it, no Node built-in is imported.
  expect(code).toContain('/auth/v1/');
  expect(code).toContain('createSessionClient');
  expect(code).not.toMatch(/from\s*["']node:/);

  const login = (body: unknown) =>
    fetch(new URL('v1/login', demo), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const refused = await login({ username: '<script>' });
  expect(refused.status).toBe(400);
  expect(await refused.json()).toEqual({ code: 'invalid_argument', message: "username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit" });
  const answer = await login({ username: 'Alice', maxLifetimeSeconds: 120 });
  expect(answer.status).toBe(200);
  const { handoffCode } = (await answer.json()) as { handoffCode: string };
  const base = demo!.replace(/\/demo\/$/, '');
  const session = await fetch(`${base}/auth/v1/session`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'sa-csrf': '1' }, body: JSON.stringify({ handoffCode }),
  });
  expect(session.status).toBe(200);
  const grant = (await session.json()) as { userId: string; accessToken: string; accessTokenExpiresAt: number; sessionExpiresAt: number };
  expect(grant.userId).toBe('demo-alice');
  // The demo's short session, and dev's one-minute access tokens (so the page shows refreshes).
  expect(grant.sessionExpiresAt - Date.now()).toBeGreaterThan(110_000);
  expect(grant.sessionExpiresAt - Date.now()).toBeLessThanOrEqual(120_000);
  expect(grant.accessTokenExpiresAt - Date.now()).toBeLessThanOrEqual(60_000);
  const me = await fetch(`${base}/demo/v1/me`, { headers: { authorization: `Bearer ${grant.accessToken}` } });
  expect(await me.json()).toMatchObject({ userId: 'demo-alice', username: 'Alice', roles: ['demo'] });
  expect((await fetch(`${base}/demo/v1/me`, { headers: { authorization: 'Bearer x.y.z' } })).status).toBe(401);
});

it('`serve` has no demo', async () => {
  const out = await start('serve', /HTTP\s+http:\/\/\S+/);
  expect(out).not.toMatch(/demo/);
  const base = /HTTP\s+(http:\/\/\S+)/.exec(out)![1]!;
  for (const path of ['/demo/', '/demo/app.js']) expect((await fetch(`${base}${path}`)).status).toBe(404);
  expect((await fetch(`${base}/demo/v1/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"mallory"}' })).status).toBe(404);
});
