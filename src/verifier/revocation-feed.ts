/**
 * One entry of the revocation set, as a feed delivers it. Times are
 * milliseconds since the epoch except `notBefore`, which is in seconds like a
 * token's `iat`.
 *
 * - `token`: the token with this `jti` is revoked.
 * - `session`: every token with this `sid` is revoked.
 * - `user`: every token of `userId` (the `sub` claim) with `iat` below `notBefore` is revoked.
 *
 * After `expiresAt` no token the entry covers can still be valid, so it is dropped.
 *
 * @example
 * ```ts
 * sink.apply({ kind: "session", sid: "s_123", reason: 2, expiresAt: Date.now() + 930_000 });
 * sink.apply({ kind: "user", userId: "u_42", notBefore: Math.floor(Date.now() / 1000), reason: 3, expiresAt: Date.now() + 930_000 });
 * ```
 */
export interface RevocationEntry {
  kind: "token" | "session" | "user";
  jti?: string;
  sid?: string;
  userId?: string;
  /** Seconds since the epoch; only for `kind: "user"`. */
  notBefore?: number;
  /** The authority's RevocationReason enum value. */
  reason: number;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  /** When the authority recorded the revocation (ms since the epoch), if the feed knows: for the propagation-lag metric. */
  revokedAt?: number;
}

/**
 * Where a feed delivers what it receives; the verifier hands one to
 * {@link RevocationFeed.start}.
 *
 * @example
 * ```ts
 * // inside a feed: one NATS message decoded
 * if (subject === "sa.v1.keys") sink.keysChanged();
 * else sink.apply(toEntry(event));
 * ```
 */
export interface FeedSink {
  /** Adds one revocation. Safe to call with entries seen before and with entries already expired. */
  apply(entry: RevocationEntry): void;
  /** The authority's key set changed: the verifier refetches its JWKS. */
  keysChanged(): void;
}

/**
 * The seam between the verifier and whatever transports revocations (NATS
 * JetStream in production, an in-memory class in tests).
 *
 * @example
 * ```ts
 * class StaticFeed implements RevocationFeed {
 *   constructor(private readonly entries: RevocationEntry[]) {}
 *   async start(sink: FeedSink) { for (const e of this.entries) sink.apply(e); }
 *   health() { return { connected: true, since: 0 }; }
 *   async close() {}
 * }
 * const verifier = createVerifier({ jwksUrl, issuer, audience, feed: new StaticFeed([]) });
 * ```
 */
export interface RevocationFeed {
  /** Starts delivering into sink; resolves once everything published before the call has been delivered (replayed to the end). */
  start(sink: FeedSink): Promise<void>;
  /**
   * connected: whether events can currently arrive; since: ms timestamp of the
   * last change of `connected`, on the same clock as the verifier's. Called on
   * every verification, so it should return a stored value.
   */
  health(): { connected: boolean; since: number };
  close(): Promise<void>;
}
