// An in-process stand-in for the authority, implementing the client-facing contract:
// the /auth/v1/* cookie endpoints (behind a fetch that also plays the browser's cookie
// jar) and the Connect RPCs Refresh, ListSessions, Logout and WatchSession (behind a
// router transport, or a real server via `routes`). Time comes from the test's clock.
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport, type ConnectRouter, type HandlerContext, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  LogoutScope,
  RevocationReason,
  SessionAuthorityService,
  type WatchSessionResponseSchema,
} from "../../../../src/gen/sessionauthority/v1/authority_pb.js";
import { CookieJarFetch } from "./cookie-jar-fetch.js";
import type { Clock } from "../../../../src/shared/clock.js";

type WatchMessage = MessageInitShape<typeof WatchSessionResponseSchema>;

interface Pair {
  accessToken: string;
  accessTokenExpiresAt: number;
  refreshToken: string;
}

interface FakeSession {
  id: string;
  userId: string;
  deviceName: string;
  createdAt: number;
  sessionExpiresAt: number;
  idleExpiresAt: number;
  current: Pair;
  /** The pair the previous refresh token gets again within the grace window. */
  previous?: { refreshToken: string; until: number };
  ended?: { code: string; reason: RevocationReason };
}

export const COOKIE = "__Secure-sa-refresh";

/** One open WatchSession stream, driven by the test. */
export class Watcher {
  private queue: Array<WatchMessage | { fail: ConnectError } | "end"> = [];
  private wake: (() => void) | undefined;
  closed = false;
  constructor(readonly sessionId: string) {}
  push(message: WatchMessage): void {
    this.queue.push(message);
    this.wake?.();
  }
  /** The stream breaks (proxy restart, network loss). */
  drop(): void {
    this.queue.push({ fail: new ConnectError("connection reset", Code.Unavailable) });
    this.wake?.();
  }
  /** The server closes the stream cleanly without SessionEnded. */
  end(): void {
    this.queue.push("end");
    this.wake?.();
  }
  async *messages(signal: AbortSignal): AsyncGenerator<WatchMessage> {
    try {
      while (!signal.aborted) {
        const next = this.queue.shift();
        if (next === "end") return;
        if (next && "fail" in next) throw next.fail;
        if (next) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          signal.addEventListener("abort", () => resolve(), { once: true });
        });
        this.wake = undefined;
      }
    } finally {
      this.closed = true;
    }
  }
}

export interface FakeAuthorityOptions {
  accessTtlMs?: number;
  idleMs?: number;
  lifetimeMs?: number;
  graceMs?: number;
  /** The authority's clock minus the client's. */
  clockOffsetMs?: number;
}

export class FakeAuthority {
  readonly accessTtlMs: number;
  readonly idleMs: number;
  readonly lifetimeMs: number;
  readonly graceMs: number;
  readonly clockOffsetMs: number;
  readonly sessions = new Map<string, FakeSession>();
  private readonly handoffCodes = new Map<string, string>();
  private seq = 0;
  /** Every /auth/v1 request as the server saw it. */
  readonly httpRequests: Array<{ path: string; method: string; headers: Record<string, string>; body: string }> = [];
  readonly calls = { refresh: 0, rpcRefresh: 0, signIn: 0, logout: 0, listSessions: 0, logoutRpc: 0, watch: 0 };
  readonly watchers: Watcher[] = [];
  /** While set, refresh answers wait for it (to hold a refresh in flight). */
  refreshGate: Promise<void> | undefined;
  /** While set, the next refresh answers fail this way. */
  refreshFailure: { status: number; code: string } | undefined;
  /** While true, every Bearer token is refused (as if each had just been revoked). */
  refuseBearer = false;
  /** Refuse this many more Bearer checks. */
  refuseBearerTimes = 0;
  /** The Bearer tokens presented, in order. */
  readonly bearers: string[] = [];
  /** Fail this many more WatchSession calls with UNAVAILABLE before they start. */
  watchFailures = 0;
  /** Answer WatchSession with UNIMPLEMENTED (an authority without it). */
  watchUnimplemented = false;

