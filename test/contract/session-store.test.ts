// The storage contract (src/store/session-store.ts), run unchanged against the
// embedded MemorySessionStore and the RedisSessionStore on a real redis-server
// and on a real three-master Redis Cluster (with the production client options).
// Time is logical: every call gets an explicit `now`, and expiry is driven by
// passing later values. The only real waits are for entries whose lifetime the
// Redis store leaves to a real PX TTL (see "revocation entries expire").
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { AuthorityError } from '../../src/shared/errors.js';
import { redisClientFor } from '../../src/store/create-store.js';
import { MemorySessionStore } from '../../src/store/memory.js';
import { RedisSessionStore } from '../../src/store/redis.js';
import { localPartOfSessionId, newSessionId, tagOfSessionId, userTag } from '../../src/store/session-id.js';
import type {
  CheckInput, OutboxBatch, ReuseInput, RotateInput, SessionStore, StoredSession, StoredSigningKey,
} from '../../src/store/session-store.js';
import { startRedisCluster, type RedisClusterProcess } from '../support/redis-cluster.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { until } from '../support/sidecars.js';

const PREFIX = 'sa-test';
const T0 = Date.UTC(2030, 0, 1); // a whole second
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const IDLE = 30 * MIN;
const ABS = 8 * HOUR;
const GRACE = 5 * SEC;
const TOUCH = MIN;
const HISTORY = 4;
const COVER = 15 * MIN;
const REASON = { USER: 3, ADMIN: 4, REUSE: 5 } as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KEK = randomBytes(32).toString('base64');
const hash = () => randomBytes(16);
const sealed = () => randomBytes(61);

function newSession(userId: string, now: number, opts: { idle?: number; abs?: number; device?: string } = {}): StoredSession {
  const idle = opts.idle ?? IDLE;
  const abs = opts.abs ?? ABS;
  return {
    sid: newSessionId(userId),
    userId,
    username: `name of ${userId}`,
    roles: ['user', 'editor'],
    permissions: [],
    clientId: 'web',
    deviceId: opts.device ?? 'device-1',
    deviceName: 'Laptop – Zoë’s ✓',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) "quoted"',
    ip: '203.0.113.7',
    createdAt: now,
    lastActivityAt: now,
    idleExpiresAt: Math.min(now + idle, now + abs),
    absoluteExpiresAt: now + abs,
  };
}

function signingKey(kid: string, createdAt = T0): StoredSigningKey {
  return {
    kid, alg: 'EdDSA', publicJwk: JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: kid }),
    encryptedPrivateKey: randomBytes(48).toString('base64'), createdAt, activatesAt: createdAt + MIN, retiresAt: 0,
  };
}

/** Deterministic PRNG (mulberry32) for the randomized model comparison. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: T[]) => xs[Math.floor(next() * xs.length)] };
}

/** The slot-determining part of a key, as Redis Cluster computes it. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return key.slice(open + 1, close);
  }
  return key;
}

const redisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  commandTimeout: 1000,
  retryStrategy: (n: number) => Math.min(n * 100, 1000),
  lazyConnect: true,
};

let server: RedisProcess;
let admin: Redis;
let cluster: RedisClusterProcess;
let clusterAdmin: Cluster;

beforeAll(async () => {
  [server, cluster] = await Promise.all([startRedis(), startRedisCluster()]);
  admin = new Redis(server.url); // default options: queues while reconnecting
  admin.on('error', () => {});
  clusterAdmin = cluster.admin();
});
afterAll(async () => {
  admin?.disconnect();
  await Promise.all([server?.stop(), cluster?.stop()]);
});

interface Fixture {
  name: 'memory' | 'redis' | 'redis-cluster';
  /** Stores are built with the outbox on unless told otherwise. */
  open(options?: { outbox?: boolean; flush?: boolean }): Promise<{ store: SessionStore; client?: Redis | Cluster }>;
  /** Redis fixtures: a client that sees the same data (queues while reconnecting). */
  admin?: () => Redis | Cluster;
  /** Redis fixtures: every server down (SIGKILL), then back empty, as after a crash without persistence. */
  outage?: { down(): Promise<void>; up(): Promise<void> };
}

const fixtures: Fixture[] = [
  { name: 'memory', open: async ({ outbox = true } = {}) => ({ store: new MemorySessionStore({ outbox }) }) },
  {
    name: 'redis',
    open: async ({ outbox = true, flush = true } = {}) => {
      if (flush) await admin.flushall();
      const client = new Redis(server.url, redisOptions);
      client.on('error', () => {}); // failures surface as rejected calls
      await client.connect();
      return { store: new RedisSessionStore(client, { prefix: PREFIX, outbox }), client };
    },
    admin: () => admin,
    outage: { down: () => server.kill(), up: () => server.restart() },
  },
  {
    name: 'redis-cluster',
    open: async ({ outbox = true, flush = true } = {}) => {
      if (flush) await cluster.flushAll();
      const client = redisClientFor(loadConfig({ REDIS_CLUSTER_NODES: cluster.nodesEnv, SA_KEY_ENCRYPTION_KEY: KEK, SA_REDIS_COMMAND_TIMEOUT: '1s' }));
      client.on('error', () => {});
      client.on('node error', () => {});
      await client.connect();
      return { store: new RedisSessionStore(client, { prefix: PREFIX, outbox }), client };
    },
    admin: () => clusterAdmin,
    outage: {
      down: async () => {
        await Promise.all(cluster.nodes.map((n) => n.kill()));
      },
      up: async () => {
        await Promise.all(cluster.nodes.map((n) => n.restart()));
        await cluster.waitHealthy();
      },
    },
  },
];

