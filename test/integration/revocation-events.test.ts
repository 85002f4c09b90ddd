// Revocations reach NATS JetStream through the outbox: published at once when
// NATS is up, later (and still exactly once per event) when it was down.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsRevocationFeed } from '../../src/events/nats-revocation-feed.js';
import { RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { apiKey, createSession, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { collectingFeed } from '../support/sidecars.js';

let redis: RedisProcess;
let nats: NatsProcess;
let auth: TestAuthority;
const feeds: NatsRevocationFeed[] = [];

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  auth = await startTestAuthority({ redisUrl: redis.url, env: { NATS_URL: nats.url } });
});
afterAll(async () => {
  await Promise.all(feeds.map((f) => f.close()));
  await auth?.stop();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

const collect = () => collectingFeed(nats.url, feeds);

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('revocation events', () => {
  it('publishes token, session and user revocations with their reasons', async () => {
    const { entries } = await collect();
    const user = uniqueUser();
    const a = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    const b = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    const admin = apiKey(auth.keys.admin);
    await auth.grpc.revoke({ target: { case: 'accessToken', value: a.access }, reason: RevocationReason.SECURITY_RISK }, admin);
    await auth.grpc.revoke({ target: { case: 'sessionId', value: b.sid }, reason: RevocationReason.ADMIN_ACTION }, admin);
    await auth.grpc.revoke({ target: { case: 'userId', value: user }, reason: RevocationReason.PASSWORD_CHANGED }, admin);
    await until(() => entries.filter((e) => e.userId === user).length === 3);
    const mine = entries.filter((e) => e.userId === user);
    expect(mine.map((e) => [e.kind, e.reason])).toEqual([
      ['token', RevocationReason.SECURITY_RISK],
      ['session', RevocationReason.ADMIN_ACTION],
      ['user', RevocationReason.PASSWORD_CHANGED],
    ]);
    expect(mine[0]!.sid).toBe(a.sid);
    expect(mine[1]!.sid).toBe(b.sid);
    expect(mine[2]!.notBefore).toBeGreaterThan(0);
    for (const e of mine) expect(e.expiresAt).toBeGreaterThan(Date.now());
  });

  it('a feed started later replays everything still live', async () => {
    const user = uniqueUser();
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.ADMIN_ACTION }, apiKey(auth.keys.admin));
    await until(() => auth.authority.relay!.published > 0 && true);
    await new Promise((r) => setTimeout(r, 200));
    const { entries } = await collect(); // resolves after replay to the end
    expect(entries.some((e) => e.sid === s.sid && e.kind === 'session')).toBe(true);
  });

  it('Revoke answers once JetStream has the event: a stalled NATS delays the answer, not the delivery', async () => {
    const user = uniqueUser();
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    const before = auth.authority.relay!.published;
    nats.pause();
    const resume = setTimeout(() => nats.resume(), 120);
    const started = performance.now();
    try {
      await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.ADMIN_ACTION }, apiKey(auth.keys.admin));
    } finally {
      clearTimeout(resume);
      nats.resume();
    }
    // Answered only after NATS came back and acknowledged: verifiers were being told already.
    expect(performance.now() - started).toBeGreaterThanOrEqual(100);
    expect(auth.authority.relay!.published).toBe(before + 1);
  });

  it('a hung NATS does not hold Revoke past a short bound; the outbox delivers later', async () => {
    const { entries } = await collect();
    const user = uniqueUser();
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    nats.pause();
    let elapsed: number;
    try {
      const started = performance.now();
      const res = await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.SECURITY_RISK }, apiKey(auth.keys.admin));
      elapsed = performance.now() - started;
      expect(res.sessionsEnded).toBe(1);
    } finally {
      nats.resume();
    }
    expect(elapsed).toBeLessThan(1000);
    await until(() => entries.some((e) => e.sid === s.sid));
  });

  it('a revocation acknowledged while NATS is down is delivered once NATS is back', async () => {
    await nats.stop();
    const user = uniqueUser();
    const s = await createSession(auth.grpc, auth.keys.admin, { userId: user });
    const res = await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.ACCOUNT_LOCKED }, apiKey(auth.keys.admin));
    expect(res.sessionsEnded).toBe(1);
    await nats.restart();
    const { entries } = await collect();
    await until(() => entries.some((e) => e.sid === s.sid));
    expect(entries.filter((e) => e.sid === s.sid)).toHaveLength(1);
  });
});
