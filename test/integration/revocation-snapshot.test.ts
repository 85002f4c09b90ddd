// The revocation snapshot: the authority stores the live set with the stream
// sequence it reflects, and a verifier starts from it and reads only the
// stream after it, holding exactly what a full replay would. A snapshot from
// another life of the stream, or one that cannot be read, is ignored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsRevocationFeed } from '../../src/events/nats-revocation-feed.js';
import { applySnapshotEntries, encodeRevocationSnapshot } from '../../src/events/revocation-snapshot.js';
import { encodeOutboxEvent } from '../../src/events/event-codec.js';
import { snapshotBucket, snapshotObject, storedSnapshot } from '../../src/events/snapshot-bucket.js';
import { ensureStreams } from '../../src/events/streams.js';
import { RevocationSnapshotWriter } from '../../src/events/revocation-snapshot-writer.js';
import { silentLogger } from '../../src/shared/logger.js';
import { SNAPSHOTS, STREAMS } from '../../src/events/subjects.js';
import { RevocationReason } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import type { RevocationEntry } from '../../src/verifier/revocation-feed.js';
import { apiKey, createSession, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { collectingFeed, spawnSidecar, until, verdictOf, type Sidecar } from '../support/sidecars.js';

let redis: RedisProcess;
let nats: NatsProcess;
let auth: TestAuthority;
let nc: NatsConnection;
const feeds: NatsRevocationFeed[] = [];
const sidecars: Sidecar[] = [];
const writers: RevocationSnapshotWriter[] = [];

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  // The writer's timer never fires here: each test stores a snapshot when it wants one.
  auth = await startTestAuthority({ redisUrl: redis.url, env: { NATS_URL: nats.url, SA_REVOCATION_SNAPSHOT_INTERVAL: '1h' } });
  nc = await connect({ servers: nats.url });
});
afterAll(async () => {
  await Promise.all([...feeds.map((f) => f.close()), ...sidecars.map((s) => s.stop()), ...writers.map((w) => w.stop())]);
  await nc?.close();
  await auth?.stop();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

const collect = () => collectingFeed(nats.url, feeds);

const streamInfo = async () => (await jetstreamManager(nc)).streams.info(STREAMS.revocations.name);

/** Revokes a new session and returns its id once the event is in the stream. */
async function revokedSession(): Promise<{ sid: string; access: string }> {
  const s = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser() });
  await auth.grpc.revoke({ target: { case: 'sessionId', value: s.sid }, reason: RevocationReason.ADMIN_ACTION }, apiKey(auth.keys.admin));
  return { sid: s.sid, access: s.access };
}

/** Has the writer store a snapshot covering the whole stream as it is now; returns that sequence. */
async function snapshotNow(): Promise<number> {
  const last = (await streamInfo()).state.last_seq;
  const store = await snapshotBucket(nc);
  await until(async () => {
    await auth.authority.snapshots!.writeIfBehind();
    return ((await storedSnapshot(store))?.at.streamSequence ?? 0) >= last;
  }, 10_000, 'snapshot covering the stream');
  return last;
}

/** Publishes a session revocation straight onto the stream, as the relay would, expiring at `expiresAt`. */
async function publishRevocation(sid: string, expiresAt: number): Promise<void> {
  const e = encodeOutboxEvent({ id: `direct-${sid}`, type: 'session_revoked', userId: 'u-direct', sid, reason: RevocationReason.ADMIN_ACTION, at: Date.now(), expiresAt });
  await jetstream(nc).publish(e.subject, e.data, { msgID: e.id });
}

/** A snapshot writer of the test's own, on a clock the test moves; caught up with the stream when returned. */
async function writerAt(clock: { now: () => number }): Promise<RevocationSnapshotWriter> {
  const w = new RevocationSnapshotWriter({ servers: [nats.url], intervalMs: 3_600_000, clockSkewMs: 30_000, logger: silentLogger, clock });
  writers.push(w);
  w.start();
  const last = (await streamInfo()).state.last_seq;
  await until(() => w.position().streamSequence >= last, 10_000, 'writer caught up');
  return w;
}

/** The sids in the stored snapshot. */
async function storedSids(): Promise<Set<string>> {
  const data = await (await snapshotBucket(nc)).getBlob(SNAPSHOTS.object);
  const sids = new Set<string>();
  applySnapshotEntries(data!, (e) => e.sid && sids.add(e.sid));
  return sids;
}

