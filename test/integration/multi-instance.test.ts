// Two authority processes (`session-authority serve`) sharing one Redis: a
// session lives in the store, not in a process, and the signing keys are shared.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Code, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LogoutScope, RevocationReason, SessionAuthorityService, TokenInvalidReason,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import {
  apiKey, apiKeysJson, bearer, createSession, decodeJwt, expectRpcError, newTestKeys, sleep, TEST_KEK, uniqueUser,
  type AuthorityClient,
} from '../support/authority.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

interface Instance {
  child: ChildProcess;
  grpc: AuthorityClient;
  connect: AuthorityClient;
  httpUrl: string;
  h2: Http2SessionManager;
  output: () => string;
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SA_') && k !== 'REDIS_URL'));
  return { ...env, ...extra };
}

/** Spawns `serve` and resolves once it has printed its ports. */
function serve(env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, [...CLI, 'serve'], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`serve did not start in 20 s:\n${out}`)); }, 20_000);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`serve exited (${code}):\n${out}`)); });
    const check = () => {
      const grpcPort = /gRPC\s+127\.0\.0\.1:(\d+)/.exec(out)?.[1];
      const httpPort = /HTTP\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1];
      if (!grpcPort || !httpPort) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.removeAllListeners('exit');
      const h2 = new Http2SessionManager(`http://127.0.0.1:${grpcPort}`);
      const httpUrl = `http://127.0.0.1:${httpPort}`;
      resolve({
        child, h2, httpUrl, output: () => out,
        grpc: createClient(SessionAuthorityService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${grpcPort}`, sessionManager: h2 })),
        connect: createClient(SessionAuthorityService, createConnectTransport({ baseUrl: httpUrl, httpVersion: '1.1' })),
      });
    };
    child.stdout!.on('data', check);
  });
}

async function shutdown(instance: Instance | undefined): Promise<void> {
  if (!instance) return;
  instance.h2.abort();
  const { child } = instance;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

function runCli(args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${code}: ${out}`))));
  });
}

