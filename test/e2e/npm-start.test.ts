// What a newcomer does after `npm ci && npm start`: run the printed curl call, then the
// README's Refresh and ValidateToken calls, against the embedded default.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';

let child: ChildProcess | undefined;
afterAll(() => {
  child?.kill('SIGTERM');
});

function startDev(): Promise<string> {
  child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dev'], {
    env: { ...process.env, SA_GRPC_PORT: '0', SA_HTTP_PORT: '0', SA_LOG_LEVEL: 'warn', REDIS_URL: '', NATS_URL: '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child!.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (/-d '.*'\n/.test(out)) resolve(out);
    });
    child!.once('exit', (code) => reject(new Error(`dev exited with ${code}: ${out}`)));
  });
}

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
