import type { Clock } from "../shared/clock.js";
import { JwksCache } from "./jwks-cache.js";
import { retryUntilDone } from "./retry-until-done.js";
import type { FeedSink, RevocationEntry, RevocationFeed } from "./revocation-feed.js";
import { RevocationSet } from "./revocation-set.js";
import { TokenCache } from "./token-cache.js";
import type { VerifierLogger } from "./verifier-logger.js";
import { resolveVerifierOptions, type ResolvedVerifierOptions, type VerifierOptions } from "./verifier-options.js";
import type { VerifyResult } from "./verifier-result.js";
import { verifyAccessToken, type VerifyOptions } from "./verify-access-token.js";

/**
 * What the verifier knows about its own health, for a readiness probe or a
 * metrics endpoint.
 *
 * @example
 * ```ts
 * const s = verifier.status();
 * // { ready: true, keys: 2, lastKeyFetchAt: 1767225600000, revocations: { tokens: 3, sessions: 1, users: 0 }, feed: "live", staleForMs: 0 }
 * if (s.feed === "stale") alert(`revocation feed down for ${s.staleForMs} ms`);
 * ```
 */
export interface VerifierStatus {
  /** Keys loaded and the feed replayed to its end; until then every token is `unavailable`. */
  ready: boolean;
  /** Verification keys held. */
  keys: number;
  /** ms timestamp of the last successful JWKS fetch. */
  lastKeyFetchAt: number | undefined;
  /** Why the last JWKS fetch failed, while it keeps failing. The keys held stay in use. */
  keyFetchError?: string;
  /** Revocation entries held, per kind. */
  revocations: { tokens: number; sessions: number; users: number };
  /**
   * `none`: no feed, signatures only. `replaying`: catching up. `live`: connected,
   * or disconnected for at most maxStalenessMs. `stale`: disconnected for longer.
   */
  feed: "none" | "replaying" | "live" | "stale";
  /** How long the feed has been disconnected (0 while connected). */
  staleForMs: number;
}

/**
 * Verifies access tokens in-process: signatures against the authority's
 * published keys, claims, and the revocation set the feed keeps current. No
 * network call per token.
 *
 * @example
 * ```ts
 * const verifier = createVerifier({ jwksUrl, issuer, audience, feed });
 * await verifier.ready();
 * const result = await verifier.verify(bearerToken);
 * if (!result.ok) return reply(result.reason === "unavailable" ? 503 : 401);
 * handle(result.claims);
 * ```
 */
export interface Verifier {
  /** Resolves once the keys are loaded and the feed has replayed; both are retried until they succeed. Rejects only if closed first. */
  ready(): Promise<void>;
  /** Verifies a token; an unknown kid may refetch the JWKS once (rate-limited) before the answer. */
  verify(token: string): Promise<VerifyResult>;
  /** Verifies a token with what is in memory: never fetches, never waits. An unknown kid is `unknown_key`. */
  verifySync(token: string): VerifyResult;
  status(): VerifierStatus;
  /**
   * Calls `listener` for every revocation the live feed delivers after the
   * replay at start, with the time from the authority recording it to this
   * verifier applying it, in ms (host clock differences included). For a
   * propagation-lag metric; returns the function that stops the calls.
   *
   * @example
   * ```ts
   * const stop = verifier.onRevocationApplied((lagMs) => lagHistogram.observe(lagMs / 1000));
   * ```
   */
  onRevocationApplied(listener: RevocationAppliedListener): () => void;
  /** Stops the timers and closes the feed; afterwards every token is `unavailable`. */
  close(): Promise<void>;
}

/** See {@link Verifier.onRevocationApplied}. */
export type RevocationAppliedListener = (lagMs: number, entry: RevocationEntry) => void;

type Failure = Extract<VerifyResult, { ok: false }>;
const unavailable = (message: string): Failure => Object.freeze({ ok: false as const, reason: "unavailable" as const, message });
const NOT_READY = unavailable("verifier is not ready: keys or revocations are still loading");
const CLOSED = unavailable("verifier is closed");
const STALE = unavailable("revocations may be out of date: the revocation feed has been disconnected for longer than maxStalenessMs");
const NOT_A_STRING: Failure = Object.freeze({ ok: false as const, reason: "malformed" as const, message: "token must be a string" });
const REVOCATION_PRUNE_INTERVAL_MS = 60_000;
const noop = () => {};