describe.each(fixtures)('SessionStore contract: $name', (fixture) => {
  let store: SessionStore;
  let client: Redis | Cluster | undefined;

  beforeEach(async () => {
    ({ store, client } = await fixture.open());
  });
  afterEach(async () => {
    await store.close();
  });

  const create = async (s: StoredSession, h: Buffer, now = s.createdAt) => store.createSession(s, h, now);
  const rotate = (s: StoredSession, expected: Buffer, next: Buffer, now: number, over: Partial<RotateInput> = {}) =>
    store.rotateRefresh({
      sid: s.sid, userId: s.userId, expected, next, sealedSuccessor: over.sealedSuccessor ?? sealed(), now,
      issuedAt: Math.floor(now / 1000), graceMs: GRACE, idleTimeoutMs: IDLE, historySize: HISTORY, ...over,
    });
  const reuse = (s: StoredSession, presented: Buffer, now: number, over: Partial<ReuseInput> = {}) =>
    store.revokeOnReuse({ sid: s.sid, userId: s.userId, presented, now, graceMs: GRACE, coverUntil: now + COVER, reason: REASON.REUSE, ...over });
  const check = (s: { sid: string; userId: string }, now: number, over: Partial<CheckInput> = {}) =>
    store.checkToken({
      userId: s.userId, sid: s.sid, jti: 'jti-' + s.sid, issuedAt: Math.floor(now / SEC), now,
      touchIntervalMs: TOUCH, idleTimeoutMs: IDLE, ...over,
    });
  const sids = async (userId: string, now: number) => (await store.listSessions(userId, now)).map((s) => s.sid);

  describe('create and get', () => {
    it('returns the stored session and its refresh state', async () => {
      const s = newSession('alice', T0);
      const h0 = hash();
      expect(await create(s, h0)).toBeUndefined();
      const snap = await store.getSession(s.sid, T0);
      expect(snap).toEqual({
        session: s,
        refresh: { current: h0, history: [], rotatedAt: T0, sealedSuccessor: undefined },
        userNotBefore: undefined,
      });
      expect(Buffer.isBuffer(snap!.refresh.current)).toBe(true);
      expect(await store.getSession(newSessionId('alice'), T0)).toBeUndefined();
      expect(await store.listSessions('alice', T0)).toEqual([s]);
    });

    it('stores lastActivityAt as given and rotatedAt as now', async () => {
      const s = { ...newSession('alice', T0 - 5 * SEC), lastActivityAt: T0 - 2 * SEC };
      await create(s, hash(), T0);
      const snap = await store.getSession(s.sid, T0);
      expect(snap!.session).toEqual(s);
      expect(snap!.refresh.rotatedAt).toBe(T0);
    });

    it('createSession returns the user\'s not-before after endSessions "all", and getSession shows it', async () => {
      const old = newSession('alice', T0);
      await create(old, hash());
      const now = T0 + 1500;
      await store.endSessions({ userId: 'alice', target: { kind: 'all' }, reason: REASON.ADMIN, now, coverUntil: now + COVER, requireOwnership: false });
      const nbf = Math.floor(now / SEC) + 1;
      const s = newSession('alice', now + 10);
      expect(await create(s, hash())).toBe(nbf);
      expect((await store.getSession(s.sid, now + 10))!.userNotBefore).toBe(nbf);
      // other users are not affected
      const b = newSession('bob', now + 10);
      expect(await create(b, hash())).toBeUndefined();
      expect((await store.getSession(b.sid, now + 10))!.userNotBefore).toBeUndefined();
    });
  });

  describe('rotateRefresh', () => {
    it('rotates: history newest first, bounded by historySize, idle deadline slides', async () => {
      const s = newSession('alice', T0);
      const h = [hash(), hash(), hash(), hash(), hash(), hash(), hash()];
      await create(s, h[0]);
      for (let i = 1; i < h.length; i++) {
        const now = T0 + i * MIN;
        expect(await rotate(s, h[i - 1], h[i], now)).toEqual({ outcome: 'rotated', idleExpiresAt: now + IDLE });
        const snap = await store.getSession(s.sid, now);
        expect(snap!.refresh.current).toEqual(h[i]);
        expect(snap!.refresh.history).toEqual(h.slice(Math.max(0, i - HISTORY), i).reverse());
        expect(snap!.refresh.rotatedAt).toBe(now);
        expect(snap!.session.lastActivityAt).toBe(now);
        expect(snap!.session.idleExpiresAt).toBe(now + IDLE);
        expect(snap!.session.absoluteExpiresAt).toBe(s.absoluteExpiresAt);
        expect(snap!.session.createdAt).toBe(T0);
      }
      expect((await store.listSessions('alice', T0 + 6 * MIN))[0].idleExpiresAt).toBe(T0 + 6 * MIN + IDLE);
    });

    it('historySize bounds the history (1 keeps only the latest, 0 keeps none)', async () => {
      const s = newSession('alice', T0);
      const [a, b, c, d] = [hash(), hash(), hash(), hash()];
      await create(s, a);
      await rotate(s, a, b, T0 + 1, { historySize: 1 });
      await rotate(s, b, c, T0 + 2, { historySize: 1 });
      expect((await store.getSession(s.sid, T0 + 2))!.refresh.history).toEqual([b]);
      await rotate(s, c, d, T0 + 3, { historySize: 0 });
      expect((await store.getSession(s.sid, T0 + 3))!.refresh.history).toEqual([]);
    });

    it('conflict when expected is stale; nothing changes', async () => {
      const s = newSession('alice', T0);
      const [a, b] = [hash(), hash()];
      await create(s, a);
      await rotate(s, a, b, T0 + SEC);
      const before = await store.getSession(s.sid, T0 + 2 * SEC);
      expect(await rotate(s, a, hash(), T0 + 2 * SEC)).toEqual({ outcome: 'conflict' });
      expect(await rotate(s, hash(), hash(), T0 + 2 * SEC)).toEqual({ outcome: 'conflict' });
      expect(await store.getSession(s.sid, T0 + 2 * SEC)).toEqual(before);
    });

    it('gone when the session never existed, idled out, passed its absolute expiry, or was ended', async () => {
      const never = newSession('alice', T0);
      expect(await rotate(never, hash(), hash(), T0)).toEqual({ outcome: 'gone' });

      const idle = newSession('alice', T0);
      const h1 = hash();
      await create(idle, h1);
      expect(await rotate(idle, h1, hash(), T0 + IDLE)).toEqual({ outcome: 'gone' });

      const abs = newSession('alice', T0, { idle: IDLE, abs: HOUR });
      let cur = hash();
      await create(abs, cur);
      for (const at of [20 * MIN, 45 * MIN]) {
        const next = hash();
        await rotate(abs, cur, next, T0 + at);
        cur = next;
      }
      expect(await rotate(abs, cur, hash(), T0 + HOUR)).toEqual({ outcome: 'gone' });

      const ended = newSession('alice', T0);
      const h2 = hash();
      await create(ended, h2);
      await store.endSessions({ userId: 'alice', target: { kind: 'one', sid: ended.sid }, reason: REASON.USER, now: T0 + 1, coverUntil: T0 + COVER, requireOwnership: true });
      expect(await rotate(ended, h2, hash(), T0 + 2)).toEqual({ outcome: 'gone' });
    });

    it('gone when the userId is not the session\'s owner; the session is untouched', async () => {
      const s = newSession('alice', T0);
      const a = hash();
      await create(s, a);
      const before = await store.getSession(s.sid, T0 + SEC);
      expect(await rotate({ ...s, userId: 'mallory' }, a, hash(), T0 + SEC)).toEqual({ outcome: 'gone' });
      expect(await store.getSession(s.sid, T0 + SEC)).toEqual(before);
      expect(await store.listSessions('mallory', T0 + SEC)).toEqual([]);
    });

    it('the sealed successor is visible only within graceMs of the rotation', async () => {
      const s = newSession('alice', T0);
      const [a, b, c] = [hash(), hash(), hash()];
      await create(s, a);
      const box = sealed();
      const t1 = T0 + MIN;
      await rotate(s, a, b, t1, { sealedSuccessor: box });
      expect((await store.getSession(s.sid, t1))!.refresh.sealedSuccessor).toEqual(box);
      expect((await store.getSession(s.sid, t1 + GRACE - 1))!.refresh.sealedSuccessor).toEqual(box);
      expect((await store.getSession(s.sid, t1 + GRACE))!.refresh.sealedSuccessor).toBeUndefined();
      expect((await store.getSession(s.sid, t1 + 2 * GRACE))!.refresh.sealedSuccessor).toBeUndefined();

      // a rotation without a grace window clears the earlier sealed pair
      await rotate(s, b, c, t1 + 1, { graceMs: 0 });
      expect((await store.getSession(s.sid, t1 + 1))!.refresh.sealedSuccessor).toBeUndefined();
    });
  });

  describe('expiry', () => {
    it('idle expiry: invisible to getSession and listSessions at the idle deadline', async () => {
      const s = newSession('alice', T0);
      await create(s, hash());
      expect(await store.getSession(s.sid, s.idleExpiresAt - 1)).toBeDefined();
      expect(await sids('alice', s.idleExpiresAt - 1)).toEqual([s.sid]);
      expect(await store.getSession(s.sid, s.idleExpiresAt)).toBeUndefined();
      expect(await store.listSessions('alice', s.idleExpiresAt)).toEqual([]);
      expect(await store.getSession(s.sid, s.idleExpiresAt + HOUR)).toBeUndefined();
      // a check after expiry does not bring it back
      expect(await check(s, s.idleExpiresAt)).toEqual({ revoked: false });
      expect(await store.getSession(s.sid, s.idleExpiresAt)).toBeUndefined();
    });

    it('absolute expiry: rotation never slides past absoluteExpiresAt', async () => {
      const s = newSession('alice', T0, { idle: IDLE, abs: HOUR });
      let cur = hash();
      await create(s, cur);
      const next1 = hash();
      expect(await rotate(s, cur, next1, T0 + 20 * MIN)).toEqual({ outcome: 'rotated', idleExpiresAt: T0 + 50 * MIN });
      cur = next1;
      const next2 = hash();
      expect(await rotate(s, cur, next2, T0 + 45 * MIN)).toEqual({ outcome: 'rotated', idleExpiresAt: T0 + HOUR });
      cur = next2;
      const snap = await store.getSession(s.sid, T0 + HOUR - 1);
      expect(snap!.session.idleExpiresAt).toBe(T0 + HOUR);
      expect(snap!.session.absoluteExpiresAt).toBe(T0 + HOUR);
      // a touch is clamped too
      expect(await check(s, T0 + 59 * MIN, { touchIntervalMs: 0 })).toEqual({ revoked: false });
      expect((await store.getSession(s.sid, T0 + 59 * MIN))!.session.idleExpiresAt).toBe(T0 + HOUR);
      expect(await store.getSession(s.sid, T0 + HOUR)).toBeUndefined();
      expect(await store.listSessions('alice', T0 + HOUR)).toEqual([]);
      expect(await rotate(s, cur, hash(), T0 + HOUR)).toEqual({ outcome: 'gone' });
    });
  });

  describe('revokeOnReuse', () => {
    async function rotated() {
      const s = newSession('alice', T0);
      const [a, b] = [hash(), hash()];
      await create(s, a);
      const t1 = T0 + MIN;
      await rotate(s, a, b, t1);
      return { s, a, b, t1 };
    }

    it('grace for the newest history hash inside the window; nothing changes', async () => {
      const { s, a, t1 } = await rotated();
      const before = await store.getSession(s.sid, t1 + SEC);
      expect(before!.refresh.sealedSuccessor).toBeDefined();
      expect(await reuse(s, a, t1)).toBe('grace');
      expect(await reuse(s, a, t1 + GRACE - 1)).toBe('grace');
      expect(await store.getSession(s.sid, t1 + SEC)).toEqual(before);
      expect(await check(s, t1 + SEC)).toEqual({ revoked: false });
    });

    it('revoked outside the window: session gone and its tokens revoked with the reason', async () => {
      const { s, a, b, t1 } = await rotated();
      const other = newSession('alice', T0);
      await create(other, hash());
      const now = t1 + GRACE;
      expect(await reuse(s, a, now)).toBe('revoked');
      expect(await store.getSession(s.sid, now)).toBeUndefined();
      expect(await sids('alice', now)).toEqual([other.sid]);
      expect(await check(s, now, { jti: 'any-token-of-that-session' })).toEqual({ revoked: true, reason: REASON.REUSE });
      expect(await check(other, now)).toEqual({ revoked: false });
      expect(await rotate(s, b, hash(), now)).toEqual({ outcome: 'gone' });
      // the session is gone: presenting anything now is unknown
      expect(await reuse(s, a, now + 1)).toBe('unknown');
    });

    it('revoked for an older history hash even inside the window', async () => {
      const s = newSession('alice', T0);
      const [a, b, c] = [hash(), hash(), hash()];
      await create(s, a);
      await rotate(s, a, b, T0 + 1);
      await rotate(s, b, c, T0 + 2);
      expect(await reuse(s, a, T0 + 3)).toBe('revoked');
      expect(await store.getSession(s.sid, T0 + 3)).toBeUndefined();
    });

    it('revoked inside the window when the rotation left no sealed successor (graceMs 0)', async () => {
      const s = newSession('alice', T0);
      const [a, b] = [hash(), hash()];
      await create(s, a);
      await rotate(s, a, b, T0 + 1, { graceMs: 0 });
      expect(await reuse(s, a, T0 + 2)).toBe('revoked');
    });

    it('unknown for a hash never seen (or the current one): nothing changes', async () => {
      const { s, b, t1 } = await rotated();
      const before = await store.getSession(s.sid, t1 + GRACE * 2);
      expect(await reuse(s, hash(), t1 + GRACE * 2)).toBe('unknown');
      expect(await reuse(s, b, t1 + GRACE * 2)).toBe('unknown');
      expect(await store.getSession(s.sid, t1 + GRACE * 2)).toEqual(before);
      expect(await check(s, t1 + GRACE * 2)).toEqual({ revoked: false });
    });

    it('unknown when the userId is not the owner: nothing changes', async () => {
      const { s, a, t1 } = await rotated();
      expect(await reuse({ ...s, userId: 'mallory' }, a, t1 + GRACE * 2)).toBe('unknown');
      expect(await store.getSession(s.sid, t1 + GRACE * 2)).toBeDefined();
    });
  });

  describe('endSessions', () => {
    const end = (userId: string, target: Parameters<SessionStore['endSessions']>[0]['target'], now: number, requireOwnership = false, reason: number = REASON.USER) =>
      store.endSessions({ userId, target, reason, now, coverUntil: now + COVER, requireOwnership });

    it('one: ends it, reports found, and revokes its tokens', async () => {
      const [a1, a2] = [newSession('alice', T0), newSession('alice', T0 + 1)];
      await create(a1, hash());
      await create(a2, hash());
      expect(await end('alice', { kind: 'one', sid: a1.sid }, T0 + SEC, true)).toEqual({ ended: [a1.sid], absoluteExpiresAt: [a1.absoluteExpiresAt], found: true });
      expect(await store.getSession(a1.sid, T0 + SEC)).toBeUndefined();
      expect(await sids('alice', T0 + SEC)).toEqual([a2.sid]);
      expect(await check(a1, T0 + SEC)).toEqual({ revoked: true, reason: REASON.USER });
      expect(await check(a2, T0 + SEC)).toEqual({ revoked: false });
      // again: not live any more
      expect(await end('alice', { kind: 'one', sid: a1.sid }, T0 + 2 * SEC, true)).toEqual({ ended: [], absoluteExpiresAt: [], found: false });
      expect(await end('alice', { kind: 'one', sid: a1.sid }, T0 + 2 * SEC, false, REASON.ADMIN)).toEqual({ ended: [], absoluteExpiresAt: [], found: true });
      expect(await check(a1, T0 + 2 * SEC)).toEqual({ revoked: true, reason: REASON.ADMIN });
    });

    it('one without ownership (admin path) for an unknown sid still records the revocation', async () => {
      const ghost = { sid: newSessionId('carol'), userId: 'carol' };
      expect(await end('', { kind: 'one', sid: ghost.sid }, T0, false, REASON.ADMIN)).toEqual({ ended: [], absoluteExpiresAt: [], found: true });
      expect(await check(ghost, T0 + 1)).toEqual({ revoked: true, reason: REASON.ADMIN });
    });

    it('one with requireOwnership for another user\'s sid: found false and nothing changes', async () => {
      const a = newSession('alice', T0);
      const b = newSession('bob', T0);
      await create(a, hash());
      await create(b, hash());
      const before = await store.getSession(b.sid, T0 + 1);
      expect(await end('alice', { kind: 'one', sid: b.sid }, T0 + 1, true)).toEqual({ ended: [], absoluteExpiresAt: [], found: false });
      expect(await store.getSession(b.sid, T0 + 1)).toEqual(before);
      expect(await sids('bob', T0 + 1)).toEqual([b.sid]);
      expect(await sids('alice', T0 + 1)).toEqual([a.sid]);
      expect(await check(b, T0 + 1)).toEqual({ revoked: false });
    });

    it('allExcept keeps the named session and revokes the others', async () => {
      const [a1, a2, a3] = [newSession('alice', T0), newSession('alice', T0 + 1), newSession('alice', T0 + 2)];
      const b = newSession('bob', T0);
      for (const s of [a1, a2, a3, b]) await create(s, hash());
      const r = await end('alice', { kind: 'allExcept', sid: a2.sid }, T0 + SEC);
      expect(r.found).toBe(true);
      expect([...r.ended].sort()).toEqual([a1.sid, a3.sid].sort());
      expect(await sids('alice', T0 + SEC)).toEqual([a2.sid]);
      expect(await check(a1, T0 + SEC)).toEqual({ revoked: true, reason: REASON.USER });
      expect(await check(a3, T0 + SEC)).toEqual({ revoked: true, reason: REASON.USER });
      expect(await check(a2, T0 + SEC)).toEqual({ revoked: false });
      expect(await sids('bob', T0 + SEC)).toEqual([b.sid]);
    });

    it('all ends everything and sets the not-before: tokens with iat < nbf are revoked, iat >= nbf are not', async () => {
      const [a1, a2] = [newSession('alice', T0), newSession('alice', T0 + 1)];
      const b = newSession('bob', T0);
      for (const s of [a1, a2, b]) await create(s, hash());
      const now = T0 + 2 * SEC + 250;
      const nbf = Math.floor(now / SEC) + 1;
      const r = await end('alice', { kind: 'all' }, now, false, REASON.ADMIN);
      expect(r.found).toBe(true);
      expect([...r.ended].sort()).toEqual([a1.sid, a2.sid].sort());
      expect(await store.listSessions('alice', now)).toEqual([]);
      expect(await sids('bob', now)).toEqual([b.sid]);
      expect(await check(a1, now, { issuedAt: nbf - 1 })).toEqual({ revoked: true, reason: REASON.ADMIN });
      expect(await check({ sid: newSessionId('alice'), userId: 'alice' }, now, { issuedAt: nbf - 1 })).toEqual({ revoked: true, reason: REASON.ADMIN });
      expect(await check(a1, now, { issuedAt: nbf })).toEqual({ revoked: false });
      expect(await check(a1, now + 5 * SEC, { issuedAt: nbf + 3 })).toEqual({ revoked: false });
      expect(await check(b, now, { issuedAt: nbf - 1 })).toEqual({ revoked: false });

      // an "all" at an earlier time never moves the not-before back
      expect(await end('alice', { kind: 'all' }, now - 2 * SEC)).toEqual({ ended: [], absoluteExpiresAt: [], found: true });
      const s = newSession('alice', now);
      expect(await create(s, hash())).toBe(nbf);
      // a later one moves it forward
      await end('alice', { kind: 'all' }, now + 10 * SEC);
      expect(await create(newSession('alice', now + 11 * SEC), hash())).toBe(nbf + 10);
    });

    it('listSessions equals exactly the live sessions after a randomized mix of operations (model check)', async () => {
      const r = rng(0x5eed);
      const users = ['u1', 'u2', 'u3'];
      const idle = 10 * SEC;
      const absLife = 35 * SEC;
      const grace = 1500;
      const touch = 2 * SEC;
      type M = { s: StoredSession; cur: Buffer; history: Buffer[]; rotatedAt: number; sealedUntil: number };
      const model = new Map<string, M>();
      const revokedSid = new Map<string, number>();
      const nbfOf = new Map<string, number>();
      const expiry = (m: M) => Math.min(m.s.idleExpiresAt, m.s.absoluteExpiresAt);
      const live = (now: number, userId?: string) =>
        [...model.values()].filter((m) => now < expiry(m) && (userId === undefined || m.s.userId === userId));
      const dropIfDead = (now: number) => { for (const [sid, m] of model) if (now >= expiry(m)) model.delete(sid); };
      const byExpiryThenSid = (x: StoredSession, y: StoredSession) =>
        Math.min(x.idleExpiresAt, x.absoluteExpiresAt) - Math.min(y.idleExpiresAt, y.absoluteExpiresAt) || (x.sid < y.sid ? -1 : x.sid > y.sid ? 1 : 0);

      let now = T0;
      const counts: Record<string, number> = {};
      for (let step = 0; step < 400; step++) {
        now += 1 + r.int(2500);
        dropIfDead(now);
        const userId = r.pick(users);
        const mine = live(now, userId);
        const roll = r.next();
        let op: string;
        if (roll < 0.22 || mine.length === 0) {
          op = 'create';
          const s = newSession(userId, now, { idle, abs: absLife });
          const h = hash();
          expect(await store.createSession(s, h, now)).toBe(nbfOf.get(userId));
          model.set(s.sid, { s: { ...s }, cur: h, history: [], rotatedAt: now, sealedUntil: 0 });
        } else if (roll < 0.45) {
          op = 'rotate';
          const m = r.pick(mine);
          const stale = m.history.length > 0 && r.next() < 0.2;
          const next = hash();
          const res = await rotate(m.s, stale ? m.history[0] : m.cur, next, now, { graceMs: grace, idleTimeoutMs: idle, historySize: 3 });
          if (stale) {
            expect(res).toEqual({ outcome: 'conflict' });
          } else {
            m.history = [m.cur, ...m.history].slice(0, 3);
            m.cur = next;
            m.rotatedAt = now;
            m.sealedUntil = now + grace;
            m.s.lastActivityAt = now;
            m.s.idleExpiresAt = Math.min(now + idle, m.s.absoluteExpiresAt);
            expect(res).toEqual({ outcome: 'rotated', idleExpiresAt: m.s.idleExpiresAt });
          }
        } else if (roll < 0.65) {
          op = 'check';
          const m = r.pick(mine);
          const issuedAt = Math.floor(now / SEC) - r.int(4);
          const res = await check(m.s, now, { issuedAt, touchIntervalMs: touch, idleTimeoutMs: idle });
          const nbf = nbfOf.get(userId);
          if (revokedSid.has(m.s.sid)) expect(res).toEqual({ revoked: true, reason: revokedSid.get(m.s.sid) });
          else if (nbf !== undefined && issuedAt < nbf) expect(res).toEqual({ revoked: true, reason: REASON.ADMIN });
          else {
            expect(res).toEqual({ revoked: false });
            if (now - m.s.lastActivityAt >= touch) {
              m.s.lastActivityAt = now;
              m.s.idleExpiresAt = Math.min(now + idle, m.s.absoluteExpiresAt);
            }
          }
        } else if (roll < 0.75) {
          op = 'reuse';
          const m = r.pick(mine);
          if (m.history.length === 0) continue;
          const idx = r.int(m.history.length);
          const res = await reuse(m.s, m.history[idx], now, { graceMs: grace, coverUntil: now + HOUR, reason: REASON.REUSE });
          if (idx === 0 && now < m.sealedUntil) expect(res).toBe('grace');
          else {
            expect(res).toBe('revoked');
            model.delete(m.s.sid);
            revokedSid.set(m.s.sid, REASON.REUSE);
          }
        } else if (roll < 0.85) {
          op = 'endOne';
          const m = r.pick(mine);
          const res = await store.endSessions({ userId, target: { kind: 'one', sid: m.s.sid }, reason: REASON.USER, now, coverUntil: now + HOUR, requireOwnership: r.next() < 0.5 });
          expect(res).toEqual({ ended: [m.s.sid], absoluteExpiresAt: [m.s.absoluteExpiresAt], found: true });
          model.delete(m.s.sid);
          revokedSid.set(m.s.sid, REASON.USER);
        } else if (roll < 0.9) {
          op = 'endForeign';
          const other = live(now).find((m) => m.s.userId !== userId);
          if (!other) continue;
          const res = await store.endSessions({ userId, target: { kind: 'one', sid: other.s.sid }, reason: REASON.USER, now, coverUntil: now + HOUR, requireOwnership: true });
          expect(res).toEqual({ ended: [], absoluteExpiresAt: [], found: false });
        } else if (roll < 0.96) {
          op = 'allExcept';
          const keep = r.pick(mine);
          const res = await store.endSessions({ userId, target: { kind: 'allExcept', sid: keep.s.sid }, reason: REASON.USER, now, coverUntil: now + HOUR, requireOwnership: false });
          const gone = mine.filter((m) => m !== keep).map((m) => m.s.sid);
          expect(res.found).toBe(true);
          expect([...res.ended].sort()).toEqual([...gone].sort());
          expect(res.absoluteExpiresAt).toEqual(res.ended.map((sid) => model.get(sid)!.s.absoluteExpiresAt));
          for (const sid of gone) { model.delete(sid); revokedSid.set(sid, REASON.USER); }
        } else {
          op = 'all';
          const res = await store.endSessions({ userId, target: { kind: 'all' }, reason: REASON.ADMIN, now, coverUntil: now + HOUR, requireOwnership: false });
          expect(res.found).toBe(true);
          expect([...res.ended].sort()).toEqual(mine.map((m) => m.s.sid).sort());
          expect(res.absoluteExpiresAt).toEqual(res.ended.map((sid) => model.get(sid)!.s.absoluteExpiresAt));
          for (const m of mine) model.delete(m.s.sid);
          nbfOf.set(userId, Math.max(Math.floor(now / SEC) + 1, nbfOf.get(userId) ?? 0));
        }
        counts[op] = (counts[op] ?? 0) + 1;

        // the per-user index is exactly the live sessions, soonest expiring first.
        // (Time only moves forward: both stores prune what has expired by the `now`
        // they are given, so an earlier `now` afterwards is not meaningful.)
        now += r.int(3000);
        const probe = now;
        for (const u of users) {
          const got = await store.listSessions(u, probe);
          const gotExpiries = got.map((s) => Math.min(s.idleExpiresAt, s.absoluteExpiresAt));
          expect(gotExpiries).toEqual([...gotExpiries].sort((x, y) => x - y));
          expect([...got].sort(byExpiryThenSid), `step ${step} ${op} user ${u}`).toEqual(
            live(probe, u).map((m) => m.s).sort(byExpiryThenSid),
          );
        }
        const someone = r.pick([...model.values()]);
        if (someone) {
          const snap = await store.getSession(someone.s.sid, now);
          if (now < expiry(someone)) {
            expect(snap!.session).toEqual(someone.s);
            expect(snap!.refresh.current).toEqual(someone.cur);
            expect(snap!.refresh.history).toEqual(someone.history);
          } else expect(snap).toBeUndefined();
        }
      }
      // the sequence exercised every branch
      for (const op of ['create', 'rotate', 'check', 'reuse', 'endOne', 'endForeign', 'allExcept', 'all']) expect(counts[op] ?? 0, op).toBeGreaterThan(0);
    });
  });

  describe('revokeToken and checkToken', () => {
    it('revokes one access token by jti, and nothing else', async () => {
      const s = newSession('alice', T0);
      await create(s, hash());
      await store.revokeToken({ userId: 'alice', sid: s.sid, jti: 'j1', reason: REASON.USER, now: T0, coverUntil: T0 + COVER });
      expect(await check(s, T0 + 1, { jti: 'j1' })).toEqual({ revoked: true, reason: REASON.USER });
      expect(await check(s, T0 + 1, { jti: 'j2' })).toEqual({ revoked: false });
      // the session itself lives on
      expect(await store.getSession(s.sid, T0 + 1)).toBeDefined();
      // a revocation already past its cover time is not recorded
      await store.revokeToken({ userId: 'alice', sid: s.sid, jti: 'j3', reason: REASON.USER, now: T0 + 2, coverUntil: T0 + 2 });
      expect(await check(s, T0 + 2, { jti: 'j3' })).toEqual({ revoked: false });
    });

    // The Redis store leaves the lifetime of revocation entries (j:, r:, n:) to a
    // real PX TTL of coverUntil - now: their visibility does not depend on the
    // `now` passed to checkToken. So this case uses real time and a real wait,
    // which both stores agree on.
    it('revocation entries expire after coverUntil (real time, short cover)', async () => {
      const t = Date.now();
      const s = newSession('alice', t);
      const other = newSession('bob', t);
      await create(s, hash());
      await create(other, hash());
      await store.revokeToken({ userId: 'alice', sid: s.sid, jti: 'jx', reason: REASON.USER, now: t, coverUntil: t + 300 });
      await store.endSessions({ userId: 'bob', target: { kind: 'one', sid: other.sid }, reason: REASON.ADMIN, now: t, coverUntil: t + 300, requireOwnership: false });
      await store.endSessions({ userId: 'carol', target: { kind: 'all' }, reason: REASON.ADMIN, now: t, coverUntil: t + 300, requireOwnership: false });
      const carol = { sid: newSessionId('carol'), userId: 'carol' };
      const iat = Math.floor(t / SEC);
      expect(await check(s, Date.now(), { jti: 'jx' })).toEqual({ revoked: true, reason: REASON.USER });
      expect(await check(other, Date.now())).toEqual({ revoked: true, reason: REASON.ADMIN });
      expect(await check(carol, Date.now(), { issuedAt: iat })).toEqual({ revoked: true, reason: REASON.ADMIN });
      await sleep(450);
      const later = Date.now();
      expect(await check(s, later, { jti: 'jx' })).toEqual({ revoked: false });
      expect(await check(other, later)).toEqual({ revoked: false });
      expect(await check(carol, later, { issuedAt: iat })).toEqual({ revoked: false });
      expect(await create(newSession('carol', later), hash(), later)).toBeUndefined();
    });

    it('touches the session only when now - lastActivityAt >= touchIntervalMs', async () => {
      const s = newSession('alice', T0);
      await create(s, hash());
      expect(await check(s, T0 + TOUCH - 1)).toEqual({ revoked: false });
      let snap = await store.getSession(s.sid, T0 + TOUCH - 1);
      expect(snap!.session.lastActivityAt).toBe(T0);
      expect(snap!.session.idleExpiresAt).toBe(T0 + IDLE);

      expect(await check(s, T0 + TOUCH)).toEqual({ revoked: false });
      snap = await store.getSession(s.sid, T0 + TOUCH);
      expect(snap!.session.lastActivityAt).toBe(T0 + TOUCH);
      expect(snap!.session.idleExpiresAt).toBe(T0 + TOUCH + IDLE);
      // the index follows: the session lives past its original idle deadline
      expect(await sids('alice', T0 + IDLE)).toEqual([s.sid]);
      expect(await store.getSession(s.sid, T0 + IDLE)).toBeDefined();

      // next touch is due TOUCH after the last one, not after the first
      await check(s, T0 + 2 * TOUCH - 1);
      expect((await store.getSession(s.sid, T0 + 2 * TOUCH - 1))!.session.lastActivityAt).toBe(T0 + TOUCH);
      await check(s, T0 + 2 * TOUCH + 7);
      expect((await store.getSession(s.sid, T0 + 2 * TOUCH + 7))!.session.lastActivityAt).toBe(T0 + 2 * TOUCH + 7);
      // the refresh side is untouched
      expect((await store.getSession(s.sid, T0 + 2 * TOUCH + 7))!.refresh.rotatedAt).toBe(T0);
    });

    it('a revoked token does not touch the session; a foreign userId does not either', async () => {
      const s = newSession('alice', T0);
      await create(s, hash());
      await store.revokeToken({ userId: 'alice', sid: s.sid, jti: 'dead', reason: REASON.USER, now: T0, coverUntil: T0 + COVER });
      expect(await check(s, T0 + 5 * MIN, { jti: 'dead' })).toEqual({ revoked: true, reason: REASON.USER });
      expect((await store.getSession(s.sid, T0 + 5 * MIN))!.session.lastActivityAt).toBe(T0);
      expect(await check({ ...s, userId: 'mallory' }, T0 + 5 * MIN)).toEqual({ revoked: false });
      expect((await store.getSession(s.sid, T0 + 5 * MIN))!.session.lastActivityAt).toBe(T0);
      expect(await store.listSessions('mallory', T0 + 5 * MIN)).toEqual([]);
    });
  });

  describe('listSessions', () => {
    it('orders soonest expiring first and never mixes users', async () => {
      const a1 = newSession('alice', T0 + 3 * SEC);
      const a2 = newSession('alice', T0 + 1 * SEC);
      const a3 = newSession('alice', T0, { idle: 5 * MIN }); // idle deadline first
      const a4 = newSession('alice', T0 + 2 * SEC, { abs: 10 * MIN, idle: IDLE }); // idle clamped to absolute
      const b1 = newSession('bob', T0);
      for (const s of [a1, a2, a3, a4, b1]) await create(s, hash());
      const now = T0 + 4 * SEC;
      expect(await store.listSessions('alice', now)).toEqual([a3, a4, a2, a1]);
      expect(await store.listSessions('bob', now)).toEqual([b1]);
      expect(await store.listSessions('nobody', now)).toEqual([]);
      // a touch reorders
      await check(a3, T0 + 5 * MIN - 1, { touchIntervalMs: 0 });
      expect(await sids('alice', T0 + 5 * MIN - 1)).toEqual([a4.sid, a2.sid, a1.sid, a3.sid]);
      // expired ones drop out
      expect(await sids('alice', T0 + 10 * MIN + 2 * SEC)).toEqual([a2.sid, a1.sid, a3.sid]);
    });
  });

  describe('signing keys', () => {
    it('addFirstSigningKey: exactly one of several concurrent first keys wins', async () => {
      const candidates = ['f1', 'f2', 'f3', 'f4', 'f5'].map((kid) => signingKey(kid));
      const won = await Promise.all(candidates.map((k) => store.addFirstSigningKey(k)));
      expect(won.filter(Boolean)).toHaveLength(1);
      const kept = await store.listSigningKeys();
      expect(kept).toEqual([candidates[won.indexOf(true)]]);
      expect(await store.addFirstSigningKey(signingKey('late'))).toBe(false);
    });


    it('add (false on duplicate kid), list, update, remove', async () => {
      expect(await store.listSigningKeys()).toEqual([]);
      const k1 = signingKey('k1');
      const k2 = signingKey('k2', T0 + 1);
      expect(await store.addSigningKey(k1)).toBe(true);
      expect(await store.addSigningKey(k2)).toBe(true);
      expect(await store.addSigningKey({ ...k1, alg: 'ES256' })).toBe(false);
      const byKid = async () => (await store.listSigningKeys()).sort((x, y) => x.kid.localeCompare(y.kid));
      expect(await byKid()).toEqual([k1, k2]);
      const k1b = { ...k1, retiresAt: T0 + HOUR };
      await store.updateSigningKey(k1b);
      expect(await byKid()).toEqual([k1b, k2]);
      await store.removeSigningKey('k1');
      expect(await byKid()).toEqual([k2]);
      await store.removeSigningKey('absent');
      expect(await byKid()).toEqual([k2]);
      expect(await store.addSigningKey(k1)).toBe(true);
      expect(await byKid()).toEqual([k1, k2]);
    });
  });

  describe('browser handoffs', () => {
    const put = (sid: string, codeHash: Buffer, sealedPair: Buffer, now = T0, ttl = MIN) =>
      store.putHandoff({ sid, codeHash, sealed: sealedPair, now, expiresAt: now + ttl });

    it('take returns the sealed pair once; a second take, another code hash or another slot get nothing', async () => {
      const sid = newSessionId('alice');
      const [code, other] = [hash(), hash()];
      const value = sealed();
      await put(sid, code, value);
      expect(await store.takeHandoff({ sid, codeHash: other, now: T0 + 1 })).toBeUndefined();
      expect(await store.takeHandoff({ sid: newSessionId('bob'), codeHash: code, now: T0 + 1 })).toBeUndefined();
      expect(await store.takeHandoff({ sid, codeHash: code, now: T0 + 1 })).toEqual(value);
      expect(await store.takeHandoff({ sid, codeHash: code, now: T0 + 2 })).toBeUndefined();
    });

    it('invisible from expiresAt on (and gone after, even for an earlier now)', async () => {
      const sid = newSessionId('alice');
      const [live, late] = [hash(), hash()];
      await put(sid, live, sealed(), T0, MIN);
      await put(sid, late, sealed(), T0, MIN);
      expect(await store.takeHandoff({ sid, codeHash: live, now: T0 + MIN - 1 })).toBeDefined();
      expect(await store.takeHandoff({ sid, codeHash: late, now: T0 + MIN })).toBeUndefined();
      expect(await store.takeHandoff({ sid, codeHash: late, now: T0 })).toBeUndefined();
    });

    it('of many concurrent takes exactly one gets the pair', async () => {
      const sid = newSessionId('alice');
      const code = hash();
      const value = sealed();
      await put(sid, code, value);
      const taken = await Promise.all(Array.from({ length: 8 }, () => store.takeHandoff({ sid, codeHash: code, now: T0 + 1 })));
      expect(taken.filter((t) => t !== undefined)).toEqual([value]);
    });
  });

  it('rotateRefresh: conflict (nothing changes) when the successor token would fall under the user not-before', async () => {
    const [h0, h1] = [hash(), hash()];
    await create(newSession('erin', T0), h0);
    // A global logout, then a new session in the same second.
    await store.endSessions({ userId: 'erin', target: { kind: 'all' }, reason: 1, now: T0 + 100, coverUntil: T0 + COVER, requireOwnership: false });
    const fresh = newSession('erin', T0 + 200);
    const nbf = await create(fresh, h0, T0 + 200);
    expect(nbf).toBe(T0 / 1000 + 1);
    expect(await rotate(fresh, h0, h1, T0 + 300, { issuedAt: T0 / 1000 })).toEqual({ outcome: 'conflict' });
    expect((await store.getSession(fresh.sid, T0 + 300))!.refresh.current).toEqual(h0);
    expect((await rotate(fresh, h0, h1, T0 + 300, { issuedAt: nbf! })).outcome).toBe('rotated');
  });

  describe('refresh rate', () => {
    const RATE = { limit: 3, windowMs: MIN };

    it('counts rotations per session in windows; the one past the limit reports it, once per window', async () => {
      const a = newSession('alice', T0);
      const b = newSession('alice', T0);
      let [ha, hb] = [hash(), hash()];
      await create(a, ha);
      await create(b, hb);
      const step = async (s: StoredSession, h: Buffer, now: number) => {
        const next = hash();
        const res = await rotate(s, h, next, now, { refreshRate: RATE });
        expect(res.outcome).toBe('rotated');
        return { next, exceeded: res.outcome === 'rotated' && res.rateExceeded === true };
      };
      const flags: boolean[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await step(a, ha, T0 + (i + 1) * SEC);
        ha = r.next;
        flags.push(r.exceeded);
      }
      expect(flags).toEqual([false, false, false, true, false]);
      // another session of the same user has its own count
      const rb = await step(b, hb, T0 + 6 * SEC);
      hb = rb.next;
      expect(rb.exceeded).toBe(false);
      // the window began at the first rotation (T0 + 1 s): a minute later a new one starts
      const later: boolean[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await step(a, ha, T0 + SEC + MIN + i);
        ha = r.next;
        later.push(r.exceeded);
      }
      expect(later).toEqual([false, false, false, true]);
      // without a limit nothing is counted or reported
      for (let i = 0; i < 6; i++) {
        const next = hash();
        expect(await rotate(a, ha, next, T0 + 3 * MIN + i)).toEqual({ outcome: 'rotated', idleExpiresAt: T0 + 3 * MIN + i + IDLE });
        ha = next;
      }
    });
  });

  describe('recordLogin', () => {
    const login = (userId: string, deviceId: string, ip: string, now: number, keep = 3, forgetAfterMs = HOUR) =>
      store.recordLogin({ userId, sid: newSessionId(userId), deviceId, ip, now, keep, forgetAfterMs });
    const NOTHING_NEW = { newDevice: false, newIp: false };

    it('the first login is a baseline; a later unseen device or address is new, a seen one is not', async () => {
      expect(await login('alice', 'laptop', '203.0.113.7', T0)).toEqual(NOTHING_NEW);
      expect(await login('alice', 'laptop', '203.0.113.7', T0 + 1)).toEqual(NOTHING_NEW);
      expect(await login('alice', 'phone', '203.0.113.7', T0 + 2)).toEqual({ newDevice: true, newIp: false });
      expect(await login('alice', 'phone', '198.51.100.4', T0 + 3)).toEqual({ newDevice: false, newIp: true });
      expect(await login('alice', 'tablet', '2001:db8::1', T0 + 4)).toEqual({ newDevice: true, newIp: true });
      expect(await login('alice', 'laptop', '198.51.100.4', T0 + 5)).toEqual(NOTHING_NEW);
      // users are apart
      expect(await login('bob', 'laptop', '203.0.113.7', T0 + 6)).toEqual(NOTHING_NEW);
      expect(await login('bob', 'phone', '203.0.113.7', T0 + 7)).toEqual({ newDevice: true, newIp: false });
    });

    it('an empty device id or address is not compared and does not start a baseline', async () => {
      expect(await login('carol', '', '', T0)).toEqual(NOTHING_NEW);
      expect(await login('carol', 'laptop', '', T0 + 1)).toEqual(NOTHING_NEW);
      expect(await login('carol', '', '203.0.113.7', T0 + 2)).toEqual(NOTHING_NEW);
      expect(await login('carol', 'phone', '', T0 + 3)).toEqual({ newDevice: true, newIp: false });
      expect(await login('carol', '', '198.51.100.4', T0 + 4)).toEqual({ newDevice: false, newIp: true });
    });

    it('keeps only the most recent `keep` of each, and forgets what was not seen for forgetAfterMs', async () => {
      await login('dora', 'd1', '', T0);
      await login('dora', 'd2', '', T0 + 1);
      await login('dora', 'd3', '', T0 + 2);
      await login('dora', 'd1', '', T0 + 3); // d1 is the most recent again; d2 the oldest
      expect(await login('dora', 'd4', '', T0 + 4)).toEqual({ newDevice: true, newIp: false }); // pushes d2 out
      expect(await login('dora', 'd1', '', T0 + 5)).toEqual(NOTHING_NEW);
      expect(await login('dora', 'd2', '', T0 + 6)).toEqual({ newDevice: true, newIp: false });
      // an hour after its last sighting a device is forgotten: new again
      expect(await login('dora', 'd1', '', T0 + 5 + HOUR - 1)).toEqual(NOTHING_NEW);
      expect(await login('dora', 'd4', '', T0 + 4 + HOUR)).toEqual({ newDevice: true, newIp: false });
    });
  });

  describe('countLiveSessions', () => {
    it('counts the live sessions of every user', async () => {
      expect(await store.countLiveSessions(T0, MIN)).toBe(0);
      // The count just made is fresh for a minute: start over (one key per call, they live in two slots).
      for (const key of ['sessions', 'counting']) await fixture.admin?.().del(`${PREFIX}:stats:${key}`);
      const a = newSession('alice', T0);
      for (const s of [a, newSession('alice', T0), newSession('bob', T0), newSession('carol', T0)]) await create(s, hash());
      await store.endSessions({ userId: 'alice', target: { kind: 'one', sid: a.sid }, reason: REASON.USER, now: T0 + 1, coverUntil: T0 + COVER, requireOwnership: true });
      await store.revokeToken({ userId: 'bob', sid: newSessionId('bob'), jti: 'j', reason: 1, now: T0, coverUntil: T0 + COVER });
      expect(await store.countLiveSessions(T0 + 2, MIN)).toBe(3);
    });

    if (fixture.name !== 'memory') {
      it('redis: a fresh count is shared by every replica; one replica at a time recounts', async () => {
        const other = (await fixture.open({ flush: false })).store;
        try {
          await create(newSession('alice', T0), hash());
          expect(await store.countLiveSessions(T0, 200)).toBe(1);
          await create(newSession('bob', T0), hash());
          // younger than maxAgeMs: the stored count, on this replica and on another
          expect(await store.countLiveSessions(T0 + 100, 200)).toBe(1);
          expect(await other.countLiveSessions(T0 + 100, 200)).toBe(1);
          // stale, but the first counter still holds the lock (200 ms, real time): the last count
          expect(await other.countLiveSessions(T0 + 300, 200)).toBe(1);
          await sleep(250);
          expect(await other.countLiveSessions(T0 + 400, 200)).toBe(2);
          expect(await store.countLiveSessions(T0 + 500, 200)).toBe(2);
        } finally {
          await other.close();
        }
      });
    } else {
      it('memory: sessions past their idle or absolute expiry are not counted', async () => {
        await create(newSession('alice', T0, { idle: MIN }), hash());
        await create(newSession('bob', T0), hash());
        expect(await store.countLiveSessions(T0 + MIN - 1, MIN)).toBe(2);
        expect(await store.countLiveSessions(T0 + MIN, MIN)).toBe(1);
      });
    }
  });

  describe('outbox', () => {
    const drain = async (s: SessionStore = store) => {
      const batch = await s.readOutbox(1000);
      await batch.ack(batch.events.map((e) => e.id));
      return batch.events.map(({ id, ...rest }) => rest);
    };

    it('records each kind of revocation in the same step, with unique ids', async () => {
      const a1 = newSession('alice', T0);
      const a2 = newSession('alice', T0);
      const a3 = newSession('alice', T0);
      for (const s of [a1, a2, a3]) await create(s, hash());
      expect(await drain()).toEqual([]);

      await store.revokeToken({ userId: 'alice', sid: a1.sid, jti: 'jti-1', reason: REASON.ADMIN, now: T0 + 1, coverUntil: T0 + COVER });
      expect(await drain()).toEqual([
        { type: 'token_revoked', userId: 'alice', sid: a1.sid, jti: 'jti-1', reason: REASON.ADMIN, at: T0 + 1, expiresAt: T0 + COVER },
      ]);

      await store.endSessions({ userId: 'alice', target: { kind: 'allExcept', sid: a1.sid }, reason: REASON.USER, now: T0 + 2, coverUntil: T0 + COVER, requireOwnership: false });
      const others = await drain();
      expect(others.map((e) => e.sid).sort()).toEqual([a2.sid, a3.sid].sort());
      for (const e of others) expect(e).toEqual({ type: 'session_revoked', userId: 'alice', sid: e.sid, reason: REASON.USER, at: T0 + 2, expiresAt: T0 + COVER });

      await store.endSessions({ userId: 'alice', target: { kind: 'all' }, reason: REASON.ADMIN, now: T0 + 3, coverUntil: T0 + COVER, requireOwnership: false });
      expect(await drain()).toEqual([
        { type: 'user_revoked', userId: 'alice', notBefore: T0 / 1000 + 1, reason: REASON.ADMIN, at: T0 + 3, expiresAt: T0 + COVER },
      ]);
    });

    it('records reuse as a session revocation plus a security event; grace and unknown record nothing', async () => {
      const a = newSession('alice', T0);
      const [h0, h1] = [hash(), hash()];
      await create(a, h0);
      await rotate(a, h0, h1, T0 + SEC);
      expect(await reuse(a, h0, T0 + SEC + 1)).toBe('grace');
      expect(await reuse(a, hash(), T0 + SEC + 2)).toBe('unknown');
      expect(await drain()).toEqual([]);
      expect(await reuse(a, h0, T0 + SEC + GRACE + 1)).toBe('revoked');
      const at = T0 + SEC + GRACE + 1;
      expect(await drain()).toEqual([
        { type: 'session_revoked', userId: 'alice', sid: a.sid, reason: REASON.REUSE, at, expiresAt: at + COVER },
        { type: 'refresh_reuse', userId: 'alice', sid: a.sid, reason: REASON.REUSE, at, expiresAt: at + COVER },
      ]);
    });

    it('records refresh_rate_exceeded once per window, and new_device_login with what was new', async () => {
      const a = newSession('alice', T0);
      let h = hash();
      await create(a, h);
      for (let i = 1; i <= 4; i++) {
        const next = hash();
        await rotate(a, h, next, T0 + i, { refreshRate: { limit: 2, windowMs: MIN } });
        h = next;
      }
      expect(await drain()).toEqual([
        { type: 'refresh_rate_exceeded', userId: 'alice', sid: a.sid, reason: 0, at: T0 + 3, expiresAt: T0 + 3, count: 3, windowMs: MIN },
      ]);

      const sid = newSessionId('alice');
      const login = (deviceId: string, ip: string, now: number) => store.recordLogin({ userId: 'alice', sid, deviceId, ip, now, keep: 5, forgetAfterMs: HOUR });
      await login('laptop', '203.0.113.7', T0);
      expect(await drain()).toEqual([]);
      await login('phone', '203.0.113.7', T0 + 1);
      await login('phone', '198.51.100.4', T0 + 2);
      await login('tablet', '2001:db8::1', T0 + 3);
      expect(await drain()).toEqual([
        { type: 'new_device_login', userId: 'alice', sid, reason: 0, at: T0 + 1, expiresAt: T0 + 1, deviceId: 'phone' },
        { type: 'new_device_login', userId: 'alice', sid, reason: 0, at: T0 + 2, expiresAt: T0 + 2, ip: '198.51.100.4' },
        { type: 'new_device_login', userId: 'alice', sid, reason: 0, at: T0 + 3, expiresAt: T0 + 3, deviceId: 'tablet', ip: '2001:db8::1' },
      ]);
    });

    it('keeps what was not acknowledged', async () => {
      for (const jti of ['j1', 'j2', 'j3']) {
        await store.revokeToken({ userId: 'bob', sid: newSessionId('bob'), jti, reason: 1, now: T0, coverUntil: T0 + COVER });
      }
      const first = await store.readOutbox(10);
      expect(first.events.map((e) => e.jti)).toEqual(['j1', 'j2', 'j3']);
      expect(new Set(first.events.map((e) => e.id)).size).toBe(3);
      await first.ack([first.events[1]!.id]);
      const second = await store.readOutbox(10);
      expect(second.events.map((e) => e.jti)).toEqual(['j1', 'j3']);
      expect(second.events.map((e) => e.id)).toEqual([first.events[0]!.id, first.events[2]!.id]);
      await second.ack(second.events.map((e) => e.id));
      expect((await store.readOutbox(10)).events).toEqual([]);
    });

    it('hands recorded events to watchers at once; acknowledging through them empties the outbox', async () => {
      const seen: OutboxBatch[] = [];
      const unwatch = store.watchOutbox((b) => seen.push(b));
      const a = newSession('dora', T0);
      await create(a, hash());
      await store.revokeToken({ userId: 'dora', sid: a.sid, jti: 'jd', reason: 1, now: T0, coverUntil: T0 + COVER });
      await store.endSessions({ userId: 'dora', target: { kind: 'one', sid: a.sid }, reason: 2, now: T0, coverUntil: T0 + COVER, requireOwnership: true });
      await sleep(0);
      expect(seen.flatMap((b) => b.events.map((e) => e.type))).toEqual(['token_revoked', 'session_revoked']);
      const pending = await store.readOutbox(10);
      expect(pending.events.map((e) => e.id)).toEqual(seen.flatMap((b) => b.events.map((e) => e.id)));
      for (const b of seen) await b.ack(b.events.map((e) => e.id));
      expect((await store.readOutbox(10)).events).toEqual([]);
      unwatch();
      await store.revokeToken({ userId: 'dora', sid: a.sid, jti: 'je', reason: 1, now: T0, coverUntil: T0 + COVER });
      await sleep(0);
      expect(seen).toHaveLength(2);
    });

    it('records nothing when the outbox is off', async () => {
      await store.close();
      ({ store } = await fixture.open({ outbox: false }));
      const a = newSession('alice', T0);
      await create(a, hash());
      await store.revokeToken({ userId: 'alice', sid: a.sid, jti: 'j', reason: 1, now: T0, coverUntil: T0 + COVER });
      await store.endSessions({ userId: 'alice', target: { kind: 'all' }, reason: 1, now: T0, coverUntil: T0 + COVER, requireOwnership: false });
      expect((await store.readOutbox(10)).events).toEqual([]);
    });
  });

  if (!fixture.admin || !fixture.outage) return;
  const { outage } = fixture;

  describe('redis: outbox durability', () => {
    it('a new client sees what an old one recorded, and the sweep finds outboxes whose mark was lost', async () => {
      const admin = fixture.admin!();
      await store.revokeToken({ userId: 'carol', sid: newSessionId('carol'), jti: 'jc', reason: 1, now: T0, coverUntil: T0 + COVER });
      await store.close();
      let reopened = (await fixture.open({ flush: false })).store;
      expect((await reopened.readOutbox(10)).events.map((e) => e.jti)).toEqual(['jc']);
      // A process that died between its script and the SADD leaves no mark.
      await admin.del(`${PREFIX}:outbox`);
      await reopened.close();
      reopened = (await fixture.open({ flush: false })).store;
      expect((await reopened.readOutbox(10)).events).toEqual([]); // lost track of
      await reopened.sweepOutbox();
      const batch = await reopened.readOutbox(10);
      expect(batch.events.map((e) => e.jti)).toEqual(['jc']);
      await batch.ack(batch.events.map((e) => e.id));
      expect(await admin.exists(`${PREFIX}:{${userTag('carol')}}:o`)).toBe(0);
      expect(await admin.smembers(`${PREFIX}:outbox`)).toEqual([]);
      store = reopened;
    });
  });

  describe('redis: errors', () => {
    it('a rejected command fails with internal, and its cause carries no command arguments to the logs', async () => {
      const user = 'dora';
      const sid = newSessionId(user);
      // A session key of the wrong type makes the rotation script fail.
      await fixture.admin!().set(`${PREFIX}:{${tagOfSessionId(sid)}}:s:${localPartOfSessionId(sid)}`, 'not a hash');
      const secretLike = Buffer.alloc(16, 0xab);
      const error = await store.rotateRefresh({
        sid, userId: user, expected: secretLike, next: secretLike, sealedSuccessor: secretLike, issuedAt: 1,
        now: T0, graceMs: 1000, idleTimeoutMs: 60_000, historySize: 2,
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'internal' });
      const cause = (error as { cause: Error }).cause;
      expect(cause.message).toMatch(/WRONGTYPE|user_script/);
      expect(Object.keys(cause)).not.toContain('command');
      expect(JSON.stringify(pino.stdSerializers.err(cause))).not.toContain('abab');
    });
  });

  if (fixture.name === 'redis-cluster') describe('redis cluster', () => {
    const keyOf = (userId: string) => `${PREFIX}:{${userTag(userId)}}:i`;
    /** `perMaster` users on each of the three masters, found by asking the cluster where their keys live. */
    const usersOnEveryMaster = async (perMaster: number): Promise<string[]> => {
      const byPort = new Map<number, string[]>();
      for (let i = 0; [...byPort.values()].filter((u) => u.length >= perMaster).length < 3; i++) {
        const userId = `spread-${i}`;
        const { port } = await cluster.nodeFor(keyOf(userId));
        const list = byPort.get(port) ?? [];
        if (list.length < perMaster) byPort.set(port, [...list, userId]);
      }
      return [...byPort.values()].flat();
    };

    it('the test cluster refuses a script that reaches into a second slot, so passing here means one slot per script', async () => {
      const clusterAdmin = fixture.admin!() as Cluster;
      await expect(clusterAdmin.eval("return redis.call('SET', KEYS[1], '1')", 1, `${PREFIX}:{a}:x`)).resolves.toBe('OK');
      await expect(clusterAdmin.eval("redis.call('SET', KEYS[1], '1'); return redis.call('SET', KEYS[2], '1')", 2, `${PREFIX}:{a}:x`, `${PREFIX}:{b}:x`))
        .rejects.toThrow(/CROSSSLOT/);
      // A key named inside the script (as end-sessions.lua and list.lua do) is checked too.
      await expect(clusterAdmin.eval("return redis.call('SET', ARGV[1], '1')", 1, `${PREFIX}:{a}:x`, `${PREFIX}:{b}:x`))
        .rejects.toThrow(/Script attempted to access (keys that do not hash to the same slot|a non local key)/);
    });

    it('operations for users on every master, issued in one tick, all succeed (auto-pipelined per node)', async () => {
      const users = await usersOnEveryMaster(20);
      const sessions = users.map((u) => newSession(u, T0));
      const h0 = sessions.map(() => hash());
      const h1 = sessions.map(() => hash());
      expect(await Promise.all(sessions.map((s, i) => create(s, h0[i]!)))).toEqual(sessions.map(() => undefined));
      expect(await Promise.all(sessions.map((s, i) => rotate(s, h0[i]!, h1[i]!, T0 + SEC)))).toEqual(
        sessions.map(() => ({ outcome: 'rotated', idleExpiresAt: T0 + SEC + IDLE })),
      );
      const snaps = await Promise.all(sessions.map((s) => store.getSession(s.sid, T0 + 2 * SEC)));
      expect(snaps.map((x) => x!.refresh.current)).toEqual(h1);
      expect(await Promise.all(users.map((u) => sids(u, T0 + 2 * SEC)))).toEqual(sessions.map((s) => [s.sid]));
      const ended = await Promise.all(users.map((userId) =>
        store.endSessions({ userId, target: { kind: 'all' }, reason: REASON.ADMIN, now: T0 + 3 * SEC, coverUntil: T0 + COVER, requireOwnership: false })));
      expect(ended).toEqual(sessions.map((s) => ({ found: true, ended: [s.sid], absoluteExpiresAt: [s.absoluteExpiresAt] })));
      // Tokens issued before the global logout's whole second are refused.
      const checks = await Promise.all(sessions.map((s) => check(s, T0 + 4 * SEC, { issuedAt: T0 / SEC + 3 })));
      expect(checks).toEqual(sessions.map(() => ({ revoked: true, reason: REASON.ADMIN })));
      const batch = await store.readOutbox(1000);
      expect(batch.events.map((e) => e.userId).sort()).toEqual([...users].sort());
    });

    it('sweepOutbox finds lost outboxes on every master', async () => {
      const admin = fixture.admin!();
      const users = await usersOnEveryMaster(2);
      for (const userId of users) {
        await store.revokeToken({ userId, sid: newSessionId(userId), jti: `j-${userId}`, reason: 1, now: T0, coverUntil: T0 + COVER });
      }
      await admin.del(`${PREFIX}:outbox`);
      expect((await store.readOutbox(100)).events).toEqual([]);
      await store.sweepOutbox();
      const batch = await store.readOutbox(100);
      expect(batch.events.map((e) => e.jti).sort()).toEqual(users.map((u) => `j-${u}`).sort());
      await batch.ack(batch.events.map((e) => e.id));
      for (const userId of users) expect(await admin.exists(`${PREFIX}:{${userTag(userId)}}:o`)).toBe(0);
      expect(await admin.smembers(`${PREFIX}:outbox`)).toEqual([]);
    });

    it('scripts come back on every node after SCRIPT FLUSH (EVALSHA, NOSCRIPT, EVAL per node)', async () => {
      const users = await usersOnEveryMaster(1);
      const sessions = users.map((u) => newSession(u, T0));
      const h0 = sessions.map(() => hash());
      for (const [i, s] of sessions.entries()) await create(s, h0[i]!);
      const masters = (fixture.admin!() as Cluster).nodes('master');
      expect(masters).toHaveLength(3);
      await Promise.all(masters.map((m) => m.script('FLUSH')));
      for (const [i, s] of sessions.entries()) {
        expect(await rotate(s, h0[i]!, hash(), T0 + SEC)).toMatchObject({ outcome: 'rotated' });
        expect((await check(s, T0 + 2 * SEC)).revoked).toBe(false);
      }
    });

    it('one master down: its users get store_unavailable within ~2 s, the others keep working; it serves again after a restart', async () => {
      const [alice, bob] = await (async () => {
        const users = await usersOnEveryMaster(1);
        return [users[0]!, users[1]!];
      })();
      const down = await cluster.nodeFor(keyOf(alice));
      const a = newSession(alice, T0);
      const b = newSession(bob, T0);
      const [ha, hb] = [hash(), hash()];
      await create(a, ha);
      await create(b, hb);
      await down.kill();
      try {
        for (const [name, call] of [
          ['getSession', () => store.getSession(a.sid, T0 + 1)],
          ['createSession', () => store.createSession(newSession(alice, T0), hash(), T0)],
          ['rotateRefresh', () => rotate(a, ha, hash(), T0 + 1)],
        ] as const) {
          const started = Date.now();
          const err = await call().then(() => undefined, (e: unknown) => e);
          expect((err as AuthorityError | undefined)?.code, name).toBe('store_unavailable');
          expect(Date.now() - started, name).toBeLessThan(2000);
        }
        await store.ping(); // some master answers
        const next = hash();
        expect(await rotate(b, hb, next, T0 + 1)).toMatchObject({ outcome: 'rotated' });
        expect((await store.getSession(b.sid, T0 + 2))!.refresh.current).toEqual(next);
      } finally {
        await down.restart();
      }
      await cluster.waitHealthy();
      const again = newSession(alice, T0);
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          await create(again, hash());
          break;
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await sleep(100);
        }
      }
      // The restarted master is empty (no persistence) and loads the scripts again.
      expect(await store.getSession(a.sid, T0 + 2)).toBeUndefined();
      expect(await sids(alice, T0 + 2)).toEqual([again.sid]);
    });
  });

  if (fixture.name === 'redis') describe('redis: cluster safety', () => {
    it('every operation touches keys of exactly one hash slot (MONITOR, script-internal commands included)', async () => {
      const monitor = await admin.monitor();
      const seen: { args: string[]; source: string }[] = [];
      monitor.on('monitor', (_time: string, args: string[], source: string) => seen.push({ args, source }));
      let marker = 0;
      try {
        /** Runs op and returns every key any command it caused named (found with COMMAND GETKEYS). */
        const keysOf = async (op: () => Promise<unknown>): Promise<{ keys: string[]; sources: Set<string> }> => {
          seen.length = 0;
          await op();
          const m = `marker-${++marker}`;
          await admin.echo(m);
          const deadline = Date.now() + 5000;
          while (!seen.some((e) => e.args[0].toLowerCase() === 'echo' && e.args[1] === m)) {
            if (Date.now() > deadline) throw new Error('MONITOR did not see the marker');
            await sleep(5);
          }
          const mine = seen.slice(0, seen.findIndex((e) => e.args[1] === m));
          const keys: string[] = [];
          for (const e of mine) {
            try {
              keys.push(...((await admin.call('COMMAND', 'GETKEYS', ...e.args)) as string[]));
            } catch {
              // a command without keys
            }
          }
          return { keys, sources: new Set(mine.map((e) => (e.source === 'lua' ? 'lua' : 'client'))) };
        };
        const sameSlot = async (label: string, op: () => Promise<unknown>, tag?: string) => {
          const found = await keysOf(op);
          // The outbox's dirty set is its own slot by design, written by a separate
          // single-key SADD after the script (see RedisSessionStore).
          const keys = found.keys.filter((k) => k !== `${PREFIX}:outbox`);
          const { sources } = found;
          expect(keys.length, label).toBeGreaterThan(0);
          expect(new Set(keys.map(hashTag)), `${label}: ${keys.join(' ')}`).toEqual(new Set([tag ?? hashTag(keys[0])]));
          return { keys, sources };
        };

        const a1 = newSession('alice', T0);
        const a2 = newSession('alice', T0);
        const b = newSession('bob', T0);
        const tagA = userTag('alice');
        const [h0, h1, h2] = [hash(), hash(), hash()];
        const created = await sameSlot('createSession', () => store.createSession(a1, h0, T0), tagA);
        // script-internal commands are visible, so the check covers what the scripts do
        expect(created.sources).toEqual(new Set(['client', 'lua']));
        expect(created.keys).toContain(`${PREFIX}:{${tagA}}:s:${a1.sid.slice(tagA.length)}`);
        await sameSlot('createSession 2', () => store.createSession(a2, hash(), T0), tagA);
        await sameSlot('createSession bob', () => store.createSession(b, hash(), T0), userTag('bob'));
        await sameSlot('getSession', () => store.getSession(a1.sid, T0 + 1), tagA);
        await sameSlot('rotateRefresh', () => rotate(a1, h0, h1, T0 + 2), tagA);
        await sameSlot('rotateRefresh conflict', () => rotate(a1, h0, h2, T0 + 3), tagA);
        await sameSlot('getSession with sealed', () => store.getSession(a1.sid, T0 + 4), tagA);
        await sameSlot('revokeOnReuse grace', () => reuse(a1, h0, T0 + 5), tagA);
        await sameSlot('revokeOnReuse unknown', () => reuse(a1, hash(), T0 + 6), tagA);
        await sameSlot('checkToken touch', () => check(a1, T0 + 2 * TOUCH), tagA);
        await sameSlot('revokeToken', () => store.revokeToken({ userId: 'alice', sid: a2.sid, jti: 'j', reason: 1, now: T0, coverUntil: T0 + COVER }), tagA);
        await sameSlot('checkToken revoked', () => check(a2, T0 + 7, { jti: 'j' }), tagA);
        await sameSlot('listSessions', () => store.listSessions('alice', T0 + 8), tagA);
        const codeHash = hash();
        await sameSlot('putHandoff', () => store.putHandoff({ sid: a1.sid, codeHash, sealed: sealed(), now: T0 + 8, expiresAt: T0 + 8 + MIN }), tagA);
        await sameSlot('takeHandoff', () => store.takeHandoff({ sid: a1.sid, codeHash, now: T0 + 8 }), tagA);
        await store.putHandoff({ sid: a2.sid, codeHash, sealed: sealed(), now: T0 + 8, expiresAt: T0 + 8 + MIN });
        // Ownership is decided from the ids alone: a foreign session touches no key at all.
        expect((await keysOf(() => store.endSessions({ userId: 'alice', target: { kind: 'one', sid: b.sid }, reason: 1, now: T0 + 9, coverUntil: T0 + COVER, requireOwnership: true }))).keys).toEqual([]);
        await sameSlot('revokeOnReuse revoked', () => reuse(a1, h0, T0 + GRACE + 10), tagA);
        await sameSlot('endSessions allExcept', () => store.endSessions({ userId: 'alice', target: { kind: 'allExcept', sid: 'x'.repeat(32) }, reason: 1, now: T0 + 11, coverUntil: T0 + COVER, requireOwnership: false }), tagA);
        await sameSlot('endSessions one', () => store.endSessions({ userId: 'bob', target: { kind: 'one', sid: b.sid }, reason: 1, now: T0 + 12, coverUntil: T0 + COVER, requireOwnership: true }), userTag('bob'));
        await sameSlot('endSessions one, admin, unknown user', () => store.endSessions({ userId: '', target: { kind: 'one', sid: newSessionId('carol') }, reason: 1, now: T0 + 13, coverUntil: T0 + COVER, requireOwnership: false }), userTag('carol'));
        await sameSlot('endSessions all', () => store.endSessions({ userId: 'alice', target: { kind: 'all' }, reason: 1, now: T0 + 14, coverUntil: T0 + COVER, requireOwnership: false }), tagA);
        await sameSlot('createSession after all', () => store.createSession(newSession('alice', T0 + 15), hash(), T0 + 15), tagA);
        const a3 = newSession('alice', T0 + 16);
        const h3 = hash();
        await store.createSession(a3, h3, T0 + 16);
        const h4 = hash();
        await sameSlot('rotateRefresh counted', () => rotate(a3, h3, h4, T0 + 17, { refreshRate: { limit: 1, windowMs: MIN } }), tagA);
        const exceeded = await sameSlot('rotateRefresh counted, rate exceeded', () => rotate(a3, h4, hash(), T0 + 18, { refreshRate: { limit: 1, windowMs: MIN } }), tagA);
        expect(exceeded.keys).toContain(`${PREFIX}:{${tagA}}:o`);
        await sameSlot('recordLogin', () => store.recordLogin({ userId: 'alice', sid: a3.sid, deviceId: 'd', ip: '203.0.113.7', now: T0, keep: 3, forgetAfterMs: HOUR }), tagA);
        await sameSlot('recordLogin, new device', () => store.recordLogin({ userId: 'alice', sid: a3.sid, deviceId: 'e', ip: '203.0.113.8', now: T0 + 1, keep: 3, forgetAfterMs: HOUR }), tagA);
        await sameSlot('addSigningKey', () => store.addSigningKey(signingKey('k')));
        await sameSlot('updateSigningKey', () => store.updateSigningKey(signingKey('k')));
        await sameSlot('listSigningKeys', () => store.listSigningKeys());
        await sameSlot('removeSigningKey', () => store.removeSigningKey('k'));

        // every key the store wrote carries a user's tag (or is the signing-key hash)
        const all = (await admin.keys('*')).filter((k) => k !== `${PREFIX}:keys`);
        expect(all.length).toBeGreaterThan(0);
        for (const k of all) expect(k).toMatch(new RegExp(`^${PREFIX}:(\\{[A-Za-z0-9_-]{16}\\}:([sgrjh]:[A-Za-z0-9_-]+|i|n|o|d)|outbox|keys)$`));
      } finally {
        monitor.disconnect();
      }
    });
  });

  describe('redis: availability', () => {
    // Last in the file: it kills and restarts the shared redis-server (every cluster master).
    it('rejects with store_unavailable within ~2 s while redis is down, and recovers with the same client', async () => {
      const s = newSession('alice', T0);
      const h = hash();
      await store.createSession(s, h, T0);
      await outage.down();

      const calls: [string, () => Promise<unknown>][] = [
        ['ping', () => store.ping()],
        ['getSession', () => store.getSession(s.sid, T0 + 1)],
        ['createSession', () => store.createSession(newSession('alice', T0), hash(), T0)],
        ['rotateRefresh', () => rotate(s, h, hash(), T0 + 1)],
        ['checkToken', () => check(s, T0 + 1)],
        ['revokeToken', () => store.revokeToken({ userId: 'alice', sid: s.sid, jti: 'j', reason: 1, now: T0, coverUntil: T0 + COVER })],
        ['endSessions', () => store.endSessions({ userId: 'alice', target: { kind: 'all' }, reason: 1, now: T0, coverUntil: T0 + COVER, requireOwnership: false })],
        ['listSessions', () => store.listSessions('alice', T0)],
        ['listSigningKeys', () => store.listSigningKeys()],
      ];
      for (const [name, call] of calls) {
        const started = Date.now();
        const err = await call().then(() => undefined, (e: unknown) => e);
        const took = Date.now() - started;
        expect(err, name).toBeInstanceOf(AuthorityError);
        expect((err as AuthorityError).code, name).toBe('store_unavailable');
        expect(took, name).toBeLessThan(2000);
      }

      await outage.up();
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          await store.ping();
          break;
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await sleep(100);
        }
      }
      // A Cluster answers a node's PING before it has refreshed its slots and
      // calls itself ready: the same client must get there, not at the same instant.
      await until(() => client!.status === 'ready', 5000, 'the same client ready again');
      // persistence is off: the restarted server is empty; scripts reload on the new connection
      expect(await store.getSession(s.sid, T0 + 1)).toBeUndefined();
      const again = newSession('alice', T0);
      const h2 = hash();
      expect(await store.createSession(again, h2, T0)).toBeUndefined();
      expect(await rotate(again, h2, hash(), T0 + 1)).toMatchObject({ outcome: 'rotated' });
      expect(await sids('alice', T0 + 2)).toEqual([again.sid]);
      expect(await store.addSigningKey(signingKey('k'))).toBe(true);
    });
  });
});