describe('two authority processes on one Redis', () => {
  let redis: RedisProcess;
  let a: Instance;
  let b: Instance;
  const keys = newTestKeys();
  let env: Record<string, string>;

  beforeAll(async () => {
    redis = await startRedis();
    env = {
      REDIS_URL: redis.url,
      SA_KEY_ENCRYPTION_KEY: TEST_KEK,
      SA_API_KEYS: apiKeysJson(keys),
      SA_GRPC_PORT: '0',
      SA_HTTP_PORT: '0',
      SA_LOG_LEVEL: 'warn',
      SA_REFRESH_GRACE: '1s',
      SA_KEY_REFRESH_INTERVAL: '1s',
    };
    a = await serve(env);
    b = await serve(env);
  });
  afterAll(async () => {
    await Promise.all([shutdown(a), shutdown(b)]);
    await redis?.stop();
  });

  it('both publish the same JWKS', async () => {
    const [ja, jb] = await Promise.all([a.grpc.getJwks({}), b.grpc.getJwks({})]);
    expect(ja.keys.length).toBe(1);
    expect(jb.keys).toEqual(ja.keys);
    const [ha, hb] = await Promise.all([a, b].map(async (i) => (await fetch(`${i.httpUrl}/.well-known/jwks.json`)).json()));
    expect(hb).toEqual(ha);
    expect((ha as { keys: { kid: string }[] }).keys.map((k) => k.kid)).toEqual(ja.keys.map((k) => k.kid));
  });

  it('a session created on A refreshes and validates on B, and vice versa', async () => {
    const userId = uniqueUser('multi');
    const s = await createSession(a.grpc, keys.login, { userId, roles: ['user'] });
    const onB = await b.connect.refresh({ refreshToken: s.refresh });
    expect(onB.sessionId).toBe(s.sid);
    for (const token of [s.access, onB.tokens!.accessToken]) {
      for (const i of [a, b]) {
        const v = await i.grpc.validateToken({ accessToken: token });
        expect(v.valid).toBe(true);
        expect(v.principal!.userId).toBe(userId);
      }
    }
    // Same kid from both: one shared signing key.
    expect(decodeJwt(onB.tokens!.accessToken).header.kid).toBe(decodeJwt(s.access).header.kid);
    // The grace pair is shared too: the predecessor on A gets B's successor.
    const onA = await a.grpc.refresh({ refreshToken: s.refresh });
    expect(onA.tokens!.refreshToken).toBe(onB.tokens!.refreshToken);
    expect(onA.tokens!.accessToken).toBe(onB.tokens!.accessToken);
    const listed = await a.grpc.listSessions({}, bearer(onB.tokens!.accessToken));
    expect(listed.sessions.map((x) => [x.sessionId, x.current])).toEqual([[s.sid, true]]);
  });

  it('40 concurrent refreshes split across A and B yield one pair', async () => {
    const s = await createSession(b.grpc, keys.login, { userId: uniqueUser('split') });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => [a.grpc, b.grpc, a.connect, b.connect][i % 4]!.refresh({ refreshToken: s.refresh }, { timeoutMs: 10_000 })),
    );
    expect(new Set(results.map((r) => r.tokens!.refreshToken)).size).toBe(1);
    expect(new Set(results.map((r) => r.tokens!.accessToken)).size).toBe(1);
  });

  it('revocation and reuse detection on one instance are seen by the other', async () => {
    const userId = uniqueUser('revoke');
    const s1 = await createSession(a.grpc, keys.login, { userId, deviceId: 'one' });
    const s2 = await createSession(a.grpc, keys.login, { userId, deviceId: 'two' });
    expect((await b.grpc.revoke({ target: { case: 'sessionId', value: s1.sid }, reason: RevocationReason.ADMIN_ACTION }, apiKey(keys.revoker))).sessionsEnded).toBe(1);
    const v = await a.grpc.validateToken({ accessToken: s1.access });
    expect([v.valid, TokenInvalidReason[v.reason], RevocationReason[v.revocationReason]]).toEqual([false, 'REVOKED', 'ADMIN_ACTION']);
    await expectRpcError(a.grpc.refresh({ refreshToken: s1.refresh }), Code.Unauthenticated, 'session_ended');

    const r = await a.grpc.refresh({ refreshToken: s2.refresh });
    await sleep(1100); // past SA_REFRESH_GRACE=1s
    await expectRpcError(b.grpc.refresh({ refreshToken: s2.refresh }), Code.Unauthenticated, 'refresh_token_reused');
    const after = await a.grpc.validateToken({ accessToken: r.tokens!.accessToken });
    expect([after.valid, TokenInvalidReason[after.reason], RevocationReason[after.revocationReason]]).toEqual([false, 'REVOKED', 'REFRESH_TOKEN_REUSE']);

    const s3 = await createSession(b.grpc, keys.login, { userId });
    expect((await a.grpc.logout({ scope: LogoutScope.ALL }, bearer(s3.access))).sessionsEnded).toBe(1);
    expect((await b.grpc.validateToken({ accessToken: s3.access })).reason).toBe(TokenInvalidReason.REVOKED);
  });

  it('a key added by `keys rotate` reaches both instances; the current key keeps signing until it activates', async () => {
    const before = (await a.grpc.getJwks({})).keys.map((k) => k.kid);
    const printed = await runCli(['keys', 'rotate'], env);
    const newKid = /new signing key (\S+)/.exec(printed)?.[1];
    expect(newKid).toBeDefined();
    const until = Date.now() + 5000;
    let kids: string[][] = [];
    while (Date.now() < until) {
      kids = await Promise.all([a, b].map(async (i) => (await i.grpc.getJwks({})).keys.map((k) => k.kid).sort()));
      if (kids.every((k) => k.length === 2)) break;
      await sleep(200);
    }
    expect(kids[0]).toEqual([...before, newKid!].sort());
    expect(kids[1]).toEqual(kids[0]);
    // Published now, signing only after SA_KEY_PUBLISH_DELAY (2 min).
    const s = await createSession(b.grpc, keys.login, { userId: uniqueUser('rotate') });
    expect(decodeJwt(s.access).header.kid).toBe(before[0]);
    expect((await a.grpc.validateToken({ accessToken: s.access })).valid).toBe(true);
  });
});
