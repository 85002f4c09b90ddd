import type { IncomingMessage } from "node:http";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import type { Clock } from "../shared/clock.js";
import { AuthorityError, invalidArgument } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { requestIdFrom, toWireError } from "../transport/call-context.js";
import type { CorsPolicy } from "./cors-policy.js";
import { headerOf, readJsonBody, sendJson, type HttpRoute } from "./json-http.js";
import type { CallScope, IssuedPair, LogoutScope, SessionService } from "./session-service.js";
// The wire shape is the client SDK's: one definition for both ends (a type, erased at run time).
import type { SessionGrant } from "../client/session-grant.js";

/**
 * Browser (SPA) mode on the HTTP port. The refresh token lives only in an
 * HttpOnly cookie scoped to these endpoints, so page scripts (and an XSS) never
 * read it; the access token is returned in the body for the page to keep in
 * memory. CSRF: every POST needs `sa-csrf: 1`, which no form or simple request
 * can send and which forces a CORS preflight cross-origin, and an Origin, when
 * present, must be allowed. Refresh and logout are SessionService's own, so the
 * grace window and reuse detection are exactly the Refresh RPC's.
 *
 *   POST /auth/v1/session  {"handoffCode"}  → SessionGrant + cookie
 *   POST /auth/v1/refresh  (cookie)         → SessionGrant + rotated cookie
 *   POST /auth/v1/logout   {"scope"}        → {"sessionsEnded"}; cookie cleared unless scope is "others"
 */
export const REFRESH_COOKIE = "__Secure-sa-refresh";
export const AUTH_PATH = "/auth/v1";
export const CSRF_HEADER = "sa-csrf";

const COOKIE_ATTRIBUTES = `Path=${AUTH_PATH}; HttpOnly; Secure; SameSite=Strict`;
const SCOPES: Record<string, LogoutScope> = { current: "current", all: "all", others: "others" };

export interface BrowserEndpointsOptions {
  sessions: SessionService;
  cors: CorsPolicy;
  clock: Clock;
  logger: Logger;
}

type Reply = { status: number; body: unknown; cookie?: string };
type Endpoint = (req: IncomingMessage, body: Record<string, unknown>, refreshToken: string | undefined, call: CallScope) => Promise<Reply>;

/** A node:http handler for /auth/v1/*; returns false for any other path. */
export function createBrowserEndpoints(o: BrowserEndpointsOptions): HttpRoute {
  const { sessions, cors, clock, logger } = o;

  const setCookie = (pair: IssuedPair) =>
    `${REFRESH_COOKIE}=${pair.refreshToken}; ${COOKIE_ATTRIBUTES}; Max-Age=${Math.max(0, Math.floor((pair.refreshTokenExpiresAt - clock.now()) / 1000))}`;
  const clearCookie = `${REFRESH_COOKIE}=; ${COOKIE_ATTRIBUTES}; Max-Age=0`;
  const granted = (pair: IssuedPair): Reply => ({ status: 200, body: grantOf(pair), cookie: setCookie(pair) });
  const cookieRequired = (token: string | undefined): string => {
    if (!token) throw new AuthorityError("unauthenticated", `no ${REFRESH_COOKIE} cookie: sign in again`);
    return token;
  };

  const replaced = async (token: string, newSid: string, call: CallScope) => {
    const holder = await sessions.refreshTokenHolder(token).catch(() => undefined);
    if (holder && holder.sid !== newSid) await sessions.logout({ sub: holder.userId, sid: holder.sid }, "current", undefined, call);
  };

  const endpoints: Record<string, Endpoint> = {
    async session(_req, body, token, call) {
      const code = body.handoffCode;
      if (typeof code !== "string" || !code) throw invalidArgument("handoffCode is required");
      const pair = await sessions.redeemHandoff(code, call);
      // The new cookie replaces this browser's previous one: end that session too, or
      // it would live on until it expired with nobody holding its refresh token.
      if (token) await replaced(token, pair.sid, call);
      return granted(pair);
    },
    async refresh(_req, _body, token, call) {
      return granted(await sessions.refresh(cookieRequired(token), call));
    },
    async logout(_req, body, token, call) {
      const scope = body.scope === undefined ? "current" : SCOPES[String(body.scope)];
      if (!scope) throw invalidArgument('scope must be "current", "all" or "others"');
      const holder = await sessions.refreshTokenHolder(cookieRequired(token));
      const ended = await sessions.logout({ sub: holder.userId, sid: holder.sid }, scope, undefined, call);
      // "others" keeps this browser's session, so its cookie stays.
      return { status: 200, body: { sessionsEnded: ended }, cookie: scope === "others" ? undefined : clearCookie };
    },
  };

  return (req, res) => {
    const path = (req.url ?? "").split("?")[0]!;
    if (!path.startsWith(`${AUTH_PATH}/`)) return false;
    const name = path.slice(AUTH_PATH.length + 1);
    const endpoint = Object.hasOwn(endpoints, name) ? endpoints[name] : undefined;
    const requestId = requestIdFrom(headerOf(req, "x-request-id"));
    res.setHeader("cache-control", "no-store");
    const fail = (error: unknown, clear: boolean) => {
      const wire = toWireError(error, logger, `${AUTH_PATH}/${name}`, requestId);
      const status = codeToHttpStatus(wire.code);
      // A refused cookie is dead: drop it, so the page stops presenting it.
      if (clear && status === 401) res.setHeader("set-cookie", clearCookie);
      sendJson(res, status, { code: wire.domainCode, message: wire.message });
    };

    if (!endpoint) sendJson(res, 404, { code: "not_found", message: `no endpoint ${path.slice(0, 100)}` });
    else if (req.method === "OPTIONS") cors.preflight(req, res, "auth");
    else if (req.method !== "POST") {
      res.setHeader("allow", "POST, OPTIONS");
      sendJson(res, 405, { code: "invalid_argument", message: "use POST" });
    } else if (!cors.allows(req)) {
      fail(new AuthorityError("permission_denied", `origin ${String(req.headers.origin).slice(0, 100)} is not allowed (SA_ALLOWED_ORIGINS)`), false);
    } else {
      cors.decorate(req, res, "auth");
      if (headerOf(req, CSRF_HEADER) !== "1") fail(new AuthorityError("permission_denied", `the ${CSRF_HEADER}: 1 header is required`), false);
      else {
        readJsonBody(req).then((body) => endpoint(req, body, cookie(req, REFRESH_COOKIE), { requestId }))
          .then(
            (reply) => {
              if (reply.cookie) res.setHeader("set-cookie", reply.cookie);
              sendJson(res, reply.status, reply.body);
            },
            (error) => fail(error, name !== "session"),
          );
      }
    }
    return true;
  };
}

function grantOf(pair: IssuedPair): SessionGrant {
  return {
    sessionId: pair.sid,
    userId: pair.userId,
    accessToken: pair.accessToken,
    accessTokenExpiresAt: pair.accessTokenExpiresAt,
    refreshExpiresAt: pair.refreshTokenExpiresAt,
    sessionExpiresAt: pair.sessionExpiresAt,
  };
}

/** The first cookie of that name (the most specific path comes first). */
function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}
