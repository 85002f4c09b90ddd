// Scale-out: two authority replicas on a three-master Redis Cluster and a
// three-node NATS cluster (JetStream streams with three replicas), with
// verifier sidecars. The core flows across replicas, then a NATS node killed
// with SIGKILL in the middle of a stream of revocations: every revoked token
// must be rejected by every sidecar, and the node must rejoin.
import { jetstreamManager, type StreamInfo } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { ensureStreams } from '../../src/events/streams.js';
import { STREAMS } from '../../src/events/subjects.js';
import { LogoutScope, RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import {
  apiKey, bearer, createSession, decodeJwt, expectRpcError, sleep, startTestAuthority, uniqueUser, type TestAuthority,
} from '../support/authority.js';
import { startNatsCluster, type NatsClusterProcess, type NatsNode } from '../support/nats-cluster.js';
import { startRedisCluster, type RedisClusterProcess } from '../support/redis-cluster.js';
import { servingStatus, spawnSidecar, startInProcessSidecar, until, verdictOf, type Sidecar } from '../support/sidecars.js';

let redis: RedisClusterProcess;
let nats: NatsClusterProcess;
let a: TestAuthority;
let b: TestAuthority;
let nc: NatsConnection;
const sidecars: Sidecar[] = [];
/** Tokens that must stay valid everywhere. */
const valid: { token: string; what: string }[] = [];

interface Revoked { token: string; reason: RevocationReason; what: string }

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedisCluster(), startNatsCluster()]);
  const env = { REDIS_CLUSTER_NODES: redis.nodesEnv, NATS_URL: nats.url, SA_NATS_STREAM_REPLICAS: '3', SA_REFRESH_GRACE: '1s' };
  // Started together on an empty cluster: they must agree on one first signing key.
  [a, b] = await Promise.all([startTestAuthority({ env }), startTestAuthority({ env })]);
  nc = await natsConnect({ servers: nats.url.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  await until(async () => (await streamInfo(STREAMS.revocations.name))?.cluster?.leader !== undefined, 20_000, 'revocation stream created, with a leader', 100);
  // Each in-process sidecar is given one node only (it learns the others from
  // the cluster); the CLI sidecar gets the full list, as NATS_URL would in production.
  sidecars.push(...(await Promise.all([
    ...nats.nodes.map((node, i) => startInProcessSidecar({ name: `on-${node.name}`, authorityUrl: (i % 2 ? b : a).httpUrl, natsUrl: node.url })),
    spawnSidecar('child', { SA_AUTHORITY_URL: b.httpUrl, NATS_URL: nats.url }),
  ])));
  await until(async () => (await Promise.all(sidecars.map((s) => servingStatus(s)))).every((v) => v === 'SERVING'), 20_000, 'every sidecar SERVING', 50);
});

