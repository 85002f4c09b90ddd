// Verifier sidecars against a real authority, redis-server and nats-server
// (JetStream): three in-process sidecars (each with its own NATS connection)
// and real `session-authority sidecar` child processes. Revocations must reach
// every sidecar soon after Revoke returns, be replayed by a sidecar started
// later, and survive NATS being down or SIGKILLed in the middle of a stream of
// revocations.
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAMS } from '../../src/events/subjects.js';
import { LogoutScope, RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { apiKey, bearer, createSession, expectRpcError, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { newKeyPair } from '../support/local-issuer.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import {
  servingStatus, spawnSidecar, startInProcessSidecar, startJwksProxy, until, verdictOf, type JwksProxy, type Sidecar,
} from '../support/sidecars.js';

let redis: RedisProcess;
let nats: NatsProcess;
let auth: TestAuthority;
let proxy: JwksProxy;
/** Every sidecar running, in-process and child processes. */
const sidecars: Sidecar[] = [];
/** Tokens revoked so far, with the RevocationReason every sidecar must report. */
const revoked: { token: string; reason: string; what: string }[] = [];
/** Tokens that must stay valid. */
const valid: { token: string; what: string }[] = [];
const delays: Record<string, number[]> = {};

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  auth = await startTestAuthority({ redisUrl: redis.url, env: { NATS_URL: nats.url } });
  proxy = await startJwksProxy(auth.httpUrl);
  const started = await Promise.all([
    ...['in-process-1', 'in-process-2', 'in-process-3'].map((name) => startInProcessSidecar({ name, authorityUrl: auth.httpUrl, natsUrl: nats.url })),
    spawnSidecar('child-1', { SA_AUTHORITY_URL: auth.httpUrl, NATS_URL: nats.url }),
  ]);
  sidecars.push(...started);
  await until(async () => (await Promise.all(sidecars.map((s) => servingStatus(s)))).every((v) => v === 'SERVING'), 20_000, 'every sidecar SERVING');
});

