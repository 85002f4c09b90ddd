import type { SessionGrant } from "./session-grant.js";

/**
 * How a client obtains tokens: the one pluggable part between browser (cookie) and
 * app (stored refresh token) mode. Errors are {@link SessionClientError}s; those
 * whose `endsSession` is true end the session.
 *
 * `SignIn` is what {@link TokenRefresher.signIn} accepts: a handoff code for the cookie
 * refresher, the authority's CreateSession response for the RPC refresher.
 *
 * @example
 * ```ts
 * // A refresher for a custom backend-for-frontend:
 * const refresher: TokenRefresher<never> = {
 *   sharedCredential: true,
 *   refresh: async (signal) => parseSessionGrant(await (await fetch("/bff/token", { method: "POST", signal })).json()),
 *   logout: async () => { await fetch("/bff/logout", { method: "POST" }); return 1; },
 *   clear: async () => {},
 * };
 * ```
 */
export interface TokenRefresher<SignIn = never> {
  /**
   * True when every tab of the origin shares the credential (a cookie): a tab without a
   * session then adopts a grant another tab broadcasts. False for per-instance credentials.
   */
  readonly sharedCredential: boolean;
  /** Exchanges the held refresh credential for a new grant (rotating it). */
  refresh(signal: AbortSignal): Promise<SessionGrant>;
  /** Starts a session from a sign-in result. Absent: this refresher cannot sign in. */
  signIn?(input: SignIn, signal: AbortSignal): Promise<SessionGrant>;
  /**
   * Ends the current session (`current`) or all of the user's sessions (`all`) at the
   * authority and drops the held credential; resolves to the number of sessions ended.
   * `accessToken` is the current one, for refreshers that authenticate with it.
   */
  logout(scope: "current" | "all", accessToken: string | undefined, signal: AbortSignal): Promise<number>;
  /** Drops the held credential locally (the session is over). */
  clear(): Promise<void>;
}