describe('revocation snapshot', () => {
  it('a feed starts from the snapshot and reads only the messages after it', async () => {
    const before = [await revokedSession(), await revokedSession()];
    const covered = await snapshotNow();
    const after = await revokedSession();
    const { entries, feed } = await collect();
    expect(feed.snapshot?.streamSequence).toBeGreaterThanOrEqual(covered);
    const sids = new Set(entries.map((e) => e.sid));
    for (const s of [...before, after]) expect(sids.has(s.sid)).toBe(true);
    // Only the tail came as messages: the revocation after the snapshot.
    const last = (await streamInfo()).state.last_seq;
    expect(feed.delivered).toBe(last - feed.snapshot!.streamSequence);
    expect(feed.delivered).toBeLessThan(last);
  });

  it('stores nothing when the stored snapshot already covers the stream', async () => {
    await revokedSession();
    await snapshotNow();
    const written = auth.authority.snapshots!.written;
    expect(await auth.authority.snapshots!.writeIfBehind()).toBe(false);
    expect(auth.authority.snapshots!.written).toBe(written);
  });

  it('in each interval one replica writes: a second writer leaves a snapshot younger than the interval alone', async () => {
    let now = Date.now();
    const other = new RevocationSnapshotWriter({ servers: [nats.url], intervalMs: 30_000, clockSkewMs: 30_000, logger: silentLogger, clock: { now: () => now } });
    try {
      other.start();
      await snapshotNow(); // by the authority's writer
      await revokedSession();
      const last = (await streamInfo()).state.last_seq;
      await until(async () => (await other.writeIfDue()) || other.position().streamSequence >= last, 10_000, 'second writer caught up');
      expect(other.written).toBe(0);
      expect(await other.writeIfDue()).toBe(false);
      now += 30_000;
      expect(await other.writeIfDue()).toBe(true);
      expect(await other.writeIfDue()).toBe(false);
    } finally {
      await other.stop();
    }
  });

  it('a sidecar started from a snapshot rejects revoked tokens from before and after it', async () => {
    const before = await revokedSession();
    await snapshotNow();
    const after = await revokedSession();
    const live = await createSession(auth.grpc, auth.keys.admin, { userId: uniqueUser() });
    const env = { SA_AUTHORITY_URL: auth.httpUrl, NATS_URL: nats.url, SA_LOG_LEVEL: 'info' };
    // The same, told to ignore snapshots (SA_SIDECAR_SNAPSHOTS=off): it replays the whole stream.
    const [sidecar, replaying] = await Promise.all([spawnSidecar('from-snapshot', env), spawnSidecar('replaying', { ...env, SA_SIDECAR_SNAPSHOTS: 'off' })]);
    sidecars.push(sidecar, replaying);
    for (const s of [sidecar, replaying]) {
      await until(async () => (await s.http('/readyz')).status === 200, 20_000, `${s.name} ready`);
      expect((await verdictOf(s.grpc, before.access)).verdict).toBe('REVOKED');
      expect((await verdictOf(s.grpc, after.access)).verdict).toBe('REVOKED');
      expect((await verdictOf(s.grpc, live.access)).verdict).toBe('VALID');
    }
    expect(sidecar.output!()).toMatch(/revocation snapshot loaded/);
    expect(replaying.output!()).not.toMatch(/revocation snapshot/);
  });

  it('reads on from the stream\'s first message when the messages after the snapshot have aged out', async () => {
    const covered = await snapshotNow();
    const gone = await revokedSession();
    const kept = await revokedSession();
    // As max_age would: everything before `kept`'s message leaves the stream.
    const jsm = await jetstreamManager(nc);
    const last = (await streamInfo()).state.last_seq;
    await jsm.streams.purge(STREAMS.revocations.name, { seq: last });
    expect((await streamInfo()).state.first_seq).toBeGreaterThan(covered + 1);
    const { entries, feed } = await collect();
    expect(feed.snapshot?.streamSequence).toBe(covered);
    expect(entries.some((e) => e.sid === kept.sid)).toBe(true);
    expect(entries.some((e) => e.sid === gone.sid)).toBe(false);
  });

  it('ignores a snapshot of another life of the stream and replays the whole stream', async () => {
    const real = await revokedSession();
    const info = await streamInfo();
    const store = await snapshotBucket(nc);
    // A snapshot of a stream that was deleted and created again (another creation
    // time), claiming a position this stream has reached.
    const ghost: RevocationEntry = { kind: 'session', sid: 'ghost-session', reason: 1, expiresAt: Date.now() + 60_000 };
    const at = { streamSequence: info.state.last_seq, streamCreated: Date.parse(info.created) - 1000 };
    await store.putBlob(snapshotObject(at, Date.now()), await encodeRevocationSnapshot([ghost], at, Date.now()));
    const { entries, feed } = await collect();
    expect(feed.snapshot).toBeUndefined();
    expect(entries.some((e) => e.sid === 'ghost-session')).toBe(false);
    expect(entries.some((e) => e.sid === real.sid)).toBe(true);
    expect(feed.delivered).toBe(info.state.messages);
  });

  it('ignores a snapshot that claims a position past the end of the stream', async () => {
    const info = await streamInfo();
    const store = await snapshotBucket(nc);
    const at = { streamSequence: info.state.last_seq + 1000, streamCreated: Date.parse(info.created) };
    await store.putBlob({ name: SNAPSHOTS.object }, await encodeRevocationSnapshot([], at, Date.now()));
    const { feed } = await collect();
    expect(feed.snapshot).toBeUndefined();
    expect(feed.delivered).toBe(info.state.messages);
  });

  it('replays the whole stream when the snapshot cannot be read', async () => {
    const real = await revokedSession();
    const info = await streamInfo();
    const store = await snapshotBucket(nc);
    await store.putBlob({ name: SNAPSHOTS.object }, new Uint8Array([0x08, 0xff, 0xff]));
    const { entries, feed } = await collect();
    expect(feed.snapshot).toBeUndefined();
    expect(entries.some((e) => e.sid === real.sid)).toBe(true);
    expect(feed.delivered).toBe(info.state.messages);
  });

  it('the writer replaces a snapshot of another life of the stream', async () => {
    // The previous tests left unusable snapshots behind.
    await revokedSession();
    await snapshotNow();
    const { feed } = await collect();
    expect(feed.snapshot?.streamSequence).toBe((await streamInfo()).state.last_seq);
  });

  it('keeps entries a verifier with a slower clock still holds: the writer\'s clock ahead by less than the skew', async () => {
    const ahead = { now: () => Date.now() + 20_000 };
    await publishRevocation('expiring-in-5s', Date.now() + 5_000);
    const w = await writerAt(ahead);
    expect(await w.writeIfBehind()).toBe(true);
    // By the writer's clock it expired 15 s ago; a verifier on time holds it for 5 s more.
    expect((await storedSids()).has('expiring-in-5s')).toBe(true);
    const { entries } = await collect();
    expect(entries.some((e) => e.sid === 'expiring-in-5s')).toBe(true);
  });

  it('drops expired entries from its own set as it writes, so its memory follows the live set', async () => {
    let now = Date.now();
    for (let i = 0; i < 50; i++) await publishRevocation(`short-${i}`, now + 1_000);
    const w = await writerAt({ now: () => now });
    const before = w.held();
    expect(before).toBeGreaterThanOrEqual(50);
    now += 1_000 + 30_000 + 1_000; // past expiry and the skew
    await revokedSession();
    await until(async () => w.position().streamSequence >= (await streamInfo()).state.last_seq, 10_000, 'writer caught up');
    expect(await w.writeIfBehind()).toBe(true);
    // The 50 expired ones went; the session revoked just now came.
    expect(w.held()).toBeLessThanOrEqual(before - 50 + 1);
    const stored = await storedSids();
    expect([...stored].some((sid) => sid.startsWith('short-'))).toBe(false);
  });

  it('a feed closed while it waits for NATS leaves no connection behind', async () => {
    await nats.stop();
    const feed = new NatsRevocationFeed({ servers: nats.url });
    const started = feed.start({ apply: () => {}, keysChanged: () => {} });
    const outcome = started.then(() => 'started', () => 'refused');
    await new Promise((r) => setTimeout(r, 300));
    await feed.close();
    await nats.restart();
    // It would have connected within a retry (500 ms) had it not been closed.
    expect(await Promise.race([outcome, new Promise((r) => setTimeout(() => r('still waiting'), 3000))])).toBe('refused');
    expect(feed.connection()).toBeUndefined();
    // The test's own connection is back before the next test.
    await until(() => nc.flush().then(() => true, () => false), 10_000, 'test connection back');
  }, 30_000);

  it('a start retried after the stream was deleted and created again reads the new stream from its start', async () => {
    // The first attempt starts from a snapshot far into the old stream.
    const covered = await snapshotNow();
    expect(covered).toBeGreaterThan(3);
    const feed = new NatsRevocationFeed({ servers: nats.url });
    feeds.push(feed);
    const entries: RevocationEntry[] = [];
    const sink = { apply: (e: RevocationEntry) => void entries.push(e), keysChanged: () => {} };
    await feed.start(sink);
    expect(feed.snapshot?.streamSequence).toBe(covered);
    // The stream's next life: fewer messages than the old position, and no snapshot of its own yet.
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(STREAMS.revocations.name);
    await ensureStreams(nc, 60_000);
    await publishRevocation('new-life', Date.now() + 60_000);
    // What the verifier does after a failed attempt: its connection closed, start again.
    await feed.connection()!.close();
    await feed.start(sink);
    expect(feed.snapshot).toBeUndefined();
    expect(entries.some((e) => e.sid === 'new-life')).toBe(true);
  });
});