/**
 * Builds a verifier and starts loading its keys and replaying its feed. Options
 * are checked first: a bad one throws an error naming it.
 *
 * @example
 * ```ts
 * const verifier = createVerifier({
 *   jwksUrl: "https://auth.example.com/.well-known/jwks.json",
 *   issuer: "https://auth.example.com",
 *   audience: "api",
 *   feed: natsRevocationFeed,
 *   logger,
 * });
 * await verifier.ready();
 * const result = verifier.verifySync(token);
 * ```
 */
export function createVerifier(options: VerifierOptions): Verifier {
  return new LocalVerifier(resolveVerifierOptions(options));
}

class LocalVerifier implements Verifier {
  private readonly clock: Clock;
  private readonly logger: VerifierLogger;
  private readonly feed: RevocationFeed | undefined;
  private readonly jwks: JwksCache;
  private readonly revocations = new RevocationSet();
  private readonly tokens: TokenCache;
  /** Reused on every call: verifyAccessToken is synchronous, so only `now` changes. */
  private readonly verifyOptions: VerifyOptions;
  private readonly failClosed: boolean;
  private readonly maxStalenessMs: number;
  private readonly stop = new AbortController();
  private readonly pruneTimer: NodeJS.Timeout;
  private readonly readyPromise: Promise<void>;
  private isReady = false;
  private closed = false;
  private feedReplayed = false;
  private wasStale = false;
  private disconnectedForMs = 0;
  private badEntryReported = false;
  private readonly appliedListeners = new Set<RevocationAppliedListener>();

  constructor(o: ResolvedVerifierOptions) {
    this.clock = o.clock;
    this.logger = o.logger;
    this.feed = o.feed;
    this.failClosed = o.failMode === "closed";
    this.maxStalenessMs = o.maxStalenessMs;
    this.tokens = new TokenCache({ capacity: o.tokenCacheSize, clockSkewMs: o.clockSkewMs });
    this.jwks = new JwksCache({
      url: o.jwksUrl, fetch: o.fetch, clock: o.clock, logger: o.logger,
      timeoutMs: o.jwksTimeoutMs, unknownKidCooldownMs: o.unknownKidCooldownMs, refreshIntervalMs: o.jwksRefreshIntervalMs,
      // A key the authority stopped publishing must not keep vouching for cached tokens.
      onKeysRemoved: () => this.tokens.clear(),
    });
    this.verifyOptions = {
      key: this.jwks.get, issuer: o.issuer, audience: o.audience, clockSkewMs: o.clockSkewMs, maxTokenBytes: o.maxTokenBytes, now: 0,
    };
    if (!this.feed) this.logger.warn("no revocation feed: only signatures and claims are checked; revoked tokens stay valid until they expire");

    this.readyPromise = Promise.all([this.loadKeys(), this.replayFeed()]).then(
      () => {
        if (this.closed) throw new Error("verifier was closed before it was ready");
        this.isReady = true;
        this.logger.info({ keys: this.jwks.size, revocations: this.revocations.size() }, "verifier ready");
      },
      (e) => {
        throw this.closed ? new Error("verifier was closed before it was ready") : e;
      },
    );
    // Whoever calls ready() sees a failure; nobody calling it is not a crash.
    this.readyPromise.catch(noop);

    this.pruneTimer = setInterval(() => this.housekeeping(), REVOCATION_PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
  }

  ready(): Promise<void> {
    return this.readyPromise;
  }

  verifySync(token: string): VerifyResult {
    if (!this.isReady) return this.closed ? CLOSED : NOT_READY;
    const now = this.clock.now();
    // Evaluated in both fail modes, so the transition is logged either way.
    if (this.feed !== undefined && this.feedStale(now) && this.failClosed) return STALE;
    return this.check(token, now);
  }

  async verify(token: string): Promise<VerifyResult> {
    const result = this.verifySync(token);
    if (result.ok || result.reason !== "unknown_key") return result;
    // The authority may have rotated since the last fetch (rate-limited: a
    // token cannot make the verifier fetch at will).
    await this.jwks.refreshForUnknownKid();
    return this.verifySync(token);
  }

  status(): VerifierStatus {
    const jwks = this.jwks.status();
    let feed: VerifierStatus["feed"] = "none";
    let staleForMs = 0;
    if (this.feed) {
      if (!this.feedReplayed) {
        feed = "replaying";
      } else {
        feed = this.feedStale(this.clock.now()) ? "stale" : "live";
        staleForMs = this.disconnectedForMs;
      }
    }
    return {
      ready: this.isReady,
      keys: jwks.keys,
      lastKeyFetchAt: jwks.lastFetchAt,
      ...(jwks.error !== undefined ? { keyFetchError: jwks.error } : {}),
      revocations: this.revocations.size(),
      feed,
      staleForMs,
    };
  }

  onRevocationApplied(listener: RevocationAppliedListener): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.isReady = false;
    this.stop.abort();
    this.jwks.close();
    clearInterval(this.pruneTimer);
    await this.feed?.close();
  }