  constructor(
    private readonly time: Clock,
    options: FakeAuthorityOptions = {},
  ) {
    this.accessTtlMs = options.accessTtlMs ?? 15 * 60_000;
    this.idleMs = options.idleMs ?? 30 * 60_000;
    this.lifetimeMs = options.lifetimeMs ?? 30 * 24 * 3_600_000;
    this.graceMs = options.graceMs ?? 10_000;
    this.clockOffsetMs = options.clockOffsetMs ?? 0;
  }

  private now(): number {
    return this.time.now() + this.clockOffsetMs;
  }

  // ---- sessions ----

  /** CreateSession with delivery BROWSER_HANDOFF: returns the handoff code. */
  createHandoff(userId = "alice", deviceName = "Laptop"): { sessionId: string; handoffCode: string } {
    const session = this.newSession(userId, deviceName);
    const handoffCode = `hc_${++this.seq}`;
    this.handoffCodes.set(handoffCode, session.id);
    return { sessionId: session.id, handoffCode };
  }

  /** CreateSession with delivery DIRECT: the response a login service hands to an app. */
  createDirect(userId = "alice", deviceName = "Phone") {
    const s = this.newSession(userId, deviceName);
    return {
      sessionId: s.id,
      tokens: this.tokenPairMessage(s),
      sessionExpiresAt: timestampFromMs(s.sessionExpiresAt),
    };
  }

  private newSession(userId: string, deviceName: string): FakeSession {
    const id = `s${++this.seq}`;
    const now = this.now();
    const session: FakeSession = {
      id,
      userId,
      deviceName,
      createdAt: now,
      sessionExpiresAt: now + this.lifetimeMs,
      idleExpiresAt: Math.min(now + this.idleMs, now + this.lifetimeMs),
      current: this.mintPair(id, userId, now + this.lifetimeMs),
    };
    this.sessions.set(id, session);
    return session;
  }

  private mintPair(sessionId: string, userId: string, sessionExpiresAt: number): Pair {
    const now = this.now();
    const n = ++this.seq;
    // As the real authority: JWT times are whole seconds, and the token never outlives the session,
    // so a token capped by the session expires up to a second before it.
    const exp = Math.min(Math.floor(now / 1000) + Math.floor(this.accessTtlMs / 1000), Math.floor(sessionExpiresAt / 1000)) * 1000;
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    return {
      accessToken: `${b64({ alg: "ES256", typ: "at+jwt" })}.${b64({ sub: userId, sid: sessionId, iat: Math.floor(now / 1000), exp: Math.floor(exp / 1000), jti: `t${n}` })}.sig${n}`,
      accessTokenExpiresAt: exp,
      refreshToken: `${sessionId}.secret${n}`,
    };
  }

  /** Ends a session as a revocation would, telling its watchers (and the others of the user). */
  end(sessionId: string, reason = RevocationReason.ADMIN_ACTION, message = "", code = "session_ended"): void {
    const s = this.sessions.get(sessionId)!;
    s.ended = { code, reason };
    const ended = { sessionId, reason, message, endedAt: timestampFromMs(this.now()), allSessions: false };
    for (const w of this.watchers) {
      if (w.closed) continue;
      const owner = this.sessions.get(w.sessionId);
      if (w.sessionId === sessionId) w.push({ event: { case: "ended", value: ended } });
      else if (owner?.userId === s.userId) w.push({ event: { case: "otherSessionEnded", value: ended } });
    }
  }

  grantOf(s: FakeSession) {
    return {
      sessionId: s.id,
      userId: s.userId,
      accessToken: s.current.accessToken,
      accessTokenExpiresAt: s.current.accessTokenExpiresAt,
      refreshExpiresAt: s.idleExpiresAt,
      sessionExpiresAt: s.sessionExpiresAt,
    };
  }

  private tokenPairMessage(s: FakeSession) {
    return {
      accessToken: s.current.accessToken,
      accessTokenExpiresAt: timestampFromMs(s.current.accessTokenExpiresAt),
      refreshToken: s.current.refreshToken,
      refreshTokenExpiresAt: timestampFromMs(s.idleExpiresAt),
      tokenType: "Bearer",
    };
  }

