import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { systemClock, type Clock } from "../shared/clock.js";
import { checkBaseUrl, checkFunction, checkMs, ClientOptionsError } from "./client-options-error.js";
import { createCookieRefresher } from "./cookie-refresher.js";
import { defaultSessionLock, type SessionLock } from "./session-lock.js";
import { systemTimers, type Timers } from "./timers.js";
import type { TokenRefresher } from "./token-refresher.js";

/**
 * Receives the client's diagnostics (never tokens). Default: silent.
 *
 * @example
 * ```ts
 * const logger: ClientLogger = { debug: () => {}, warn: (message, fields) => console.warn(message, fields) };
 * ```
 */
export interface ClientLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/**
 * How to build a session client. Browser mode needs only `baseUrl`; app/Node mode
 * passes a `refresher` from {@link createRpcRefresher} (and usually the same `transport`).
 * Every option is checked when the client is built; defaults are listed per option.
 *
 * @example
 * ```ts
 * // Browser (refresh token in an HttpOnly cookie):
 * const options: SessionClientOptions<string> = { baseUrl: "https://auth.example.com", refreshMarginMs: 120_000 };
 * // App/Node (refresh token in the Keychain/Keystore via a storage adapter):
 * const transport = createConnectTransport({ baseUrl: "https://auth.example.com" });
 * const appOptions: SessionClientOptions<RpcSignIn> = { transport, refresher: createRpcRefresher({ transport, storage }) };
 * ```
 */
export interface SessionClientOptions<SignIn = string> {
  /**
   * The authority's HTTP origin, e.g. `https://auth.example.com`. Required unless both
   * `refresher` and `transport` are given.
   */
  baseUrl?: string;
  /** How tokens are obtained. Default: the cookie refresher on `baseUrl` (browser mode). */
  refresher?: TokenRefresher<SignIn>;
  /** Connect transport for ListSessions, Logout and WatchSession. Default: Connect over `fetch` at `baseUrl`. */
  transport?: Transport;
  /** Used by the default refresher and transport. Default: the global `fetch`. */
  fetch?: typeof globalThis.fetch;
  /** Refresh this long before the access token expires (at most half its lifetime). Default 60 s. */
  refreshMarginMs?: number;
  /** Spread each planned refresh by up to ± this much (at most half the margin). Default 10 s. */
  refreshJitterMs?: number;
  /** `getAccessToken()` refreshes first when the token has less than this left. Default 5 s. */
  minTokenValidityMs?: number;
  /** Fire `expiring` this long before the session really ends. Default 5 min. */
  expiringWarningMs?: number;
  /** Give up waiting for the cross-tab refresh lock after this long and refresh anyway. Default 10 s. */
  lockTimeoutMs?: number;
  /** After waiting for the lock, how long to wait for the holder's token to arrive over the tab channel. Default 1 s. */
  handoverWaitMs?: number;
  /** Timeout of one refresh, sign-in or logout request. Default 15 s. */
  requestTimeoutMs?: number;
  /** First retry delay after a failed background refresh (doubles per failure). Default 1 s. */
  retryInitialMs?: number;
  /** Longest retry delay. Default 30 s. */
  retryMaxMs?: number;
  /** Follow WatchSession for live logout. Default true. */
  watchSession?: boolean;
  /** Reconnect WatchSession when no message (heartbeat included) came for this long. Default 45 s. */
  heartbeatTimeoutMs?: number;
  /** First WatchSession reconnect delay (doubles per failure). Default 500 ms. */
  reconnectInitialMs?: number;
  /** Longest WatchSession reconnect delay. Default 30 s. */
  reconnectMaxMs?: number;
  /**
   * BroadcastChannel (and lock) name shared by the tabs of one app; `false`: no tab
   * channel. Default `"session-authority"`. Ignored where BroadcastChannel is missing.
   */
  channelName?: string | false;
  /** Default: Web Locks (`navigator.locks`) when present, else a lock private to this client. */
  lock?: SessionLock;
  /** Default: `Date.now`. */
  clock?: Clock;
  /** Default: the platform's setTimeout/clearTimeout. */
  timers?: Timers;
  /** Source of jitter, in [0, 1). Default: Math.random. */
  random?: () => number;
  logger?: ClientLogger;
}

/** Options with every default filled in. */
export interface ResolvedClientOptions<SignIn> {
  refresher: TokenRefresher<SignIn>;
  transport: Transport;
  /** The fetch of the `fetch` wrapper; undefined: the global one, looked up per call. */
  fetch: typeof globalThis.fetch | undefined;
  refreshMarginMs: number;
  refreshJitterMs: number;
  minTokenValidityMs: number;
  expiringWarningMs: number;
  lockTimeoutMs: number;
  handoverWaitMs: number;
  requestTimeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  watchSession: boolean;
  heartbeatTimeoutMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  channelName: string | false;
  lock: SessionLock;
  clock: Clock;
  timers: Timers;
  random: () => number;
  logger: ClientLogger;
}

