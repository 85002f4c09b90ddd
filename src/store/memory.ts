import { secureRandomBytes } from "../shared/random.js";
import type {
  CheckInput, HandoffInput, OutboxBatch, OutboxEvent, CheckResult, EndSessionsInput, EndSessionsResult, LoginNovelty, LoginSighting,
  ReasonCode, ReuseInput, ReuseResult, RotateInput, RotateResult, SessionSnapshot, SessionStore, StoredSession, StoredSigningKey,
} from "./session-store.js";

interface Entry {
  session: StoredSession;
  current: Buffer;
  history: Buffer[];
  rotatedAt: number;
  sealed?: { value: Buffer; until: number };
  /** Rotations counted in the current refresh-rate window. */
  rate?: { start: number; count: number };
}

interface Expiring<T> {
  value: T;
  until: number;
}

/**
 * The embedded store: everything in this process's memory, lost on exit. It is
 * the zero-setup default for development and single-node use; the same contract
 * tests run against it and Redis. Each method runs synchronously inside one
 * macrotask, which is what makes it atomic.
 */
export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, Entry>();
  private readonly byUser = new Map<string, Set<string>>();
  private readonly revokedTokens = new Map<string, Expiring<ReasonCode>>();
  private readonly revokedSessions = new Map<string, Expiring<ReasonCode>>();
  private readonly userNotBefore = new Map<string, Expiring<{ nbf: number; reason: ReasonCode }>>();
  private readonly keys = new Map<string, StoredSigningKey>();
  /** By sid + code hash. */
  private readonly handoffs = new Map<string, Expiring<Buffer>>();
  /** Per user: device ids and addresses by when they were last seen (insertion order = recency). */
  private readonly sightings = new Map<string, { devices: Map<string, number>; ips: Map<string, number>; until: number }>();
  private readonly outbox: OutboxEvent[] = [];
  private readonly watchers = new Set<(batch: OutboxBatch) => void>();
  private readonly emit: boolean;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: { outbox?: boolean; sweepIntervalMs?: number; wallClock?: () => number } = {}) {
    this.emit = options.outbox ?? false;
    const wallClock = options.wallClock ?? Date.now;
    // Expired entries are invisible at once; the sweep only bounds memory.
    this.sweeper = setInterval(() => this.sweep(wallClock()), options.sweepIntervalMs ?? 60_000).unref();
  }

  async createSession(session: StoredSession, refreshHash: Buffer, now: number): Promise<number | undefined> {
    this.sessions.set(session.sid, { session: { ...session }, current: refreshHash, history: [], rotatedAt: now });
    let set = this.byUser.get(session.userId);
    if (!set) this.byUser.set(session.userId, (set = new Set()));
    set.add(session.sid);
    return this.live(this.userNotBefore, session.userId, now)?.nbf;
  }

  async getSession(sid: string, now: number): Promise<SessionSnapshot | undefined> {
    const entry = this.liveSession(sid, undefined, now);
    if (!entry) return undefined;
    const userId = entry.session.userId;
    return {
      session: { ...entry.session },
      refresh: {
        current: entry.current,
        history: [...entry.history],
        rotatedAt: entry.rotatedAt,
        sealedSuccessor: entry.sealed && entry.sealed.until > now ? entry.sealed.value : undefined,
      },
      userNotBefore: this.live(this.userNotBefore, userId, now)?.nbf,
    };
  }

  async rotateRefresh(input: RotateInput): Promise<RotateResult> {
    const entry = this.liveSession(input.sid, input.userId, input.now);
    if (!entry) return { outcome: "gone" };
    if (!entry.current.equals(input.expected)) return { outcome: "conflict" };
    const nbf = this.live(this.userNotBefore, input.userId, input.now)?.nbf;
    if (nbf !== undefined && input.issuedAt < nbf) return { outcome: "conflict" };
    entry.history = [entry.current, ...entry.history].slice(0, input.historySize);
    entry.current = input.next;
    entry.rotatedAt = input.now;
    entry.sealed = input.graceMs > 0 ? { value: input.sealedSuccessor, until: input.now + input.graceMs } : undefined;
    const s = entry.session;
    s.lastActivityAt = input.now;
    s.idleExpiresAt = Math.min(input.now + input.idleTimeoutMs, s.absoluteExpiresAt);
    const rate = input.refreshRate;
    if (rate && rate.limit > 0) {
      // Windows start on a whole second, as the Redis store keeps them.
      if (!entry.rate || input.now - entry.rate.start >= rate.windowMs) entry.rate = { start: Math.floor(input.now / 1000) * 1000, count: 0 };
      if (++entry.rate.count === rate.limit + 1) {
        this.record({
          type: "refresh_rate_exceeded", userId: input.userId, sid: input.sid, reason: 0, at: input.now, expiresAt: input.now,
          count: entry.rate.count, windowMs: rate.windowMs,
        });
        return { outcome: "rotated", idleExpiresAt: s.idleExpiresAt, rateExceeded: true };
      }
    }
    return { outcome: "rotated", idleExpiresAt: s.idleExpiresAt };
  }

  async revokeOnReuse(input: ReuseInput): Promise<ReuseResult> {
    const entry = this.liveSession(input.sid, input.userId, input.now);
    if (!entry) return "unknown";
    const index = entry.history.findIndex((h) => h.equals(input.presented));
    if (index < 0) return "unknown";
    if (index === 0 && input.now - entry.rotatedAt <= input.graceMs && entry.sealed && entry.sealed.until > input.now) return "grace";
    this.dropSession(input.sid, input.userId);
    this.revokedSessions.set(input.sid, { value: input.reason, until: input.coverUntil });
    const event = { userId: input.userId, sid: input.sid, reason: input.reason, at: input.now, expiresAt: input.coverUntil };
    this.record({ type: "session_revoked", ...event });
    this.record({ type: "refresh_reuse", ...event });
    return "revoked";
  }

  async endSessions(input: EndSessionsInput): Promise<EndSessionsResult> {
    const { userId, target, now } = input;
    const mine = [...(this.byUser.get(userId) ?? [])].filter((sid) => this.liveSession(sid, userId, now));
    const absoluteOf = (sid: string) => this.sessions.get(sid)!.session.absoluteExpiresAt;
    if (target.kind === "one") {
      const live = mine.includes(target.sid);
      if (!live && input.requireOwnership) return { ended: [], absoluteExpiresAt: [], found: false };
      const absoluteExpiresAt = live ? [absoluteOf(target.sid)] : [];
      if (live) this.dropSession(target.sid, userId);
      this.revokedSessions.set(target.sid, { value: input.reason, until: input.coverUntil });
      this.record({ type: "session_revoked", userId, sid: target.sid, reason: input.reason, at: now, expiresAt: input.coverUntil });
      return { ended: live ? [target.sid] : [], absoluteExpiresAt, found: true };
    }
    const ended = target.kind === "all" ? mine : mine.filter((sid) => sid !== target.sid);
    const absoluteExpiresAt = ended.map(absoluteOf);
    for (const sid of ended) {
      this.dropSession(sid, userId);
      if (target.kind === "allExcept") {
        this.revokedSessions.set(sid, { value: input.reason, until: input.coverUntil });
        this.record({ type: "session_revoked", userId, sid, reason: input.reason, at: now, expiresAt: input.coverUntil });
      }
    }
    if (target.kind === "all") {
      const prev = this.live(this.userNotBefore, userId, now);
      const nbf = Math.max(Math.floor(now / 1000) + 1, prev?.nbf ?? 0);
      this.userNotBefore.set(userId, { value: { nbf, reason: input.reason }, until: input.coverUntil });
      this.record({ type: "user_revoked", userId, notBefore: nbf, reason: input.reason, at: now, expiresAt: input.coverUntil });
    }
    return { ended, absoluteExpiresAt, found: true };
  }

  async revokeToken(input: { userId: string; sid: string; jti: string; reason: ReasonCode; now: number; coverUntil: number }): Promise<void> {
    if (input.coverUntil <= input.now) return;
    this.revokedTokens.set(input.jti, { value: input.reason, until: input.coverUntil });
    this.record({ type: "token_revoked", userId: input.userId, sid: input.sid, jti: input.jti, reason: input.reason, at: input.now, expiresAt: input.coverUntil });
  }

  /** Nothing to repair: the in-memory outbox cannot lose track of entries. */
  async sweepOutbox(): Promise<void> {}

  async readOutbox(limit: number): Promise<OutboxBatch> {
    return this.batchOf(this.outbox.slice(0, limit));
  }

  watchOutbox(listener: (batch: OutboxBatch) => void): () => void {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  private batchOf(events: OutboxEvent[]): OutboxBatch {
    return {
      events,
      ack: async (ids) => {
        const done = new Set(ids);
        for (let i = this.outbox.length - 1; i >= 0; i--) if (done.has(this.outbox[i]!.id)) this.outbox.splice(i, 1);
      },
    };
  }


  async checkToken(input: CheckInput): Promise<CheckResult> {
    const { now } = input;
    const byToken = this.live(this.revokedTokens, input.jti, now);
    if (byToken !== undefined) return { revoked: true, reason: byToken };
    const bySession = this.live(this.revokedSessions, input.sid, now);
    if (bySession !== undefined) return { revoked: true, reason: bySession };
    const byUser = this.live(this.userNotBefore, input.userId, now);
    if (byUser && input.issuedAt < byUser.nbf) return { revoked: true, reason: byUser.reason };
    const entry = this.liveSession(input.sid, input.userId, now);
    if (entry && now - entry.session.lastActivityAt >= input.touchIntervalMs) {
      entry.session.lastActivityAt = now;
      entry.session.idleExpiresAt = Math.min(now + input.idleTimeoutMs, entry.session.absoluteExpiresAt);
    }
    return { revoked: false };
  }

  async listSessions(userId: string, now: number): Promise<StoredSession[]> {
    return [...(this.byUser.get(userId) ?? [])]
      .map((sid) => this.liveSession(sid, userId, now)?.session)
      .filter((s): s is StoredSession => s !== undefined)
      .sort((a, b) => expiry(a) - expiry(b))
      .map((s) => ({ ...s }));
  }

  async putHandoff(input: HandoffInput): Promise<void> {
    this.handoffs.set(handoffKey(input.sid, input.codeHash), { value: Buffer.from(input.sealed), until: input.expiresAt });
  }

  async takeHandoff(input: { sid: string; codeHash: Buffer; now: number }): Promise<Buffer | undefined> {
    const key = handoffKey(input.sid, input.codeHash);
    const sealed = this.live(this.handoffs, key, input.now);
    this.handoffs.delete(key);
    return sealed;
  }

  async recordLogin(input: LoginSighting): Promise<LoginNovelty> {
    let seen = this.sightings.get(input.userId);
    if (!seen) this.sightings.set(input.userId, (seen = { devices: new Map(), ips: new Map(), until: 0 }));
    seen.until = input.now + input.forgetAfterMs;
    const sight = (known: Map<string, number>, value: string): boolean => {
      if (!value) return false;
      for (const [v, at] of known) if (at <= input.now - input.forgetAfterMs) known.delete(v);
      const isNew = known.size > 0 && !known.has(value);
      known.delete(value);
      known.set(value, input.now);
      while (known.size > input.keep) known.delete(known.keys().next().value!);
      return isNew;
    };
    const novelty = { newDevice: sight(seen.devices, input.deviceId), newIp: sight(seen.ips, input.ip) };
    if (novelty.newDevice || novelty.newIp) {
      this.record({
        type: "new_device_login", userId: input.userId, sid: input.sid, reason: 0, at: input.now, expiresAt: input.now,
        ...(novelty.newDevice ? { deviceId: input.deviceId } : {}),
        ...(novelty.newIp ? { ip: input.ip } : {}),
      });
    }
    return novelty;
  }

  /** Counted directly: the sessions are all in this process. */
  async countLiveSessions(now: number): Promise<number> {
    let live = 0;
    for (const e of this.sessions.values()) if (now < expiry(e.session)) live++;
    return live;
  }

  async listSigningKeys(): Promise<StoredSigningKey[]> {
    return [...this.keys.values()].map((k) => ({ ...k }));
  }

  async addSigningKey(key: StoredSigningKey): Promise<boolean> {
    if (this.keys.has(key.kid)) return false;
    this.keys.set(key.kid, { ...key });
    return true;
  }

  async addFirstSigningKey(key: StoredSigningKey): Promise<boolean> {
    return this.keys.size === 0 && this.addSigningKey(key);
  }

  async updateSigningKey(key: StoredSigningKey): Promise<void> {
    this.keys.set(key.kid, { ...key });
  }

  async removeSigningKey(kid: string): Promise<void> {
    this.keys.delete(kid);
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /** Number of stored sessions, including expired ones not yet swept (for tests of the sweep). */
  get size(): number {
    return this.sessions.size;
  }

  private record(event: Omit<OutboxEvent, "id">): void {
    if (!this.emit) return;
    const recorded = { id: `${secureRandomBytes(12).toString("base64url")}.1`, ...event };
    this.outbox.push(recorded);
    // Told after the current operation completes, as the Redis store tells after its script.
    if (this.watchers.size) queueMicrotask(() => { for (const w of this.watchers) w(this.batchOf([recorded])); });
  }

  private liveSession(sid: string, userId: string | undefined, now: number): Entry | undefined {
    const entry = this.sessions.get(sid);
    if (!entry || (userId !== undefined && entry.session.userId !== userId)) return undefined;
    if (now >= expiry(entry.session)) {
      this.dropSession(sid, entry.session.userId);
      return undefined;
    }
    return entry;
  }

  private dropSession(sid: string, userId: string): void {
    this.sessions.delete(sid);
    const set = this.byUser.get(userId);
    set?.delete(sid);
    if (set?.size === 0) this.byUser.delete(userId);
  }

  private live<K, T>(map: Map<K, Expiring<T>>, key: K, now: number): T | undefined {
    const e = map.get(key);
    if (!e) return undefined;
    if (e.until <= now) {
      map.delete(key);
      return undefined;
    }
    return e.value;
  }

  private sweep(now: number): void {
    for (const [sid, e] of this.sessions) if (now >= expiry(e.session)) this.dropSession(sid, e.session.userId);
    for (const map of [this.revokedTokens, this.revokedSessions, this.userNotBefore, this.handoffs] as Map<string, Expiring<unknown>>[]) {
      for (const [k, e] of map) if (e.until <= now) map.delete(k);
    }
    for (const [userId, seen] of this.sightings) if (seen.until <= now) this.sightings.delete(userId);
  }
}

const handoffKey = (sid: string, codeHash: Buffer) => `${sid}:${codeHash.toString("base64url")}`;

const expiry = (s: StoredSession) => Math.min(s.idleExpiresAt, s.absoluteExpiresAt);