  /** Rotation with the grace window and reuse detection; returns the session or an error code. */
  private rotate(refreshToken: string | undefined): FakeSession | { error: string } {
    if (!refreshToken) return { error: "unauthenticated" };
    const s = this.sessions.get(refreshToken.split(".")[0]!);
    if (!s) return { error: "refresh_token_invalid" };
    const now = this.now();
    if (s.ended || now >= s.idleExpiresAt || now >= s.sessionExpiresAt) return { error: s.ended?.code ?? "session_ended" };
    if (refreshToken === s.current.refreshToken) {
      s.previous = { refreshToken, until: now + this.graceMs };
      s.current = this.mintPair(s.id, s.userId, s.sessionExpiresAt);
      s.idleExpiresAt = Math.min(now + this.idleMs, s.sessionExpiresAt);
      return s;
    }
    if (s.previous?.refreshToken === refreshToken && now < s.previous.until) return s;
    if (refreshToken.startsWith(`${s.id}.`)) {
      this.end(s.id, RevocationReason.REFRESH_TOKEN_REUSE, "", "session_ended");
      return { error: "refresh_token_reused" };
    }
    return { error: "refresh_token_invalid" };
  }

  private sessionOfBearer(authorization: string | null): FakeSession {
    const token = authorization?.startsWith("Bearer ") ? authorization.slice(7) : undefined;
    this.bearers.push(token ?? "");
    const s = [...this.sessions.values()].find((x) => x.current.accessToken === token);
    const refuseOnce = this.refuseBearerTimes > 0;
    if (refuseOnce) this.refuseBearerTimes--;
    if (this.refuseBearer || refuseOnce || !s || s.ended || this.now() >= s.current.accessTokenExpiresAt) {
      throw new ConnectError("access token refused", Code.Unauthenticated, { "sa-error-code": "unauthenticated" });
    }
    return s;
  }

  // ---- the HTTP endpoints ----

