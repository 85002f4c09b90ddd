// A sidecar that loses its revocation feed for longer than
// SA_SIDECAR_MAX_STALENESS: fail closed, it refuses to vouch for any token
// (UNAVAILABLE, grpc.health.v1 NOT_SERVING); fail open, it keeps answering and
// says so in /status. Both recover without a restart when NATS returns, and
// then honour what was revoked meanwhile.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { apiKey, createSession, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { freePort } from '../support/free-port.js';
import { readNatsInfo, startNats, type NatsProcess } from '../support/nats-server.js';
import { makeTempDir, startServer } from '../support/server-process.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { servingStatus, spawnSidecar, startInProcessSidecar, until, verdictOf, type Sidecar } from '../support/sidecars.js';

let redis: RedisProcess;
let nats: NatsProcess;
let auth: TestAuthority;
/** Fail closed: a child process configured through SA_SIDECAR_* and an in-process one. */
let closed: Sidecar[];
/** Fail open, in-process. */
let open: Sidecar;

const STALENESS = { SA_SIDECAR_MAX_STALENESS: '1s' };

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  auth = await startTestAuthority({ redisUrl: redis.url, env: { NATS_URL: nats.url } });
  const common = { authorityUrl: auth.httpUrl, natsUrl: nats.url };
  const started = await Promise.all([
    spawnSidecar('child-closed', { SA_AUTHORITY_URL: auth.httpUrl, NATS_URL: nats.url, ...STALENESS, SA_SIDECAR_FAIL_MODE: 'closed' }),
    startInProcessSidecar({ name: 'in-process-closed', ...common, env: { ...STALENESS } }),
    startInProcessSidecar({ name: 'in-process-open', ...common, env: { ...STALENESS, SA_SIDECAR_FAIL_MODE: 'open' } }),
  ]);
  closed = started.slice(0, 2);
  open = started[2]!;
  await until(async () => (await Promise.all(started.map((s) => servingStatus(s)))).every((v) => v === 'SERVING'), 20_000, 'sidecars SERVING');
});

