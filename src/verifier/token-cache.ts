import type { AccessTokenClaims } from "./verify-access-token.js";

/** A token whose signature and claims checked out: the verifier's success result, shared by every hit. */
export interface VerifiedToken {
  readonly ok: true;
  readonly claims: AccessTokenClaims;
}

interface Entry {
  readonly verified: VerifiedToken;
  /** ms: the token's exp plus the clock skew. */
  readonly expiresAt: number;
  /** CLOCK's reference bit: set on a hit, cleared when eviction passes over it. */
  referenced: boolean;
}

/**
 * Remembers tokens whose signature already verified, keyed by the exact token
 * string, so a repeat skips the signature check (the expensive part). It
 * never answers for revocation: callers check that on every hit.
 *
 * Eviction is CLOCK (second chance) over the Map's insertion order: a hit only
 * sets a flag, where LRU would move the entry on every hit.
 *
 * @example
 * ```ts
 * const cache = new TokenCache({ capacity: 10_000, clockSkewMs: 30_000 });
 * const hit = cache.get(token, now) ?? cache.set(token, claims);
 * ```
 */
export class TokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly capacity: number;
  private readonly clockSkewMs: number;

  constructor(options: { capacity: number; clockSkewMs: number }) {
    this.capacity = options.capacity;
    this.clockSkewMs = options.clockSkewMs;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached result for this exact token, if it is held and not past exp (+skew). */
  get(token: string, now: number): VerifiedToken | undefined {
    const entry = this.entries.get(token);
    if (entry === undefined) return undefined;
    if (now >= entry.expiresAt) {
      this.entries.delete(token);
      return undefined;
    }
    entry.referenced = true;
    return entry.verified;
  }

  /**
   * Holds verified claims and returns the result to hand out. The claims are
   * frozen, since every later hit shares them.
   */
  set(token: string, claims: AccessTokenClaims): VerifiedToken {
    const verified: VerifiedToken = Object.freeze({ ok: true as const, claims: deepFreeze(claims) });
    if (this.capacity <= 0) return verified;
    if (!this.entries.has(token) && this.entries.size >= this.capacity) this.evictOne();
    this.entries.set(token, { verified, expiresAt: claims.exp * 1000 + this.clockSkewMs, referenced: false });
    return verified;
  }

  clear(): void {
    this.entries.clear();
  }

  private evictOne(): void {
    // Each pass either evicts or clears a reference bit, so this ends within
    // capacity + 1 steps, and amortised over insertions it is O(1).
    for (;;) {
      const oldest = this.entries.entries().next();
      if (oldest.done) return;
      const [token, entry] = oldest.value;
      this.entries.delete(token);
      if (!entry.referenced) return;
      entry.referenced = false;
      this.entries.set(token, entry);
    }
  }
}

/** Claims come from JSON.parse: plain objects and arrays, no cycles. */
function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    for (const member of Object.values(value)) deepFreeze(member);
    Object.freeze(value);
  }
  return value;
}