  /** Answers POST /auth/v1/* as the contract says; the refresh cookie arrives in the Cookie header. */
  readonly handleAuth = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const body = await request.text();
    const headers: Record<string, string> = {};
    request.headers.forEach((v, k) => (headers[k] = v));
    this.httpRequests.push({ path: url.pathname, method: request.method, headers, body });
    const cookie = /(?:^|;\s*)__Secure-sa-refresh=([^;]+)/.exec(request.headers.get("cookie") ?? "")?.[1];
    const json = (status: number, value: unknown, setCookie?: string) => {
      const h = new Headers({ "content-type": "application/json" });
      if (setCookie !== undefined) {
        h.append("set-cookie", `${COOKIE}=${setCookie}; Path=/auth/v1; HttpOnly; Secure; SameSite=Strict; Max-Age=${setCookie ? 2592000 : 0}`);
      }
      return new Response(JSON.stringify(value), { status, headers: h });
    };
    if (request.method !== "POST" || request.headers.get("sa-csrf") !== "1") return json(403, { code: "permission_denied", message: "csrf" });
    switch (url.pathname) {
      case "/auth/v1/session": {
        this.calls.signIn++;
        const code = (JSON.parse(body) as { handoffCode: string }).handoffCode;
        const sid = this.handoffCodes.get(code);
        if (!sid) return json(401, { code: "unauthenticated", message: "unknown handoff code" });
        this.handoffCodes.delete(code);
        const s = this.sessions.get(sid)!;
        return json(200, this.grantOf(s), s.current.refreshToken);
      }
      case "/auth/v1/refresh": {
        this.calls.refresh++;
        await this.refreshGate;
        if (this.refreshFailure) return json(this.refreshFailure.status, { code: this.refreshFailure.code, message: "as the test asked" });
        const result = this.rotate(cookie);
        if ("error" in result) return json(401, { code: result.error, message: "refused" }, "");
        return json(200, this.grantOf(result), result.current.refreshToken);
      }
      case "/auth/v1/logout": {
        this.calls.logout++;
        const s = cookie ? this.sessions.get(cookie.split(".")[0]!) : undefined;
        if (!s || s.ended) return json(401, { code: "session_ended", message: "no session" }, "");
        const scope = (JSON.parse(body) as { scope: string }).scope;
        const targets = scope === "all" ? [...this.sessions.values()].filter((x) => x.userId === s.userId && !x.ended) : [s];
        for (const t of targets) this.end(t.id, RevocationReason.USER_REQUEST, "", "session_ended");
        return json(200, { sessionsEnded: targets.length }, "");
      }
      default:
        return json(404, { code: "not_found", message: "no such endpoint" });
    }
  };

  /** The browser: its cookie jar in front of the in-process endpoints. */
  readonly browser = new CookieJarFetch((request) => this.handleAuth(request));

  /** The fetch a browser-mode client gets. */
  get fetch(): typeof globalThis.fetch {
    return this.browser.fetch;
  }

  /** Another device used the refresh cookie (as a thief would): the session rotates behind the browser's back. */
  useCookieElsewhere(): void {
    const result = this.rotate(this.browser.value);
    if ("error" in result) throw new Error(`stolen cookie refused: ${result.error}`);
  }

  // ---- the Connect RPCs ----

  readonly routes = (router: ConnectRouter): void => {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    router.service(SessionAuthorityService, {
      refresh: async (req) => {
        this.calls.rpcRefresh++;
        await this.refreshGate;
        if (this.refreshFailure) throw refusal(this.refreshFailure.code);
        const result = this.rotate(req.refreshToken);
        if ("error" in result) throw refusal(result.error);
        return { sessionId: result.id, tokens: this.tokenPairMessage(result), sessionExpiresAt: timestampFromMs(result.sessionExpiresAt) };
      },
      listSessions: (_req, ctx: HandlerContext) => {
        this.calls.listSessions++;
        const me = this.sessionOfBearer(ctx.requestHeader.get("authorization"));
        const mine = [...this.sessions.values()].filter((s) => s.userId === me.userId && !s.ended);
        return {
          sessions: mine.map((s) => ({
            sessionId: s.id,
            device: { id: `dev-${s.id}`, name: s.deviceName },
            userAgent: "test",
            ipAddress: "203.0.113.7",
            createdAt: timestampFromMs(s.createdAt),
            lastActivityAt: timestampFromMs(s.createdAt),
            expiresAt: timestampFromMs(s.idleExpiresAt),
            absoluteExpiresAt: timestampFromMs(s.sessionExpiresAt),
            current: s.id === me.id,
            clientId: "default",
          })),
        };
      },
      logout: (req, ctx: HandlerContext) => {
        this.calls.logoutRpc++;
        const me = this.sessionOfBearer(ctx.requestHeader.get("authorization"));
        const mine = [...this.sessions.values()].filter((s) => s.userId === me.userId && !s.ended);
        const targets =
          req.scope === LogoutScope.ALL ? mine
          : req.scope === LogoutScope.OTHERS ? mine.filter((s) => s.id !== me.id)
          : req.scope === LogoutScope.SESSION ? mine.filter((s) => s.id === req.sessionId)
          : [me];
        if (req.scope === LogoutScope.SESSION && targets.length === 0) throw new ConnectError("not yours", Code.NotFound, { "sa-error-code": "not_found" });
        for (const t of targets) this.end(t.id, RevocationReason.USER_REQUEST, "You signed out on another device.");
        return { sessionsEnded: targets.length };
      },
      watchSession: async function* (this: void, _req, ctx: HandlerContext) {
        self.calls.watch++;
        if (self.watchUnimplemented) throw new ConnectError("no such method", Code.Unimplemented);
        if (self.watchFailures > 0) {
          self.watchFailures--;
          throw new ConnectError("authority restarting", Code.Unavailable);
        }
        const me = self.sessionOfBearer(ctx.requestHeader.get("authorization"));
        const watcher = new Watcher(me.id);
        self.watchers.push(watcher);
        yield { event: { case: "started", value: { sessionId: me.id, sessionExpiresAt: timestampFromMs(me.sessionExpiresAt) } } };
        yield* watcher.messages(ctx.signal);
      },
    });
  };

  /** A transport to the RPCs, in process, with the caller's interceptors. */
  transportWith(interceptors: Interceptor[] = []): Transport {
    return createRouterTransport(this.routes, { transport: { interceptors } });
  }

  readonly transport: Transport = this.transportWith();

  /** The open (not yet closed) watch streams. */
  openWatchers(): Watcher[] {
    return this.watchers.filter((w) => !w.closed);
  }
}

function refusal(code: string): ConnectError {
  const status = code === "store_unavailable" ? Code.Unavailable : Code.Unauthenticated;
  return new ConnectError("refused", status, { "sa-error-code": code });
}
