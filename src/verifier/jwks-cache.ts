import { systemClock, type Clock } from "../shared/clock.js";
import { silentLogger } from "../shared/logger.js";
import { importVerificationKey } from "./import-verification-key.js";
import type { VerifierLogger } from "./verifier-logger.js";
import type { VerificationKey } from "./verify-access-token.js";

export interface JwksCacheOptions {
  /** Where the authority serves its keys: `<http>/.well-known/jwks.json`. */
  url: string;
  fetch?: typeof globalThis.fetch;
  /** One fetch, body included, gives up after this long. Default 5 s. */
  timeoutMs?: number;
  /** An unknown kid triggers a fetch only if none started within this long. Default 10 s. */
  unknownKidCooldownMs?: number;
  /** Background refresh period. Default 5 min. */
  refreshIntervalMs?: number;
  clock?: Clock;
  logger?: VerifierLogger;
  /** Called after a refresh dropped keys the authority no longer publishes. */
  onKeysRemoved?: () => void;
}

export interface JwksStatus {
  keys: number;
  /** ms timestamp of the last successful fetch. */
  lastFetchAt: number | undefined;
  /** Why the last fetch failed; cleared by the next success. */
  error: string | undefined;
}

/** Far above any real key set; stops a broken endpoint from filling memory. */
const MAX_DOCUMENT_CHARS = 1024 * 1024;
/** Bounds the "already reported" memory if a key set churns through bad keys. */
const MAX_REPORTED = 1000;
const noop = () => {};

/**
 * The authority's public keys, in memory, by kid. Lookups never fetch: fetches
 * happen at start, periodically, when told the keys changed, and (rate-limited)
 * for an unknown kid. A failed fetch keeps the keys held: an unreachable
 * authority must not stop tokens it already signed from verifying.
 *
 * @example
 * ```ts
 * const jwks = new JwksCache({ url: "https://auth.example.com/.well-known/jwks.json" });
 * await jwks.refresh();
 * jwks.start();
 * verifyAccessToken(token, { key: jwks.get, issuer, audience, clockSkewMs: 30_000, maxTokenBytes: 8192, now: Date.now() });
 * ```
 */
export class JwksCache {
  private keys = new Map<string, VerificationKey>();
  private inFlight: Promise<void> | undefined;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private lastSuccessAt: number | undefined;
  private lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly reported = new Set<string>();
  private readonly fetch: typeof globalThis.fetch;
  private readonly clock: Clock;
  private readonly logger: VerifierLogger;
  private readonly timeoutMs: number;
  private readonly cooldownMs: number;
  private readonly intervalMs: number;

  constructor(private readonly options: JwksCacheOptions) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.cooldownMs = options.unknownKidCooldownMs ?? 10_000;
    this.intervalMs = options.refreshIntervalMs ?? 300_000;
  }

  /** The key with this kid, from memory only. A bound function, to pass as `verifyAccessToken`'s `key`. */
  readonly get = (kid: string): VerificationKey | undefined => this.keys.get(kid);

  get size(): number {
    return this.keys.size;
  }

  /** Starts the periodic refresh (the timer does not keep the process alive). */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.refresh().catch(noop), this.intervalMs);
    this.timer.unref();
  }

  /** Stops the periodic refresh for good; keys held stay readable. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Fetches the key set now; concurrent callers share one fetch. Rejects if it fails (the held keys stay). */
  refresh(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    this.inFlight = this.load().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /**
   * For a token whose kid is not held: fetches unless a fetch started within the
   * cooldown, so a flood of made-up kids costs one fetch per cooldown at most.
   * Never rejects.
   */
  refreshForUnknownKid(): Promise<void> {
    if (this.inFlight) return this.inFlight.catch(noop);
    if (this.clock.now() - this.lastAttemptAt < this.cooldownMs) return Promise.resolve();
    return this.refresh().catch(noop);
  }

  /** The authority announced a key change (e.g. over NATS): refetch now. */
  keysChanged(): void {
    void this.refresh().catch(noop);
  }

  status(): JwksStatus {
    return { keys: this.keys.size, lastFetchAt: this.lastSuccessAt, error: this.lastError };
  }

  private async load(): Promise<void> {
    this.lastAttemptAt = this.clock.now();
    try {
      const next = this.parse(await this.fetchDocument());
      if (next.size === 0) throw new Error("the JWKS has no usable key");
      const removed = [...this.keys.keys()].filter((kid) => !next.has(kid));
      const added = [...next.keys()].filter((kid) => !this.keys.has(kid));
      this.keys = next;
      this.lastSuccessAt = this.clock.now();
      if (this.lastError !== undefined) this.logger.info({ keys: next.size }, "JWKS fetch works again");
      this.lastError = undefined;
      if (added.length || removed.length) this.logger.info({ added, removed, keys: next.size }, "verification keys changed");
      if (removed.length) this.options.onKeysRemoved?.();
    } catch (e) {
      this.lastError = (e as Error).message;
      this.logger.warn({ url: this.options.url, error: this.lastError, keysKept: this.keys.size }, "JWKS fetch failed; keeping the keys held");
      throw e;
    }
  }

  private async fetchDocument(): Promise<unknown> {
    let text: string;
    try {
      const res = await this.fetch(this.options.url, {
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { accept: "application/jwk-set+json, application/json" },
      });
      if (!res.ok) {
        await res.body?.cancel().catch(noop);
        throw new Error(`JWKS endpoint answered HTTP ${res.status}`);
      }
      text = await res.text();
    } catch (e) {
      const error = e as Error & { cause?: { message?: string } };
      if (error.name === "TimeoutError") throw new Error(`JWKS fetch timed out after ${this.timeoutMs} ms`);
      throw new Error(error.cause?.message ? `${error.message}: ${error.cause.message}` : error.message);
    }
    if (text.length > MAX_DOCUMENT_CHARS) throw new Error("JWKS document is too large");
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new Error("JWKS document is not JSON");
    }
    const keys = (doc as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys)) throw new Error("JWKS document has no keys array");
    return keys;
  }

  private parse(members: unknown): Map<string, VerificationKey> {
    const next = new Map<string, VerificationKey>();
    for (const member of members as unknown[]) {
      const imported = importVerificationKey(member);
      if (!imported.ok) this.reportOnce(imported.kid, imported.problem);
      else if (next.has(imported.kid)) this.reportOnce(imported.kid, "duplicate kid; the first one is used");
      else next.set(imported.kid, imported.key);
    }
    return next;
  }

  private reportOnce(kid: string, problem: string): void {
    const id = `${kid}\u0000${problem}`;
    if (this.reported.has(id)) return;
    if (this.reported.size >= MAX_REPORTED) this.reported.clear();
    this.reported.add(id);
    this.logger.warn({ kid, problem }, "JWKS key ignored");
  }
}