const silent: ClientLogger = { debug: () => {}, warn: () => {} };

/** Checks the options and fills in the defaults; throws a ClientOptionsError naming the first bad option. */
export function resolveClientOptions<SignIn>(options: SessionClientOptions<SignIn>): ResolvedClientOptions<SignIn> {
  if (!options || typeof options !== "object") throw new ClientOptionsError("(all)", "must be an object");
  const o = options;
  const fetchFn = checkFunction(o.fetch, "fetch");
  const baseUrl = o.baseUrl === undefined ? undefined : checkBaseUrl(o.baseUrl, "baseUrl");
  if (o.refresher !== undefined) {
    for (const method of ["refresh", "logout", "clear"] as const) {
      if (typeof o.refresher?.[method] !== "function") throw new ClientOptionsError("refresher", `must implement TokenRefresher (no ${method}())`);
    }
  }
  if (o.transport !== undefined && (typeof o.transport?.unary !== "function" || typeof o.transport.stream !== "function")) {
    throw new ClientOptionsError("transport", "must be a Connect Transport");
  }
  if (baseUrl === undefined && (o.refresher === undefined || o.transport === undefined)) {
    throw new ClientOptionsError("baseUrl", "is required unless both refresher and transport are given");
  }
  if (o.channelName !== undefined && o.channelName !== false && (typeof o.channelName !== "string" || !o.channelName)) {
    throw new ClientOptionsError("channelName", "must be a non-empty string or false");
  }
  if (o.lock !== undefined && typeof o.lock?.acquire !== "function") throw new ClientOptionsError("lock", "must have an acquire() method");
  if (o.clock !== undefined && typeof o.clock?.now !== "function") throw new ClientOptionsError("clock", "must have a now() method");
  if (o.timers !== undefined && (typeof o.timers?.setTimeout !== "function" || typeof o.timers.clearTimeout !== "function")) {
    throw new ClientOptionsError("timers", "must have setTimeout() and clearTimeout() methods");
  }
  if (o.logger !== undefined && (typeof o.logger?.debug !== "function" || typeof o.logger.warn !== "function")) {
    throw new ClientOptionsError("logger", "must have debug() and warn() methods");
  }
  if (o.watchSession !== undefined && typeof o.watchSession !== "boolean") throw new ClientOptionsError("watchSession", "must be a boolean");

  const refreshMarginMs = checkMs(o.refreshMarginMs, "refreshMarginMs", 60_000);
  const resolved: ResolvedClientOptions<SignIn> = {
    refresher: o.refresher ?? (createCookieRefresher({ baseUrl: baseUrl!, fetch: fetchFn }) as unknown as TokenRefresher<SignIn>),
    // baseUrl is set whenever transport is not (checked above).
    transport: o.transport ?? createConnectTransport({ baseUrl: baseUrl!, fetch: fetchFn }),
    fetch: fetchFn,
    refreshMarginMs,
    refreshJitterMs: checkMs(o.refreshJitterMs, "refreshJitterMs", Math.min(10_000, refreshMarginMs)),
    minTokenValidityMs: checkMs(o.minTokenValidityMs, "minTokenValidityMs", 5_000),
    expiringWarningMs: checkMs(o.expiringWarningMs, "expiringWarningMs", 300_000),
    lockTimeoutMs: checkMs(o.lockTimeoutMs, "lockTimeoutMs", 10_000, 1),
    handoverWaitMs: checkMs(o.handoverWaitMs, "handoverWaitMs", 1_000),
    requestTimeoutMs: checkMs(o.requestTimeoutMs, "requestTimeoutMs", 15_000, 1),
    retryInitialMs: checkMs(o.retryInitialMs, "retryInitialMs", 1_000, 1),
    retryMaxMs: checkMs(o.retryMaxMs, "retryMaxMs", 30_000, 1),
    watchSession: o.watchSession ?? true,
    heartbeatTimeoutMs: checkMs(o.heartbeatTimeoutMs, "heartbeatTimeoutMs", 45_000, 1),
    reconnectInitialMs: checkMs(o.reconnectInitialMs, "reconnectInitialMs", 500, 1),
    reconnectMaxMs: checkMs(o.reconnectMaxMs, "reconnectMaxMs", 30_000, 1),
    channelName: o.channelName ?? "session-authority",
    lock: o.lock ?? defaultSessionLock(),
    clock: o.clock ?? systemClock,
    timers: o.timers ?? systemTimers,
    random: checkFunction(o.random, "random") ?? Math.random,
    logger: o.logger ?? silent,
  };
  return resolved;
}