  private check(token: string, now: number): VerifyResult {
    if (typeof token !== "string") return NOT_A_STRING;
    // Refused before the cache lookup, which would hash the whole string.
    if (token.length > this.verifyOptions.maxTokenBytes) return verifyAccessToken(token, this.verifyOptions);
    let verified = this.tokens.get(token, now);
    if (verified === undefined) {
      this.verifyOptions.now = now;
      const result = verifyAccessToken(token, this.verifyOptions);
      if (!result.ok) return result;
      verified = this.tokens.set(token, result.claims);
    }
    // Every time, cache hit or not: a revocation must take effect at once.
    const revoked = this.revocations.check(verified.claims, now);
    if (revoked === undefined) return verified;
    return { ok: false, reason: "revoked", message: "token has been revoked", revocationReason: revoked.reason };
  }

  /** Whether the feed has been disconnected longer than allowed; logs each change. */
  private feedStale(now: number): boolean {
    const health = this.feed!.health();
    this.disconnectedForMs = health.connected ? 0 : Math.max(0, now - health.since);
    const stale = this.disconnectedForMs > this.maxStalenessMs;
    if (stale !== this.wasStale) {
      this.wasStale = stale;
      if (stale) {
        this.logger.warn(
          { disconnectedForMs: this.disconnectedForMs, maxStalenessMs: this.maxStalenessMs, failMode: this.failClosed ? "closed" : "open" },
          this.failClosed
            ? "revocation feed is stale: refusing every token as unavailable until it reconnects"
            : "revocation feed is stale: still accepting tokens (fail open); recent revocations may be missed",
        );
      } else {
        this.logger.info("revocation feed is live again");
      }
    }
    return stale;
  }

  private loadKeys(): Promise<void> {
    return retryUntilDone(() => this.jwks.refresh(), {
      signal: this.stop.signal,
      // JwksCache already logged the failure itself.
      onFailure: (_e, attempt) => this.logger.debug({ attempt }, "retrying the first JWKS load"),
    }).then(() => this.jwks.start());
  }

  private replayFeed(): Promise<void> {
    const feed = this.feed;
    if (!feed) return Promise.resolve();
    const sink: FeedSink = {
      apply: (entry) => this.apply(entry),
      keysChanged: () => this.jwks.keysChanged(),
    };
    return retryUntilDone(() => feed.start(sink), {
      signal: this.stop.signal,
      onFailure: (e, attempt) => this.logger.warn({ attempt, error: (e as Error)?.message }, "revocation feed did not start; retrying"),
    }).then(() => {
      this.feedReplayed = true;
    });
  }

  private apply(entry: RevocationEntry): void {
    const now = this.clock.now();
    if (this.revocations.apply(entry, now)) {
      // The replay at start delivers old entries: their age is not a lag.
      if (this.feedReplayed && this.appliedListeners.size > 0 && typeof entry.revokedAt === "number") {
        for (const listener of this.appliedListeners) listener(now - entry.revokedAt, entry);
      }
      return;
    }
    // A feed bug, not an attack: say so once, not per message.
    if (!this.badEntryReported) this.logger.warn({ kind: entry?.kind }, "revocation entry ignored: it lacks what its kind needs");
    else this.logger.debug({ kind: entry?.kind }, "revocation entry ignored");
    this.badEntryReported = true;
  }

  private housekeeping(): void {
    this.revocations.prune(this.clock.now());
    // Logs a staleness change even while no token arrives.
    if (this.isReady && this.feed) this.feedStale(this.clock.now());
  }
}