afterAll(async () => {
  await Promise.all(sidecars.map((s) => s.stop()));
  await Promise.all([a?.stop(), b?.stop()]);
  await nc?.close();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

async function streamInfo(name: string): Promise<StreamInfo | undefined> {
  try {
    return await (await jetstreamManager(nc, { timeout: 2000 })).streams.info(name);
  } catch {
    return undefined;
  }
}

async function expectValidEverywhere(token: string, what: string): Promise<void> {
  for (const s of sidecars) expect({ sidecar: s.name, what, ...(await verdictOf(s.grpc, token)) }).toMatchObject({ verdict: 'VALID' });
  for (const auth of [a, b]) expect((await auth.grpc.validateToken({ accessToken: token })).valid, what).toBe(true);
}

/** Polls every sidecar until each rejects every token as REVOKED with its reason; names what is missing on timeout. */
async function expectRevokedEverywhere(items: Revoked[], timeoutMs: number, on: Sidecar[] = sidecars): Promise<number> {
  const pending = new Map(on.map((s) => [s, new Set(items)]));
  const last = new Map<string, unknown>();
  try {
    return await until(async () => {
      await Promise.all(on.map(async (s) => {
        const left = pending.get(s)!;
        for (const r of [...left]) {
          const v = await verdictOf(s.grpc, r.token);
          if (v.verdict === 'REVOKED') {
            expect({ sidecar: s.name, what: r.what, ...v }).toMatchObject({ revocationReason: RevocationReason[r.reason] });
            left.delete(r);
          } else {
            last.set(`${s.name}: ${r.what}`, v);
          }
        }
      }));
      return [...pending.values()].every((left) => left.size === 0);
    }, timeoutMs, 'every revoked token rejected by every sidecar', 100);
  } catch (e) {
    const missing = on.map((s) => `${s.name}: ${[...pending.get(s)!].slice(0, 5).map((r) => `${r.what}=${JSON.stringify(last.get(`${s.name}: ${r.what}`))}`).join(', ')}`);
    throw new Error(`${(e as Error).message}\n${missing.join('\n')}`);
  }
}

describe('scale-out: two replicas on Redis Cluster and a NATS cluster', () => {
  it('the replicas share one signing key and the streams have three replicas', async () => {
    const [ja, jb] = await Promise.all([a.grpc.getJwks({}), b.grpc.getJwks({})]);
    expect(ja.keys).toHaveLength(1);
    expect(jb.keys).toEqual(ja.keys);
    for (const name of [STREAMS.revocations.name, STREAMS.security.name]) {
      const info = await until(async () => (await streamInfo(name))?.cluster?.leader !== undefined, 10_000, `${name} leader`, 100)
        .then(() => streamInfo(name));
      expect(info!.config.num_replicas, name).toBe(3);
      expect(new Set([info!.cluster!.leader, ...info!.cluster!.replicas!.map((r) => r.name)]), name).toEqual(new Set(['n1', 'n2', 'n3']));
    }
    // A third replica starting later finds the streams there: nothing changes.
    const before = (await streamInfo(STREAMS.revocations.name))!;
    await ensureStreams(nc, a.config.accessTokenTtlMs + a.config.clockSkewMs + 60_000, 3);
    const after = (await streamInfo(STREAMS.revocations.name))!;
    expect(after.created).toBe(before.created);
    expect(after.config).toEqual(before.config);
  });

  it('a session created on A refreshes on B and validates on both and on every sidecar; the grace retry on A gets B\'s pair', async () => {
    const userId = uniqueUser('across');
    const s = await createSession(a.grpc, a.keys.login, { userId });
    const onB = await b.grpc.refresh({ refreshToken: s.refresh });
    expect(onB.sessionId).toBe(s.sid);
    const onA = await a.connect.refresh({ refreshToken: s.refresh });
    expect(onA.tokens!.refreshToken).toBe(onB.tokens!.refreshToken);
    expect(onA.tokens!.accessToken).toBe(onB.tokens!.accessToken);
    expect(decodeJwt(onB.tokens!.accessToken).header.kid).toBe(decodeJwt(s.access).header.kid);
    for (const [token, what] of [[s.access, 'created on A'], [onB.tokens!.accessToken, 'refreshed on B']] as const) {
      await expectValidEverywhere(token, what);
      valid.push({ token, what });
    }
    const next = await a.grpc.refresh({ refreshToken: onB.tokens!.refreshToken });
    const listed = await b.grpc.listSessions({}, bearer(next.tokens!.accessToken));
    expect(listed.sessions.map((x) => [x.sessionId, x.current])).toEqual([[s.sid, true]]);
    valid.push({ token: next.tokens!.accessToken, what: 'refreshed on A' });
  });

  it('reuse of an old refresh token after the grace window, on B, ends the session on A and on every sidecar', async () => {
    const s = await createSession(b.grpc, b.keys.login, { userId: uniqueUser('reuse') });
    const r1 = await a.grpc.refresh({ refreshToken: s.refresh });
    await sleep(1100); // past SA_REFRESH_GRACE=1s
    await expectRpcError(b.grpc.refresh({ refreshToken: s.refresh }), Code.Unauthenticated, 'refresh_token_reused');
    await expectRpcError(a.grpc.refresh({ refreshToken: r1.tokens!.refreshToken }), Code.Unauthenticated, 'session_ended');
    const revoked = [s.access, r1.tokens!.accessToken].map((token, i) => ({ token, reason: RevocationReason.REFRESH_TOKEN_REUSE, what: `reuse #${i}` }));
    for (const auth of [a, b]) {
      for (const r of revoked) expect((await auth.grpc.validateToken({ accessToken: r.token })).valid, r.what).toBe(false);
    }
    await expectRevokedEverywhere(revoked, 5000);
  });

  it('revoking a user on B ends their sessions created on both replicas, everywhere; a login right after is valid', async () => {
    const userId = uniqueUser('user');
    const s1 = await createSession(a.grpc, a.keys.login, { userId, deviceId: 'phone' });
    const s2 = await createSession(b.grpc, b.keys.login, { userId, deviceId: 'laptop' });
    const res = await b.grpc.revoke({ target: { case: 'userId', value: userId }, reason: RevocationReason.PASSWORD_CHANGED }, apiKey(b.keys.revoker));
    expect(res.sessionsEnded).toBe(2);
    await expectRevokedEverywhere([s1, s2].map((s, i) => ({ token: s.access, reason: RevocationReason.PASSWORD_CHANGED, what: `user session ${i}` })), 5000);
    await expectRpcError(a.grpc.refresh({ refreshToken: s1.refresh }), Code.Unauthenticated, 'session_ended');
    const again = await createSession(a.grpc, a.keys.login, { userId });
    await expectValidEverywhere(again.access, 'login after the user revocation');
    valid.push({ token: again.access, what: 'login after the user revocation' });
  });

  it('SIGKILL of the revocation stream\'s leader in the middle of a stream of revocations: every sidecar rejects every revoked token; the node rejoins', async () => {
    const N = 60;
    const reasons = [RevocationReason.SECURITY_RISK, RevocationReason.ADMIN_ACTION, RevocationReason.ACCOUNT_LOCKED, RevocationReason.OTHER];
    // One user per revocation, so no revocation can hide the loss of another.
    const targets = await Promise.all(Array.from({ length: N }, async (_, i) => {
      const on = i % 2 ? b : a;
      const userId = uniqueUser(`storm${i}`);
      const s = await createSession(on.grpc, on.keys.login, { userId });
      const kind = (['token', 'session', 'user', 'logout'] as const)[i % 4]!;
      return { i, on, kind, userId, ...s, reason: kind === 'logout' ? RevocationReason.USER_REQUEST : reasons[i % reasons.length]! };
    }));
    const victim: NatsNode = nats.node((await streamInfo(STREAMS.revocations.name))!.cluster!.leader!);

    const calls: Promise<unknown>[] = [];
    let killed: Promise<void> | undefined;
    for (const t of targets) {
      if (t.i === N / 3) killed = victim.kill();
      const other = t.on === a ? b : a; // revoked on the replica that did not create it
      const revoke = (target: { case: 'accessToken' | 'sessionId' | 'userId'; value: string }) =>
        other.grpc.revoke({ target, reason: t.reason }, apiKey(other.keys.revoker));
      calls.push(
        t.kind === 'token' ? revoke({ case: 'accessToken', value: t.access })
        : t.kind === 'session' ? revoke({ case: 'sessionId', value: t.sid })
        : t.kind === 'user' ? revoke({ case: 'userId', value: t.userId })
        : other.grpc.logout({ scope: LogoutScope.CURRENT }, bearer(t.access)),
      );
      await sleep(20);
    }
    await killed;
    // Redis acknowledges every one of them: NATS being down never blocks a revocation.
    const settled = await Promise.allSettled(calls);
    expect(settled.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    const revoked = targets.map((t) => ({ token: t.access, reason: t.reason, what: `${t.kind}#${t.i}` }));

    // With one node of three down, the cluster carries on. Electing a new stream
    // leader takes nats-server 2.9 several seconds (5-15 s end to end measured
    // here), during which the relays retry and the sidecars replace consumers
    // that lived on the dead node.
    const since = Date.now();
    const took = await expectRevokedEverywhere(revoked, 30_000);
    console.log(`[scale-out] ${N} revocations, stream leader ${victim.name} killed after ${N / 3}: all rejected by ${sidecars.length} sidecars ${Date.now() - since} ms after the last Revoke (${took} ms polling)`);
    const leader = (await streamInfo(STREAMS.revocations.name))?.cluster?.leader;
    expect(leader).toBeDefined();
    expect(leader).not.toBe(victim.name);

    await victim.restart();
    await nats.waitHealthy();
    // A sidecar that knows only the restarted node replays the whole stream from it.
    const late = await startInProcessSidecar({ name: `late-on-${victim.name}`, authorityUrl: a.httpUrl, natsUrl: victim.url });
    sidecars.push(late);
    await until(async () => (await servingStatus(late)) === 'SERVING', 15_000, 'late sidecar SERVING', 50);
    await expectRevokedEverywhere(revoked, 5000, [late]);

    // A revocation after the restart reaches every sidecar, the one first attached to the victim included.
    const after = await createSession(b.grpc, b.keys.login, { userId: uniqueUser('after') });
    await a.grpc.revoke({ target: { case: 'sessionId', value: after.sid }, reason: RevocationReason.ADMIN_ACTION }, apiKey(a.keys.revoker));
    await expectRevokedEverywhere([{ token: after.access, reason: RevocationReason.ADMIN_ACTION, what: 'after the restart' }], 10_000);
    for (const s of sidecars) expect({ sidecar: s.name, feed: (await s.http('/status')).body.feed }).toEqual({ sidecar: s.name, feed: 'live' });
    for (const v of valid) await expectValidEverywhere(v.token, v.what);
    // Nothing is left waiting in the (shared) outbox.
    await until(async () => (await a.store.readOutbox(10)).events.length === 0, 10_000, 'outbox drained', 100);
  }, 90_000);
});
