import { checkBaseUrl, checkFunction } from "./client-options-error.js";
import { fromHttpError, SessionClientError } from "./session-client-error.js";
import { parseSessionGrant, type SessionGrant } from "./session-grant.js";
import type { TokenRefresher } from "./token-refresher.js";

/**
 * Options of {@link createCookieRefresher}.
 *
 * @example
 * ```ts
 * const options: CookieRefresherOptions = { baseUrl: "https://auth.example.com" };
 * ```
 */
export interface CookieRefresherOptions {
  /** The authority's HTTP origin (and path prefix, if any), e.g. `https://auth.example.com`. */
  baseUrl: string;
  /** Default: the global `fetch`, looked up at each call. */
  fetch?: typeof globalThis.fetch;
}

/**
 * Browser mode: the refresh token is an HttpOnly cookie the SDK never sees. Refresh,
 * sign-in from a handoff code and logout are `POST {baseUrl}/auth/v1/…` with
 * `credentials: "include"` and the `sa-csrf: 1` header the authority requires.
 *
 * @example
 * ```ts
 * const client = createSessionClient({ refresher: createCookieRefresher({ baseUrl: "https://auth.example.com" }) });
 * await client.signIn(handoffCodeFromLoginService);
 * ```
 */
export function createCookieRefresher(options: CookieRefresherOptions): TokenRefresher<string> {
  const base = checkBaseUrl(options?.baseUrl, "baseUrl");
  const fetchFn = checkFunction(options.fetch, "fetch");

  async function post(path: string, body: unknown, what: string, signal: AbortSignal): Promise<unknown> {
    const headers: Record<string, string> = { "sa-csrf": "1" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    let text: string;
    try {
      response = await (fetchFn ?? globalThis.fetch)(`${base}/auth/v1/${path}`, {
        method: "POST",
        credentials: "include",
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      text = await response.text();
    } catch (error) {
      throw new SessionClientError("unavailable", `${what} failed: ${signal.aborted ? "timed out" : "network error"}`, undefined, error);
    }
    if (!response.ok) throw fromHttpError(response.status, text, what);
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new SessionClientError("bad_response", `${what} answered HTTP ${response.status} without JSON`, response.status, error);
    }
  }

  return {
    sharedCredential: true,
    async refresh(signal): Promise<SessionGrant> {
      return parseSessionGrant(await post("refresh", undefined, "refresh", signal));
    },
    async signIn(handoffCode, signal): Promise<SessionGrant> {
      if (typeof handoffCode !== "string" || !handoffCode) throw new SessionClientError("invalid_argument", "signIn needs the handoff code (a non-empty string)");
      return parseSessionGrant(await post("session", { handoffCode }, "sign-in", signal));
    },
    async logout(scope, _accessToken, signal): Promise<number> {
      const answer = (await post("logout", { scope }, "logout", signal)) as { sessionsEnded?: unknown };
      return typeof answer?.sessionsEnded === "number" ? answer.sessionsEnded : 0;
    },
    // The cookie is HttpOnly: only the authority can clear it (it does, on logout and on any refused refresh).
    async clear(): Promise<void> {},
  };
}