afterAll(async () => {
  if (Object.keys(delays).length) {
    const summary = Object.entries(delays).map(([what, ms]) => `${what}: max ${Math.max(...ms)} ms, median ${ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)]} ms (n=${ms.length})`);
    console.log(`[sidecars] propagation Revoke-returned -> sidecar rejects:\n  ${summary.join('\n  ')}`);
  }
  await Promise.all(sidecars.map((s) => s.stop()));
  await proxy?.close();
  await auth?.stop();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

const admin = () => apiKey(auth.keys.admin);

/** Every sidecar, over gRPC and Connect/JSON alternately, until it rejects the token as REVOKED; records the delays. */
async function expectRevokedEverywhere(token: string, reason: RevocationReason, what: string, since: number, timeoutMs = 2000): Promise<void> {
  await Promise.all(sidecars.map(async (s, i) => {
    let last: unknown;
    let n = 0;
    try {
      await until(async () => {
        const v = await verdictOf(n++ % 2 === 0 ? s.grpc : s.connect, token);
        last = v;
        return v.verdict === 'REVOKED';
      }, timeoutMs - (Date.now() - since), `${what} on ${s.name}`);
    } catch (e) {
      throw new Error(`${(e as Error).message}; last answer ${JSON.stringify(last)}`);
    }
    (delays[what] ??= []).push(Date.now() - since);
    // Both protocols agree, with the revocation's reason.
    for (const client of [s.grpc, s.connect]) {
      expect({ sidecar: s.name, i, ...(await verdictOf(client, token)) }).toMatchObject({ verdict: 'REVOKED', revocationReason: RevocationReason[reason] });
    }
  }));
  revoked.push({ token, reason: RevocationReason[reason]!, what });
}

async function expectValidEverywhere(token: string): Promise<void> {
  for (const s of sidecars) {
    expect({ sidecar: s.name, ...(await verdictOf(s.grpc, token)) }).toMatchObject({ verdict: 'VALID' });
    expect({ sidecar: s.name, ...(await verdictOf(s.connect, token)) }).toMatchObject({ verdict: 'VALID' });
  }
}

describe('verifier sidecars', () => {
  it('answer UNIMPLEMENTED for the authority-only calls, over gRPC and Connect', async () => {
    const s = sidecars[0]!;
    const child = sidecars[3]!;
    const session = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('unimpl') });
    for (const client of [s.grpc, s.connect, child.grpc, child.connect]) {
      await expectRpcError(client.createSession({ userId: 'u', device: { id: 'd', name: 'n' } }, admin()), Code.Unimplemented);
      await expectRpcError(client.refresh({ refreshToken: session.refresh }), Code.Unimplemented);
      await expectRpcError(client.revoke({ target: { case: 'sessionId', value: session.sid }, reason: RevocationReason.ADMIN_ACTION }, admin()), Code.Unimplemented);
      await expectRpcError(client.logout({ scope: LogoutScope.ALL }, bearer(session.access)), Code.Unimplemented);
      await expectRpcError(client.listSessions({}, bearer(session.access)), Code.Unimplemented);
      await expectRpcError(client.listSessions({ userId: 'u' }, admin()), Code.Unimplemented);
    }
    // Nothing happened at the authority: the session and its refresh token still work.
    expect((await auth.grpc.validateToken({ accessToken: session.access })).valid).toBe(true);
    await auth.grpc.refresh({ refreshToken: session.refresh });
    // And ValidateToken on the sidecars works, with the principal.
    const res = await s.grpc.validateToken({ accessToken: session.access });
    expect(res.valid).toBe(true);
    expect(res.principal).toMatchObject({ sessionId: session.sid, roles: ['user'] });
    await expectRpcError(s.grpc.validateToken({ accessToken: '' }), Code.InvalidArgument);
  });

  it('a token, session, user revocation and a global logout reach every sidecar within 2 s of Revoke returning', async () => {
    // One access token of a session (its sibling from a refresh stays valid).
    const a = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('tok') });
    const aSibling = (await auth.grpc.refresh({ refreshToken: a.refresh })).tokens!.accessToken;
    // A session, with a token issued by a refresh of it.
    const b = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('ses') });
    const bRefreshed = (await auth.grpc.refresh({ refreshToken: b.refresh })).tokens!.accessToken;
    // A user with two sessions.
    const userC = uniqueUser('usr');
    const c1 = await createSession(auth.grpc, auth.keys.admin, { userId: userC, deviceId: 'phone' });
    const c2 = await createSession(auth.grpc, auth.keys.admin, { userId: userC, deviceId: 'laptop' });
    // A user logging out everywhere with their own token.
    const userD = uniqueUser('out');
    const d1 = await createSession(auth.grpc, auth.keys.admin, { userId: userD, deviceId: 'phone' });
    const d2 = await createSession(auth.grpc, auth.keys.admin, { userId: userD, deviceId: 'laptop' });
    for (const t of [a.access, aSibling, b.access, bRefreshed, c1.access, c2.access, d1.access, d2.access]) await expectValidEverywhere(t);

    await auth.grpc.revoke({ target: { case: 'accessToken', value: a.access }, reason: RevocationReason.SECURITY_RISK }, admin());
    await expectRevokedEverywhere(a.access, RevocationReason.SECURITY_RISK, 'token', Date.now());

    await auth.grpc.revoke({ target: { case: 'sessionId', value: b.sid }, reason: RevocationReason.ADMIN_ACTION }, admin());
    let since = Date.now();
    await Promise.all([
      expectRevokedEverywhere(b.access, RevocationReason.ADMIN_ACTION, 'session', since),
      expectRevokedEverywhere(bRefreshed, RevocationReason.ADMIN_ACTION, 'session', since),
    ]);

    await auth.connect.revoke({ target: { case: 'userId', value: userC }, reason: RevocationReason.PASSWORD_CHANGED }, admin());
    since = Date.now();
    await Promise.all([
      expectRevokedEverywhere(c1.access, RevocationReason.PASSWORD_CHANGED, 'user', since),
      expectRevokedEverywhere(c2.access, RevocationReason.PASSWORD_CHANGED, 'user', since),
    ]);

    const out = await auth.grpc.logout({ scope: LogoutScope.ALL }, bearer(d1.access));
    expect(out.sessionsEnded).toBe(2);
    since = Date.now();
    await Promise.all([
      expectRevokedEverywhere(d1.access, RevocationReason.USER_REQUEST, 'logout-all', since),
      expectRevokedEverywhere(d2.access, RevocationReason.USER_REQUEST, 'logout-all', since),
    ]);

    // Only what was revoked: the sibling token of the first session stays valid,
    // and so does a login of the globally logged-out user right after it.
    valid.push({ token: aSibling, what: 'sibling of a revoked token' });
    const again = await createSession(auth.grpc, auth.keys.admin, { userId: userC, deviceId: 'phone' });
    valid.push({ token: again.access, what: 'login after a user revocation' });
    for (const v of valid) await expectValidEverywhere(v.token);
  });

  it('a sidecar started later is NOT_SERVING until it has replayed, then rejects the earlier revocations', async () => {
    expect(revoked.length).toBeGreaterThan(0);
    proxy.hold(); // its JWKS load waits, so "not ready" can be observed
    const late = await spawnSidecar('child-late', { SA_AUTHORITY_URL: proxy.url, NATS_URL: nats.url });
    sidecars.push(late);
    await until(() => proxy.jwksRequests > 0, 10_000, 'late sidecar asks for the JWKS');
    expect(await servingStatus(late)).toBe('NOT_SERVING');
    expect(await servingStatus(late, 'sessionauthority.v1.SessionAuthorityService')).toBe('NOT_SERVING');
    expect((await late.http('/readyz')).status).toBe(503);
    expect((await late.http('/status')).body).toMatchObject({ ready: false });
    for (const client of [late.grpc, late.connect]) {
      expect(await verdictOf(client, revoked[0]!.token)).toMatchObject({ verdict: 'error:Unavailable' });
      expect(await verdictOf(client, valid[0]!.token)).toMatchObject({ verdict: 'error:Unavailable' });
    }

    proxy.open();
    const readyIn = await until(async () => (await servingStatus(late)) === 'SERVING', 10_000, 'late sidecar SERVING', 20);
    console.log(`[sidecars] late sidecar SERVING ${readyIn} ms after its JWKS was released`);
    const status = (await late.http('/status')).body;
    expect(status).toMatchObject({ ready: true, feed: 'live' });
    expect(status.revocations.tokens + status.revocations.sessions + status.revocations.users).toBeGreaterThanOrEqual(3);
    for (const r of revoked) {
      expect({ what: r.what, ...(await verdictOf(late.grpc, r.token)) }).toMatchObject({ verdict: 'REVOKED', revocationReason: r.reason });
      expect({ what: r.what, ...(await verdictOf(late.connect, r.token)) }).toMatchObject({ verdict: 'REVOKED', revocationReason: r.reason });
    }
    for (const v of valid) await expectValidEverywhere(v.token);
  });

  it('revocations made while NATS is down reach every sidecar once it is back', async () => {
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('down-s') });
    const userU = uniqueUser('down-u');
    const u = await createSession(auth.grpc, auth.keys.admin, { userId: userU });
    const t = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('down-t') });
    for (const token of [s.access, u.access, t.access]) await expectValidEverywhere(token);

    await nats.kill();
    expect((await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.ACCOUNT_LOCKED }, admin())).sessionsEnded).toBe(1);
    expect((await auth.grpc.revoke({ target: { case: 'userId', value: userU }, reason: RevocationReason.SECURITY_RISK }, admin())).sessionsEnded).toBe(1);
    await auth.grpc.revoke({ target: { case: 'accessToken', value: t.access }, reason: RevocationReason.OTHER }, admin());
    // The authority itself refuses them at once (it reads Redis).
    for (const token of [s.access, u.access, t.access]) expect((await auth.grpc.validateToken({ accessToken: token })).valid).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    await nats.restart();
    const since = Date.now();
    await Promise.all([
      expectRevokedEverywhere(s.access, RevocationReason.ACCOUNT_LOCKED, 'after-outage', since, 10_000),
      expectRevokedEverywhere(u.access, RevocationReason.SECURITY_RISK, 'after-outage', since, 10_000),
      expectRevokedEverywhere(t.access, RevocationReason.OTHER, 'after-outage', since, 10_000),
    ]);
    for (const v of valid) await expectValidEverywhere(v.token);
  });

  it('SIGKILL of nats-server in the middle of 200 concurrent revocations loses none: every sidecar rejects every revoked token', async () => {
    const N = 200;
    const kinds = ['token', 'session', 'user'] as const;
    const reasons = [RevocationReason.USER_REQUEST, RevocationReason.SECURITY_RISK, RevocationReason.ADMIN_ACTION, RevocationReason.PASSWORD_CHANGED, RevocationReason.ACCOUNT_LOCKED, RevocationReason.OTHER];
    // One user per revocation, so no revocation can hide the loss of another.
    const targets = await Promise.all(Array.from({ length: N }, async (_, i) => {
      const userId = uniqueUser(`storm${i}`);
      const s = await createSession(auth.grpc, auth.keys.admin, { userId });
      return { i, userId, ...s, kind: kinds[i % 3]!, reason: reasons[i % reasons.length]! };
    }));
    // A sample is valid everywhere beforehand.
    for (const t of targets.slice(0, 6)) await expectValidEverywhere(t.access);

    const relay = auth.authority.relay!;
    const publishedBefore = relay.published;
    let publishedAtKill = 0;
    const calls: Promise<unknown>[] = [];
    let killed: Promise<void> | undefined;
    for (const t of targets) {
      if (t.i === N / 2) {
        publishedAtKill = relay.published - publishedBefore;
        killed = nats.kill();
      }
      const target =
        t.kind === 'token' ? { case: 'accessToken' as const, value: t.access }
        : t.kind === 'session' ? { case: 'sessionId' as const, value: t.sid }
        : { case: 'userId' as const, value: t.userId };
      calls.push((t.i % 2 ? auth.grpc : auth.connect).revoke({ target, reason: t.reason }, admin()));
      await new Promise((r) => setTimeout(r, 2));
    }
    await killed;
    const settled = await Promise.allSettled(calls);
    const acknowledged = targets.filter((_, i) => settled[i]!.status === 'fulfilled');
    const failed = settled.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    console.log(`[sidecars] storm: ${acknowledged.length}/${N} Revoke calls acknowledged${failed.length ? `; failures: ${failed.slice(0, 3).join(' | ')}` : ''}`);
    expect(acknowledged.length).toBeGreaterThan(N / 2);

    await new Promise((r) => setTimeout(r, 300));
    await nats.restart();
    const since = Date.now();
    void until(() => relay.published - publishedBefore >= acknowledged.length, 15_000).then(
      (ms) => console.log(`[sidecars] storm: relay had published ${publishedAtKill} when NATS was killed; all ${acknowledged.length} published ${ms} ms after the restart`),
      () => undefined,
    );
    // Every acknowledged revocation, on every sidecar, over gRPC.
    const pending = new Map(sidecars.map((s) => [s, new Set(acknowledged)]));
    const last = new Map<string, unknown>();
    try {
      await until(async () => {
        await Promise.all(sidecars.map(async (s) => {
          const left = pending.get(s)!;
          for (const t of [...left]) {
            const v = await verdictOf(s.grpc, t.access);
            if (v.verdict === 'REVOKED') {
              expect({ sidecar: s.name, kind: t.kind, ...v }).toMatchObject({ revocationReason: RevocationReason[t.reason] });
              left.delete(t);
            } else {
              last.set(`${s.name}/${t.kind}/${t.i}`, v);
            }
          }
        }));
        return [...pending.values()].every((left) => left.size === 0);
      }, 15_000, 'every acknowledged revocation rejected on every sidecar', 100);
    } catch (e) {
      const missing = sidecars.map((s) => `${s.name}: ${pending.get(s)!.size} not revoked (${[...pending.get(s)!].slice(0, 5).map((t) => `${t.kind}#${t.i}=${JSON.stringify(last.get(`${s.name}/${t.kind}/${t.i}`))}`).join(', ')})`);
      throw new Error(`${(e as Error).message}\n${missing.join('\n')}`);
    }
    delays['after-sigkill (all tokens, all sidecars)'] = [Date.now() - since];
    // And Connect/JSON agrees on a sample.
    for (const s of sidecars) {
      for (const t of acknowledged.slice(0, 10)) {
        expect({ sidecar: s.name, ...(await verdictOf(s.connect, t.access)) }).toMatchObject({ verdict: 'REVOKED', revocationReason: RevocationReason[t.reason] });
      }
    }
    for (const v of valid) await expectValidEverywhere(v.token);
  });

  it('a sidecar starting when the last message of the stream was removed still finishes its replay', async () => {
    // E.g. deleted by an operator, or aged out while the replay ran: last_seq
    // then names a message that will never be delivered.
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('tail') });
    await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.ACCOUNT_LOCKED }, admin());
    await expectRevokedEverywhere(s.access, RevocationReason.ACCOUNT_LOCKED, 'session', Date.now());
    const nc = await natsConnect({ servers: nats.url });
    try {
      // An event of a kind this version does not know: verifiers skip it.
      const ack = await jetstream(nc).publish('sa.v1.revocation.future_kind', new Uint8Array([8, 1]));
      const jsm = await jetstreamManager(nc);
      expect(await jsm.streams.deleteMessage(STREAMS.revocations.name, ack.seq)).toBe(true);
      const { state } = await jsm.streams.info(STREAMS.revocations.name);
      expect(state.last_seq).toBe(ack.seq);
      expect(state.messages).toBeGreaterThan(0);
    } finally {
      await nc.close();
    }
    const tail = await startInProcessSidecar({ name: 'in-process-after-delete', authorityUrl: auth.httpUrl, natsUrl: nats.url });
    sidecars.push(tail);
    const readyIn = await until(async () => (await servingStatus(tail)) === 'SERVING', 5000, 'sidecar on a stream whose tail was deleted SERVING', 20);
    console.log(`[sidecars] sidecar on a stream whose last message was deleted SERVING after ${readyIn} ms`);
    for (const r of revoked) {
      expect({ what: r.what, ...(await verdictOf(tail.grpc, r.token)) }).toMatchObject({ verdict: 'REVOKED', revocationReason: r.reason });
    }
    expect(await verdictOf(tail.grpc, s.access)).toMatchObject({ verdict: 'REVOKED', revocationReason: 'ACCOUNT_LOCKED' });
  });

  it('a sidecar starting when every message of the stream has aged out becomes ready, and follows new revocations', async () => {
    // What max_age leaves after a quiet period longer than a token's life: no
    // messages, but the sequence numbers go on (last_seq > 0). A purge leaves
    // the stream in the same state.
    const nc = await natsConnect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.purge(STREAMS.revocations.name);
      const { state } = await jsm.streams.info(STREAMS.revocations.name);
      expect(state.messages).toBe(0);
      expect(state.last_seq).toBeGreaterThan(0);
    } finally {
      await nc.close();
    }
    const quiet = await startInProcessSidecar({ name: 'in-process-after-quiet', authorityUrl: auth.httpUrl, natsUrl: nats.url });
    sidecars.push(quiet);
    const readyIn = await until(async () => (await servingStatus(quiet)) === 'SERVING', 5000, 'sidecar on an aged-out stream SERVING', 20);
    console.log(`[sidecars] sidecar on an aged-out stream SERVING after ${readyIn} ms`);
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('quiet') });
    expect(await verdictOf(quiet.grpc, s.access)).toMatchObject({ verdict: 'VALID' });
    await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.ADMIN_ACTION }, admin());
    await expectRevokedEverywhere(s.access, RevocationReason.ADMIN_ACTION, 'session', Date.now());
  });

  it('500 tokens with unknown kids on the CLI sidecar reach the authority as at most a couple of JWKS requests', async () => {
    const late = sidecars.find((s) => s.name === 'child-late')!;
    const stranger = newKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const tokens = await Promise.all(Array.from({ length: 500 }, (_, i) =>
      new SignJWT({ iss: 'https://session-authority.local', aud: 'api', sub: `u${i}`, sid: `s${i}`, jti: `j${i}`, client_id: 'default', iat: now, exp: now + 600 })
        .setProtectedHeader({ alg: 'ES256', kid: `forged-${i}-${randomBytes(4).toString('hex')}`, typ: 'at+jwt' })
        .sign(stranger.privateKey)));
    // Past the CLI's unknown-kid cooldown (10 s) since its last fetch, so the flood may cause one.
    await new Promise((r) => setTimeout(r, Math.max(0, proxy.lastJwksAt + 10_100 - Date.now())));
    const before = proxy.jwksRequests; // counted at the proxy in front of the authority
    const started = Date.now();
    const verdicts = await Promise.all(tokens.map((t, i) => verdictOf(i % 2 ? late.grpc : late.connect, t, 10_000)));
    const requests = proxy.jwksRequests - before;
    console.log(`[sidecars] 500 unknown kids on the CLI sidecar in ${Date.now() - started} ms -> ${requests} JWKS request(s) at the authority`);
    expect(new Set(verdicts.map((v) => v.verdict))).toEqual(new Set(['UNKNOWN_KEY']));
    expect(requests).toBeGreaterThanOrEqual(1); // an unknown kid does make it look...
    expect(requests).toBeLessThanOrEqual(2); // ...but not once per token
    for (const v of valid) expect(await verdictOf(late.grpc, v.token)).toMatchObject({ verdict: 'VALID' });
  });
});