afterAll(async () => {
  await Promise.all([...(closed ?? []), open].filter(Boolean).map((s) => s.stop()));
  await auth?.stop();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

describe('sidecars losing the revocation feed', () => {
  it('fail closed: UNAVAILABLE and NOT_SERVING past the max staleness; fail open: answers and shows "stale"; both recover when NATS returns', async () => {
    const keep = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('keep') });
    const doomed = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser('doomed') });
    const all = [...closed, open];
    for (const s of all) {
      for (const token of [keep.access, doomed.access]) {
        expect({ sidecar: s.name, ...(await verdictOf(s.grpc, token)) }).toMatchObject({ verdict: 'VALID' });
      }
      expect((await s.http('/status')).body).toMatchObject({ ready: true, feed: 'live', staleForMs: 0 });
    }

    // Taken before the kill: a sidecar can see its connection drop before kill()
    // has seen the process exit, and its staleness counts from then.
    const lostAt = Date.now();
    await nats.kill();
    // Within the allowed staleness nothing changes.
    for (const s of all) expect({ sidecar: s.name, ...(await verdictOf(s.grpc, keep.access)) }).toMatchObject({ verdict: 'VALID' });
    expect(Date.now() - lostAt).toBeLessThan(1000);

    // Revoked while the feed is down: the authority knows (Redis), the sidecars cannot yet.
    await auth.grpc.revoke({ target: { case: 'sessionId', value: doomed.sid }, reason: RevocationReason.SECURITY_RISK }, apiKey(auth.keys.admin));

    // Past the staleness: the fail-closed sidecars refuse to vouch for anything.
    for (const s of closed) {
      const after = await until(async () => (await verdictOf(s.grpc, keep.access)).verdict === 'error:Unavailable', 5000, `${s.name} UNAVAILABLE`, 50);
      console.log(`[feed-loss] ${s.name}: UNAVAILABLE ${Date.now() - lostAt} ms after NATS died (max staleness 1 s; waited ${after} ms here)`);
      expect(Date.now() - lostAt).toBeGreaterThan(1000);
      for (const token of [keep.access, doomed.access]) {
        expect({ sidecar: s.name, ...(await verdictOf(s.grpc, token)) }).toMatchObject({ verdict: 'error:Unavailable' });
        expect({ sidecar: s.name, ...(await verdictOf(s.connect, token)) }).toMatchObject({ verdict: 'error:Unavailable' });
      }
      await until(async () => (await servingStatus(s)) === 'NOT_SERVING', 2000, `${s.name} NOT_SERVING`, 50);
      expect(await servingStatus(s, 'sessionauthority.v1.SessionAuthorityService')).toBe('NOT_SERVING');
      const ready = await s.http('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ ready: true, feed: 'stale' });
      expect((await s.http('/healthz')).status).toBe(200); // alive: no reason to restart it
    }
    // The fail-open sidecar keeps answering with what it has, and says it is stale.
    await until(async () => (await open.http('/status')).body.feed === 'stale', 2000, 'fail-open sidecar reports stale', 50);
    const status = (await open.http('/status')).body;
    expect(status).toMatchObject({ ready: true, feed: 'stale' });
    expect(status.staleForMs).toBeGreaterThan(1000);
    expect(await servingStatus(open)).toBe('SERVING');
    for (const client of [open.grpc, open.connect]) {
      expect(await verdictOf(client, keep.access)).toMatchObject({ verdict: 'VALID' });
      // It cannot know about the revocation made while it was cut off: that is what fail open means.
      expect(await verdictOf(client, doomed.access)).toMatchObject({ verdict: 'VALID' });
    }

    await nats.restart();
    const backAt = Date.now();
    const recovered: Record<string, number> = {};
    await Promise.all(all.map(async (s) => {
      await until(async () => {
        const [k, d, h, st] = await Promise.all([verdictOf(s.grpc, keep.access), verdictOf(s.grpc, doomed.access), servingStatus(s), s.http('/status')]);
        return k.verdict === 'VALID' && d.verdict === 'REVOKED' && h === 'SERVING' && st.body.feed === 'live';
      }, 10_000, `${s.name} recovered`, 50);
      recovered[s.name] = Date.now() - backAt;
      for (const client of [s.grpc, s.connect]) {
        expect({ sidecar: s.name, ...(await verdictOf(client, keep.access)) }).toMatchObject({ verdict: 'VALID' });
        expect({ sidecar: s.name, ...(await verdictOf(client, doomed.access)) }).toMatchObject({ verdict: 'REVOKED', revocationReason: 'SECURITY_RISK' });
      }
      expect((await s.http('/readyz')).status).toBe(200);
      expect((await s.http('/status')).body).toMatchObject({ ready: true, feed: 'live', staleForMs: 0 });
    }));
    console.log(`[feed-loss] recovered (live, SERVING, revocation made during the outage applied) after NATS restart: ${JSON.stringify(recovered)} ms`);

    // Recovered means staying recovered: no relapse into UNAVAILABLE / NOT_SERVING
    // while the feed settles after the outage.
    const relapses: string[] = [];
    const watchUntil = Date.now() + 4000;
    while (Date.now() < watchUntil) {
      for (const s of all) {
        const [v, h] = await Promise.all([verdictOf(s.grpc, keep.access), servingStatus(s)]);
        if (v.verdict !== 'VALID' || h !== 'SERVING') relapses.push(`${s.name} +${Date.now() - backAt}ms: ${v.verdict}/${h}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(relapses).toEqual([]);

    // And they follow new revocations again.
    await auth.grpc.revoke({ target: { case: 'accessToken', value: keep.access }, reason: RevocationReason.USER_REQUEST }, apiKey(auth.keys.admin));
    const since = Date.now();
    await Promise.all(all.map((s) => until(async () => (await verdictOf(s.grpc, keep.access)).verdict === 'REVOKED', 2000, `${s.name} follows again`)));
    console.log(`[feed-loss] a new revocation reached all three ${Date.now() - since} ms after Revoke returned`);
  });

  it('a sidecar whose NATS has no JetStream stays NOT_SERVING and keeps at most one connection open while it retries', async () => {
    const monitor = await freePort();
    const plain = await startServer({
      bin: 'nats-server',
      args: (port) => ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitor)], // no -js
      url: (port) => `nats://127.0.0.1:${port}`,
      probe: async (port) => (await readNatsInfo(port)) !== null,
    }, makeTempDir('nats-nojs-'));
    const connz = async (state: 'open' | 'closed') =>
      ((await (await fetch(`http://127.0.0.1:${monitor}/connz?state=${state}`)).json()) as { num_connections: number }).num_connections;
    const s = await startInProcessSidecar({ name: 'no-jetstream', authorityUrl: auth.httpUrl, natsUrl: plain.url });
    try {
      const open: number[] = [];
      const until4s = Date.now() + 4000;
      while (Date.now() < until4s) {
        open.push(await connz('open'));
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await connz('closed')).toBeGreaterThanOrEqual(3); // it did retry...
      expect(Math.max(...open)).toBeLessThanOrEqual(1); // ...closing each failed attempt's connection
      expect(await servingStatus(s)).toBe('NOT_SERVING');
      expect(await verdictOf(s.grpc, 'any.token.at-all')).toMatchObject({ verdict: 'error:Unavailable' });
      expect((await s.http('/status')).body).toMatchObject({ ready: false, feed: 'replaying' });
    } finally {
      await s.stop();
      await plain.stop();
    }
  });
});
