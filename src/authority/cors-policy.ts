import type { IncomingMessage, ServerResponse } from "node:http";
import { cors } from "@connectrpc/connect";
import { ERROR_CODE_HEADER } from "../transport/status-table.js";

/** Which routes a request is for: their CORS rules differ. */
export type CorsRoutes = "auth" | "connect";

const RULES: Record<CorsRoutes, { methods: string; headers: string; expose: string }> = {
  // The browser endpoints: the refresh cookie is the credential, sa-csrf forces a preflight.
  auth: { methods: "POST", headers: "Content-Type, Sa-Csrf, X-Request-Id", expose: "" },
  // Connect, gRPC-Web and WatchSession streams, with the access token as Bearer.
  connect: {
    methods: cors.allowedMethods.join(", "),
    headers: [...cors.allowedHeaders, "Authorization", "X-Request-Id"].join(", "),
    expose: [...cors.exposedHeaders, ERROR_CODE_HEADER].join(", "),
  },
};

/** Host names a plain-http page may be served from and still count as the authority's own origin. */
const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** How long a browser may cache a preflight answer, in seconds. */
const PREFLIGHT_MAX_AGE = 7200;

/**
 * The HTTP port's origin rules: a request may come from the authority's own
 * origin or one listed in SA_ALLOWED_ORIGINS. Allowed cross-origin callers get
 * credentialed CORS (their exact origin echoed, never `*`); others get no CORS
 * headers, so their pages cannot read a response, and a refused preflight.
 */
export class CorsPolicy {
  private readonly allowed: ReadonlySet<string>;

  constructor(allowedOrigins: readonly string[]) {
    this.allowed = new Set(allowedOrigins);
  }

  /**
   * True without an Origin header (not a browser page: curl, servers, a
   * same-origin GET), for the authority's own origin, and for a listed one.
   */
  allows(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (this.allowed.has(origin)) return true;
    // Own origin: the page was served by this host. Over https only (TLS usually ends
    // in front of us, so the request itself says nothing), or plain http on a
    // loopback name for development: a plain-http page on the same host name could
    // otherwise be anyone on the network path, and SameSite does not tell schemes apart
    // in every browser. Other plain-http origins must be listed.
    try {
      const url = new URL(origin);
      if (url.host !== req.headers.host) return false;
      return url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK.has(url.hostname));
    } catch {
      return false;
    }
  }

  /** Answers an OPTIONS preflight: 204 with the rules for an allowed origin, else 403. */
  preflight(req: IncomingMessage, res: ServerResponse, routes: CorsRoutes): void {
    if (!req.headers.origin || !this.allows(req)) {
      res.writeHead(403, { vary: "Origin" });
      return void res.end();
    }
    const rule = RULES[routes];
    res.writeHead(204, {
      ...this.originHeaders(req.headers.origin),
      "access-control-allow-methods": rule.methods,
      "access-control-allow-headers": rule.headers,
      "access-control-max-age": String(PREFLIGHT_MAX_AGE),
    });
    res.end();
  }

  /** Adds CORS headers to a response for an allowed cross-origin caller; none otherwise. */
  decorate(req: IncomingMessage, res: ServerResponse, routes: CorsRoutes): void {
    res.setHeader("vary", "Origin");
    const origin = req.headers.origin;
    if (!origin || !this.allows(req)) return;
    for (const [name, value] of Object.entries(this.originHeaders(origin))) res.setHeader(name, value);
    const { expose } = RULES[routes];
    if (expose) res.setHeader("access-control-expose-headers", expose);
  }

  private originHeaders(origin: string): Record<string, string> {
    return { "access-control-allow-origin": origin, "access-control-allow-credentials": "true", vary: "Origin" };
  }
}
