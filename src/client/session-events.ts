/**
 * What a client knows about its session, without the token.
 *
 * @example
 * ```ts
 * const s: SessionSnapshot | undefined = client.session;
 * if (s) console.log(`${s.userId} until ${new Date(s.sessionExpiresAt).toISOString()}`);
 * ```
 */
export interface SessionSnapshot {
  sessionId: string;
  userId: string;
  /** Local epoch ms (corrected for the clock difference to the authority, see `clockSkewMs`). */
  accessTokenExpiresAt: number;
  refreshExpiresAt: number;
  sessionExpiresAt: number;
  /** Authority clock minus local clock, estimated from the token's `iat` (0 when within a few seconds). */
  clockSkewMs: number;
}

/**
 * Why a revocation pushed by WatchSession happened (the proto's RevocationReason, lower case).
 *
 * @example
 * ```ts
 * client.on("logged-out", (e) => { if (e.revocationReason === "security_risk") showSecurityNotice(); });
 * ```
 */
export type RevocationReasonName =
  | "unspecified"
  | "user_request"
  | "security_risk"
  | "admin_action"
  | "password_changed"
  | "account_locked"
  | "refresh_token_reuse"
  | "other";

/**
 * Why the session is over.
 *
 * @example
 * ```ts
 * client.on("logged-out", ({ reason, message }) => (reason === "logout" ? goHome() : showLogin(message)));
 * ```
 *
 * - `logout`: this client (or another tab of it) called `logout()` / `logoutEverywhere()`.
 * - `revoked`: the authority pushed the end over WatchSession (see `revocationReason`).
 * - `session_ended`: a refresh was refused because the session had ended (idle timeout,
 *   absolute lifetime, logout or revocation elsewhere).
 * - `refresh_token_reused`: an old refresh token came back; the authority ended the session as stolen.
 * - `refresh_token_invalid`, `unauthenticated`: the refresh credential is unknown or gone (e.g. cookie cleared).
 * - `expired`: the session's deadline passed without a successful refresh (e.g. offline).
 */
export type LoggedOutReason =
  | "logout"
  | "revoked"
  | "session_ended"
  | "refresh_token_reused"
  | "refresh_token_invalid"
  | "unauthenticated"
  | "expired";

/**
 * Payload of `logged-out`; fired once per session, in every tab.
 *
 * @example
 * ```ts
 * // { reason: "revoked", revocationReason: "password_changed", message: "You were signed out because your password changed.", sessionId: "s_…", allSessions: false }
 * client.on("logged-out", (e) => showLogin(e.message));
 * ```
 */
export interface LoggedOutEvent {
  reason: LoggedOutReason;
  /** Set when the authority said why (WatchSession). */
  revocationReason?: RevocationReasonName;
  /** A sentence for the user, from the authority when it sent one. */
  message: string;
  sessionId: string;
  /** True when every session of the user ended (global logout). */
  allSessions: boolean;
}

/**
 * Payload of `refreshed`: a new access token is in memory.
 *
 * @example
 * ```ts
 * client.on("refreshed", ({ session, source }) => console.debug(`token until ${new Date(session.accessTokenExpiresAt)} (${source})`));
 * ```
 */
export interface RefreshedEvent {
  session: SessionSnapshot;
  /** `refresh`: this client refreshed; `sign-in`: a new session; `other-tab`: another tab refreshed and shared it. */
  source: "refresh" | "sign-in" | "other-tab";
}

/**
 * Payload of `expiring`: the session will end at `endsAt` unless something changes.
 * Fired `expiringWarningMs` before, once per deadline.
 *
 * @example
 * ```ts
 * client.on("expiring", (e) => banner(e.cause === "lifetime" ? `Please sign in again within ${Math.ceil(e.inMs / 60_000)} min` : "Connection problems: you may be signed out soon"));
 * ```
 */
export interface ExpiringEvent {
  sessionId: string;
  /** Local epoch ms. */
  endsAt: number;
  inMs: number;
  /** `lifetime`: the absolute session lifetime ends (refreshing cannot help; sign in again).
   *  `idle`: refreshing has been failing and the idle deadline is near. */
  cause: "lifetime" | "idle";
}

/**
 * Payload of `device-ended`: another session of the same user ended (keep a device list current).
 *
 * @example
 * ```ts
 * client.on("device-ended", (e) => (devices = devices.filter((d) => d.sessionId !== e.sessionId)));
 * ```
 */
export interface DeviceEndedEvent {
  sessionId: string;
  revocationReason: RevocationReasonName;
  message: string;
  /** Authority epoch ms; 0 when unknown. */
  endedAt: number;
}

/**
 * Payload of `error`: something failed in the background; the client keeps going.
 *
 * @example
 * ```ts
 * client.on("error", ({ during, error, retryInMs }) => console.warn(`${during}: ${error.message}; retry in ${retryInMs ?? "-"} ms`));
 * ```
 */
export interface ClientErrorEvent {
  error: Error;
  /** What failed: a background refresh, or the WatchSession stream. */
  during: "refresh" | "watch";
  /** When the client tries again, if it does. */
  retryInMs?: number;
}

/**
 * Every event of a SessionClient and its payload.
 *
 * @example
 * ```ts
 * const off = client.on("logged-out", (e: SessionEvents["logged-out"]) => showLogin(e.message));
 * off(); // unsubscribe
 * ```
 */
export interface SessionEvents {
  refreshed: RefreshedEvent;
  expiring: ExpiringEvent;
  "logged-out": LoggedOutEvent;
  "device-ended": DeviceEndedEvent;
  error: ClientErrorEvent;
}

/** A minimal typed event emitter; a listener that throws does not stop the others. */
export class Emitter<E extends object> {
  private readonly listeners = new Map<keyof E, Set<(payload: never) => void>>();

  constructor(private readonly onListenerError: (error: unknown) => void) {}

  on<K extends keyof E>(event: K, listener: (payload: E[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => set.delete(listener as (payload: never) => void);
  }

  emit<K extends keyof E>(event: K, payload: E[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        (listener as (payload: E[K]) => void)(payload);
      } catch (error) {
        this.onListenerError(error);
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}
