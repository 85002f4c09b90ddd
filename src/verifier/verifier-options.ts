import { systemClock, type Clock } from "../shared/clock.js";
import { silentLogger } from "../shared/logger.js";
import type { RevocationFeed } from "./revocation-feed.js";
import type { VerifierLogger } from "./verifier-logger.js";

/**
 * How to build a verifier. Only `jwksUrl`, `issuer` and `audience` are required;
 * everything is checked when the verifier is built.
 *
 * @example
 * ```ts
 * const options: VerifierOptions = {
 *   jwksUrl: "https://auth.example.com/.well-known/jwks.json",
 *   issuer: "https://auth.example.com",
 *   audience: "api",
 *   feed: natsRevocationFeed,
 *   failMode: "closed",
 * };
 * ```
 */
export interface VerifierOptions {
  /** The authority's key set, `<http>/.well-known/jwks.json`. */
  jwksUrl: string;
  /** Expected `iss`. */
  issuer: string;
  /** Expected `aud` (one of them, when the token lists several). */
  audience: string;
  /** Delivers revocations and key changes. Without one the verifier checks signatures and claims only. */
  feed?: RevocationFeed;
  /** Tolerance for clocks that disagree. Default 30 s. */
  clockSkewMs?: number;
  /** Longer tokens are refused unparsed. Default 8192. */
  maxTokenBytes?: number;
  /** How long the feed may be disconnected before revocations count as stale. Default 30 s. */
  maxStalenessMs?: number;
  /** With a stale feed: "closed" refuses every token as `unavailable` (default), "open" keeps verifying with what it has. */
  failMode?: "closed" | "open";
  /** Verified tokens remembered so repeats skip the signature check. Default 10 000; 0 turns the cache off. */
  tokenCacheSize?: number;
  /** Background JWKS refresh period. Default 5 min. */
  jwksRefreshIntervalMs?: number;
  /** One JWKS fetch gives up after this long. Default 5 s. */
  jwksTimeoutMs?: number;
  /** An unknown kid refetches the JWKS only if no fetch started within this long. Default 10 s. */
  unknownKidCooldownMs?: number;
  clock?: Clock;
  logger?: VerifierLogger;
  fetch?: typeof globalThis.fetch;
}

/** Options with every default filled in. */
export type ResolvedVerifierOptions = Required<Omit<VerifierOptions, "feed">> & { feed: RevocationFeed | undefined };

/** A bad option, named. */
export class VerifierOptionsError extends TypeError {
  override readonly name = "VerifierOptionsError";
  constructor(readonly option: string, problem: string) {
    super(`createVerifier: option ${option} ${problem}`);
  }
}

/**
 * Checks the options and fills in the defaults; throws a VerifierOptionsError
 * naming the first bad option.
 *
 * @example
 * ```ts
 * const resolved = resolveVerifierOptions({ jwksUrl, issuer, audience }); // resolved.clockSkewMs === 30_000
 * ```
 */
export function resolveVerifierOptions(options: VerifierOptions): ResolvedVerifierOptions {
  if (!options || typeof options !== "object") throw new VerifierOptionsError("(all)", "must be an object");
  const o = options;
  checkUrl(o.jwksUrl);
  nonEmpty("issuer", o.issuer);
  nonEmpty("audience", o.audience);
  if (o.feed !== undefined) {
    for (const method of ["start", "health", "close"] as const) {
      if (typeof o.feed?.[method] !== "function") throw new VerifierOptionsError("feed", `must implement RevocationFeed (no ${method}())`);
    }
  }
  if (o.failMode !== undefined && o.failMode !== "closed" && o.failMode !== "open") {
    throw new VerifierOptionsError("failMode", `must be "closed" or "open", not ${JSON.stringify(o.failMode)}`);
  }
  if (o.clock !== undefined && typeof o.clock?.now !== "function") throw new VerifierOptionsError("clock", "must have a now() method");
  if (o.logger !== undefined) {
    for (const method of ["debug", "info", "warn", "error"] as const) {
      if (typeof o.logger?.[method] !== "function") throw new VerifierOptionsError("logger", `must have a ${method}() method`);
    }
  }
  if (o.fetch !== undefined && typeof o.fetch !== "function") throw new VerifierOptionsError("fetch", "must be a function");
  return {
    jwksUrl: o.jwksUrl,
    issuer: o.issuer,
    audience: o.audience,
    feed: o.feed,
    clockSkewMs: integer("clockSkewMs", o.clockSkewMs, 30_000, 0),
    maxTokenBytes: integer("maxTokenBytes", o.maxTokenBytes, 8192, 1),
    maxStalenessMs: integer("maxStalenessMs", o.maxStalenessMs, 30_000, 0),
    failMode: o.failMode ?? "closed",
    tokenCacheSize: integer("tokenCacheSize", o.tokenCacheSize, 10_000, 0),
    jwksRefreshIntervalMs: integer("jwksRefreshIntervalMs", o.jwksRefreshIntervalMs, 300_000, 1000),
    jwksTimeoutMs: integer("jwksTimeoutMs", o.jwksTimeoutMs, 5000, 1),
    unknownKidCooldownMs: integer("unknownKidCooldownMs", o.unknownKidCooldownMs, 10_000, 0),
    clock: o.clock ?? systemClock,
    logger: o.logger ?? silentLogger,
    fetch: o.fetch ?? globalThis.fetch,
  };
}

function checkUrl(value: unknown): void {
  if (typeof value !== "string" || !value) throw new VerifierOptionsError("jwksUrl", "must be a non-empty string");
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new VerifierOptionsError("jwksUrl", `is not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new VerifierOptionsError("jwksUrl", "must be an http: or https: URL");
}

function nonEmpty(name: string, value: unknown): void {
  if (typeof value !== "string" || !value) throw new VerifierOptionsError(name, "must be a non-empty string");
}

function integer(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new VerifierOptionsError(name, `must be an integer of at least ${min}, not ${JSON.stringify(value)}`);
  }
  return value;
}
