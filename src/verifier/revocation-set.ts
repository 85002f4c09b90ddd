import type { RevocationEntry } from "./revocation-feed.js";

/** What a revocation check found: the recorded RevocationReason. */
export interface Revocation {
  readonly reason: number;
}

interface Held {
  reason: number;
  expiresAt: number;
}

interface HeldUser extends Held {
  notBefore: number;
}

/** The claims a revocation check looks at. */
export type RevocableClaims = { readonly jti: string; readonly sid: string; readonly sub: string; readonly iat: number };

/**
 * The live revocation set, in memory: three Maps, so a check is three lookups
 * and an entry costs its key plus one small object (measured: about 120-140 bytes
 * with a 22-character key, so 100k entries take 12-15 MB). Entries leave once expired, lazily on lookup
 * and in bulk through `prune`.
 *
 * @example
 * ```ts
 * const set = new RevocationSet();
 * set.apply({ kind: "token", jti: "abc", reason: 1, expiresAt: Date.now() + 60_000 }, Date.now());
 * set.check(claims, Date.now()); // { reason: 1 } when claims.jti === "abc"
 * ```
 */
export class RevocationSet {
  // Token and session entries are the bulk (hundreds of thousands at scale), so
  // each value is one small integer: whole seconds of expiry past `epoch`, times
  // 256, plus the reason. V8 keeps such integers unboxed, which roughly halved a
  // sidecar's heap with 100k revocations. Users are few and keep full objects.
  private readonly tokens = new Map<string, number>();
  private readonly sessions = new Map<string, number>();
  /** Seconds, a week before the first entry: values stay small (unboxed) for about six weeks, and correct (boxed) after. */
  private epoch = -1;
  private readonly users = new Map<string, HeldUser>();

  /**
   * Adds an entry. Returns false, changing nothing, when the entry lacks what its
   * kind needs. Already-expired entries are accepted and not stored (a replay
   * delivers plenty of them).
   */
  apply(entry: RevocationEntry, now: number): boolean {
    const { kind, reason, expiresAt } = entry;
    if (typeof reason !== "number" || typeof expiresAt !== "number" || Number.isNaN(expiresAt)) return false;
    switch (kind) {
      case "token":
        if (!nonEmpty(entry.jti)) return false;
        if (now < expiresAt) this.upsert(this.tokens, entry.jti, reason, expiresAt);
        return true;
      case "session":
        if (!nonEmpty(entry.sid)) return false;
        if (now < expiresAt) this.upsert(this.sessions, entry.sid, reason, expiresAt);
        return true;
      case "user": {
        const { userId, notBefore } = entry;
        if (!nonEmpty(userId) || typeof notBefore !== "number" || Number.isNaN(notBefore)) return false;
        if (now >= expiresAt) return true;
        const held = this.users.get(userId);
        if (!held) {
          this.users.set(userId, { reason, expiresAt, notBefore });
        } else if (notBefore > held.notBefore) {
          // The later cut-off covers every token the earlier one did, so it must
          // also last as long as the earlier one would have.
          held.notBefore = notBefore;
          held.reason = reason;
          held.expiresAt = Math.max(held.expiresAt, expiresAt);
        } else {
          // An older or repeated cut-off arriving late never moves notBefore back.
          held.expiresAt = Math.max(held.expiresAt, expiresAt);
        }
        return true;
      }
      default:
        return false;
    }
  }

  /** Whether the token these claims belong to is revoked: by jti, by sid, or by its user's cut-off. */
  check(claims: RevocableClaims, now: number): Revocation | undefined {
    const token = this.livePacked(this.tokens, claims.jti, now);
    if (token !== undefined) return { reason: token };
    const session = this.livePacked(this.sessions, claims.sid, now);
    if (session !== undefined) return { reason: session };
    const user = live(this.users, claims.sub, now);
    if (user && user.notBefore > claims.iat) return user;
    return undefined;
  }

  /** Drops every expired entry; returns how many went. */
  prune(now: number): number {
    let removed = prune(this.users, now);
    for (const map of [this.tokens, this.sessions]) {
      for (const [key, packed] of map) {
        if (now >= this.expiryOf(packed)) {
          map.delete(key);
          removed++;
        }
      }
    }
    return removed;
  }

  private upsert(map: Map<string, number>, key: string, reason: number, expiresAt: number): void {
    const seconds = Math.ceil(expiresAt / 1000); // up, never down: an entry may outlive its token by under a second
    if (this.epoch < 0) this.epoch = seconds - 7 * 86_400;
    // An entry a week older than the first one is long expired; clamping keeps it harmless.
    const packed = Math.max(0, seconds - this.epoch) * 256 + (reason & 255);
    const held = map.get(key);
    if (held === undefined || packed >>> 8 > held >>> 8) map.set(key, held === undefined ? packed : (packed & ~255) | (held & 255));
  }

  /** The reason if the entry is live; drops it if it has expired. */
  private livePacked(map: Map<string, number>, key: string, now: number): number | undefined {
    const packed = map.get(key);
    if (packed === undefined) return undefined;
    if (now < this.expiryOf(packed)) return packed & 255;
    map.delete(key);
    return undefined;
  }

  private expiryOf(packed: number): number {
    return (Math.floor(packed / 256) + this.epoch) * 1000;
  }

  /**
   * The live entries, as a feed would deliver them (expiry rounded up to the
   * second, as held). Iterating while entries are added is safe: each entry
   * already held is yielded once, and ones added meanwhile may be.
   */
  *entries(now: number): Generator<RevocationEntry> {
    for (const [jti, packed] of this.tokens) {
      const expiresAt = this.expiryOf(packed);
      if (now < expiresAt) yield { kind: "token", jti, reason: packed & 255, expiresAt };
    }
    for (const [sid, packed] of this.sessions) {
      const expiresAt = this.expiryOf(packed);
      if (now < expiresAt) yield { kind: "session", sid, reason: packed & 255, expiresAt };
    }
    for (const [userId, { reason, expiresAt, notBefore }] of this.users) {
      if (now < expiresAt) yield { kind: "user", userId, notBefore, reason, expiresAt };
    }
  }

  /** Entries held per kind (expired ones not yet pruned included). */
  size(): { tokens: number; sessions: number; users: number } {
    return { tokens: this.tokens.size, sessions: this.sessions.size, users: this.users.size };
  }
}

const nonEmpty = (value: unknown): value is string => typeof value === "string" && value.length > 0;

function live<T extends Held>(map: Map<string, T>, key: string, now: number): T | undefined {
  const held = map.get(key);
  if (held === undefined) return undefined;
  if (now < held.expiresAt) return held;
  map.delete(key);
  return undefined;
}

function prune(map: Map<string, Held>, now: number): number {
  let removed = 0;
  for (const [key, held] of map) {
    if (now >= held.expiresAt) {
      map.delete(key);
      removed++;
    }
  }
  return removed;
}
