import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import type { DemoAssets } from "../demo/demo-assets.js";
import { AuthorityError, invalidArgument } from "../shared/errors.js";
import { requestIdFrom, toWireError } from "../transport/call-context.js";
import type { AuthorityServices } from "./authority-server.js";
import { headerOf, readJsonBody, sendJson, type HttpRoute } from "./json-http.js";
import type { CallScope } from "./session-service.js";

/**
 * The development server's demo (`npm start`, never `serve`): a page that signs in
 * as a demo user, plus the two things a real deployment has elsewhere. The login
 * endpoint plays the login service: it trusts any username (that is the demo) and
 * asks the same SessionService as CreateSession for a browser-handoff session, so
 * the page then goes through /auth/v1 exactly as a real app would. The "me"
 * endpoint plays an API: it checks the Bearer token, so the page can show the
 * SDK attaching and refreshing tokens.
 *
 *   GET  /demo/         the page          GET  /demo/app.js   its script (the SDK bundled)
 *   POST /demo/v1/login {"username", "maxLifetimeSeconds"?, "deviceName"?} → {"handoffCode"}
 *   GET  /demo/v1/me    (Bearer)          → who the token speaks for
 */
export const DEMO_PATH = "/demo";

export interface DemoEndpointsOptions extends AuthorityServices {
  assets: DemoAssets;
}

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
/** The demo's bounds for a chosen session length (the authority caps it at its own). */
const MIN_LIFETIME_S = 60;
const MAX_LIFETIME_S = 86_400;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROLS = new RegExp(CONTROL.source, "g");

const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  // The page runs only its own script and talks only to this origin: an injected
  // script could not load or send anything elsewhere.
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** The demo's routes on the HTTP port; false for any path outside /demo. */
export function createDemoEndpoints(o: DemoEndpointsOptions): HttpRoute {
  const { sessions, cors, logger, assets } = o;

  async function login(req: IncomingMessage, _res: ServerResponse, call: CallScope): Promise<unknown> {
    // A login form posted from another site would sign the victim in as the attacker.
    if (!cors.allows(req)) throw new AuthorityError("permission_denied", "the demo login takes requests from its own page only");
    const body = await readJsonBody(req);
    const username = body.username;
    if (typeof username !== "string" || !USERNAME.test(username)) {
      throw invalidArgument("username must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit");
    }
    const lifetime = body.maxLifetimeSeconds;
    if (lifetime !== undefined && (!Number.isInteger(lifetime) || (lifetime as number) < MIN_LIFETIME_S || (lifetime as number) > MAX_LIFETIME_S)) {
      throw invalidArgument(`maxLifetimeSeconds must be a whole number from ${MIN_LIFETIME_S} to ${MAX_LIFETIME_S}`);
    }
    const deviceName = body.deviceName;
    if (deviceName !== undefined && (typeof deviceName !== "string" || deviceName.length > 64 || CONTROL.test(deviceName))) {
      throw invalidArgument("deviceName must be text of at most 64 characters");
    }
    const userAgent = (headerOf(req, "user-agent") ?? "").replace(CONTROLS, "").slice(0, 1024);
    const pair = await sessions.createSession(
      {
        // Case-insensitive, so "Alice" in one window and "alice" in another are one user.
        userId: `demo-${username.toLowerCase()}`,
        username,
        roles: ["demo"],
        permissions: [],
        clientId: "",
        deviceId: `demo-${randomBytes(6).toString("hex")}`,
        deviceName: (deviceName as string | undefined)?.trim() || browserOf(userAgent),
        userAgent,
        ip: clientIp(req),
      },
      lifetime === undefined ? undefined : (lifetime as number) * 1000,
      call,
    );
    const handoff = await sessions.createHandoff(pair);
    return { handoffCode: handoff.code };
  }

  async function me(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    const token = /^Bearer ([!-~]+)$/.exec(headerOf(req, "authorization") ?? "")?.[1];
    if (!token) {
      res.setHeader("www-authenticate", 'Bearer realm="demo"');
      throw new AuthorityError("unauthenticated", "an Authorization: Bearer <access token> header is required");
    }
    const result = await sessions.validate(token);
    if (!result.valid) {
      res.setHeader("www-authenticate", 'Bearer realm="demo", error="invalid_token"');
      throw new AuthorityError("unauthenticated", `the access token was refused (${result.reason}): ${result.message}`);
    }
    const { claims } = result;
    return {
      userId: claims.sub,
      username: claims.username,
      sessionId: claims.sid,
      roles: claims.roles,
      tokenIssuedAt: claims.iat * 1000,
      tokenExpiresAt: claims.exp * 1000,
    };
  }

  const api: Record<string, { method: string; run: (req: IncomingMessage, res: ServerResponse, call: CallScope) => Promise<unknown> }> = {
    [`${DEMO_PATH}/v1/login`]: { method: "POST", run: login },
    [`${DEMO_PATH}/v1/me`]: { method: "GET", run: me },
  };

  return (req, res) => {
    const path = (req.url ?? "").split("?")[0]!;
    if (path !== DEMO_PATH && !path.startsWith(`${DEMO_PATH}/`)) return false;
    const get = req.method === "GET" || req.method === "HEAD";
    if (path === DEMO_PATH && get) {
      res.writeHead(308, { location: `${DEMO_PATH}/` });
      res.end();
    } else if (path === `${DEMO_PATH}/` && get) {
      res.writeHead(200, PAGE_HEADERS);
      res.end(req.method === "HEAD" ? undefined : assets.html);
    } else if (path === `${DEMO_PATH}/app.js` && get) {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache", "x-content-type-options": "nosniff" });
      res.end(req.method === "HEAD" ? undefined : assets.script);
    } else if (!Object.hasOwn(api, path)) {
      sendJson(res, 404, { code: "not_found", message: `no demo endpoint ${path.slice(0, 100)}` });
    } else if (req.method !== api[path]!.method) {
      res.setHeader("allow", api[path]!.method);
      sendJson(res, 405, { code: "invalid_argument", message: `use ${api[path]!.method}` });
    } else {
      res.setHeader("cache-control", "no-store");
      const requestId = requestIdFrom(headerOf(req, "x-request-id"));
      api[path]!.run(req, res, { requestId }).then(
        (body) => sendJson(res, 200, body),
        (error) => {
          const wire = toWireError(error, logger, path, requestId);
          sendJson(res, codeToHttpStatus(wire.code), { code: wire.domainCode, message: wire.message });
        },
      );
    }
    return true;
  };
}

/** A readable device name from a User-Agent, e.g. "Chrome on Linux". */
function browserOf(userAgent: string): string {
  const browser =
    /Edg\//.test(userAgent) ? "Edge"
    : /Firefox\//.test(userAgent) ? "Firefox"
    : /(Chrome|Chromium|CriOS)\//.test(userAgent) ? "Chrome"
    : /Safari\//.test(userAgent) ? "Safari"
    : "Browser";
  const os =
    /Android/.test(userAgent) ? "Android"
    : /iPhone|iPad/.test(userAgent) ? "iOS"
    : /Windows/.test(userAgent) ? "Windows"
    : /Mac OS X|Macintosh/.test(userAgent) ? "macOS"
    : /Linux|X11/.test(userAgent) ? "Linux"
    : "";
  return os ? `${browser} on ${os}` : browser;
}

/** The peer's address, IPv4-mapped IPv6 written as IPv4; empty if unknown. */
function clientIp(req: IncomingMessage): string {
  const address = (req.socket.remoteAddress ?? "").replace(/^::ffff:(?=\d+\.)/, "");
  return isIP(address) ? address : "";
}
