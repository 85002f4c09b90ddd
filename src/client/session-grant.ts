import { SessionClientError } from "./session-client-error.js";

/**
 * What one sign-in or refresh yields: the access token and the deadlines of the session.
 * Times are epoch milliseconds on the authority's clock. This is also the JSON body of
 * `POST /auth/v1/session` and `POST /auth/v1/refresh`.
 *
 * @example
 * ```ts
 * const grant: SessionGrant = {
 *   sessionId: "s_4f9…", userId: "alice", accessToken: "eyJ…",
 *   accessTokenExpiresAt: 1767226500000, refreshExpiresAt: 1767227400000, sessionExpiresAt: 1769817600000,
 * };
 * ```
 */
export interface SessionGrant {
  sessionId: string;
  userId: string;
  /** JWT access token (RFC 9068). Kept in memory only. */
  accessToken: string;
  accessTokenExpiresAt: number;
  /** When the refresh credential stops working if unused (the idle deadline; sliding). */
  refreshExpiresAt: number;
  /** The absolute end of the session; refreshing never moves it. */
  sessionExpiresAt: number;
}

/**
 * Checks that `value` is a SessionGrant (from the authority, or from another tab) and
 * returns a copy holding exactly its fields; throws `bad_response` naming the bad field.
 *
 * @example
 * ```ts
 * const grant = parseSessionGrant(await response.json()); // for a custom TokenRefresher
 * ```
 */
export function parseSessionGrant(value: unknown): SessionGrant {
  if (!value || typeof value !== "object") throw badGrant("is not an object");
  const v = value as Record<string, unknown>;
  for (const key of ["sessionId", "userId", "accessToken"] as const) {
    if (typeof v[key] !== "string" || (key !== "userId" && !v[key])) throw badGrant(`has no valid ${key}`);
  }
  for (const key of ["accessTokenExpiresAt", "refreshExpiresAt", "sessionExpiresAt"] as const) {
    if (typeof v[key] !== "number" || !Number.isFinite(v[key])) throw badGrant(`has no valid ${key}`);
  }
  return {
    sessionId: v.sessionId as string,
    userId: v.userId as string,
    accessToken: v.accessToken as string,
    accessTokenExpiresAt: v.accessTokenExpiresAt as number,
    refreshExpiresAt: v.refreshExpiresAt as number,
    sessionExpiresAt: v.sessionExpiresAt as number,
  };
}

function badGrant(problem: string): SessionClientError {
  return new SessionClientError("bad_response", `the session grant ${problem}`);
}

/**
 * The `sub` and `iat` claims of a JWT, read without verifying it: the client only uses
 * them to name the user and to estimate clock skew, never to decide access.
 */
export function peekClaims(token: string): { sub?: string; iatMs?: number } {
  const payload = token.split(".")[1];
  if (!payload) return {};
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const json = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json) as { sub?: unknown; iat?: unknown };
    return {
      sub: typeof claims.sub === "string" ? claims.sub : undefined,
      iatMs: typeof claims.iat === "number" && Number.isFinite(claims.iat) ? claims.iat * 1000 : undefined,
    };
  } catch {
    return {};
  }
}
