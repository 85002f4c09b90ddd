import { isIP } from "node:net";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import {
  CreateSessionResponseSchema, GetJwksResponseSchema, JsonWebKeySchema, ListSessionsResponseSchema, LogoutResponseSchema,
  LogoutScope, RefreshResponseSchema, RevocationReason, RevokeResponseSchema, SessionInfoSchema,
  TokenDelivery, TokenPairSchema,
  type CreateSessionRequest, type ListSessionsRequest, type LogoutRequest, type RefreshRequest, type RevokeRequest,
  type ValidateTokenRequest,
} from "../gen/sessionauthority/v1/authority_pb.js";
import { AuthorityError, invalidArgument } from "../shared/errors.js";
import { isSessionId } from "../store/session-id.js";
import type { UnaryHandler, CallContext } from "../transport/call-context.js";
import { validateTokenResponse } from "../transport/validate-token-response.js";
import { requireScope, requireUser, type CallerAuthenticator } from "./caller-auth.js";
import type { IssuedPair, LogoutScope as DomainLogoutScope, SessionService } from "./session-service.js";
import type { SigningKeyRing } from "./signing-keys.js";

export interface HandlerDependencies {
  sessions: SessionService;
  auth: CallerAuthenticator;
  keys: SigningKeyRing;
  maxTokenBytes: number;
}


const SCOPE_OF: Record<LogoutScope, DomainLogoutScope> = {
  [LogoutScope.UNSPECIFIED]: "current",
  [LogoutScope.CURRENT]: "current",
  [LogoutScope.ALL]: "all",
  [LogoutScope.OTHERS]: "others",
  [LogoutScope.SESSION]: "session",
};

/**
 * The RPC handlers of SessionAuthorityService: check the request, authorize the
 * caller, call the session service, shape the reply. Both transports serve
 * exactly these functions.
 */
export function createAuthorityHandlers(deps: HandlerDependencies): Record<string, UnaryHandler> {
  const { sessions, auth, keys } = deps;
  const caller = (ctx: CallContext) => auth.authenticate(ctx);

  return {
    async createSession(req: CreateSessionRequest, ctx) {
      requireScope(await caller(ctx), "sessions:create");
      if (!(req.delivery in TokenDelivery)) throw invalidArgument(`delivery ${req.delivery} is not a TokenDelivery`);
      const issued = await sessions.createSession({
        userId: text(req.userId, "user_id", 1, 256),
        username: text(req.username, "username", 0, 256),
        roles: list(req.roles, "roles"),
        permissions: list(req.permissions, "permissions"),
        clientId: text(req.clientId, "client_id", 0, 128),
        deviceId: text(req.device?.id ?? "", "device.id", 0, 128),
        deviceName: text(req.device?.name ?? "", "device.name", 0, 128),
        userAgent: text(req.userAgent, "user_agent", 0, 1024),
        ip: ipAddress(req.ipAddress),
      }, maxLifetime(req.maxLifetime), ctx);
      if (req.delivery === TokenDelivery.BROWSER_HANDOFF) {
        // The login service never sees the tokens: the browser collects them at POST /auth/v1/session.
        const handoff = await sessions.createHandoff(issued);
        return create(CreateSessionResponseSchema, {
          sessionId: issued.sid, sessionExpiresAt: timestampFromMs(issued.sessionExpiresAt),
          handoffCode: handoff.code, handoffExpiresAt: timestampFromMs(handoff.expiresAt),
        });
      }
      return create(CreateSessionResponseSchema, {
        sessionId: issued.sid, tokens: pair(issued), sessionExpiresAt: timestampFromMs(issued.sessionExpiresAt),
      });
    },

    async refresh(req: RefreshRequest, ctx) {
      if (!req.refreshToken) throw invalidArgument("refresh_token is required");
      if (req.refreshToken.length > 256) throw new AuthorityError("refresh_token_invalid", "refresh token is malformed");
      const issued = await sessions.refresh(req.refreshToken, ctx);
      return create(RefreshResponseSchema, {
        sessionId: issued.sid, tokens: pair(issued), sessionExpiresAt: timestampFromMs(issued.sessionExpiresAt),
      });
    },

    async validateToken(req: ValidateTokenRequest) {
      if (!req.accessToken) throw invalidArgument("access_token is required");
      const result = await sessions.validate(req.accessToken);
      return validateTokenResponse(result.valid ? { ok: true, claims: result.claims } : { ok: false, ...result });
    },

    async revoke(req: RevokeRequest, ctx) {
      requireScope(await caller(ctx), "sessions:revoke");
      if (req.reason === RevocationReason.UNSPECIFIED || !(req.reason in RevocationReason)) {
        throw invalidArgument("reason is required (user_request, security_risk, admin_action, password_changed, account_locked, other)");
      }
      text(req.detail, "detail", 0, 200);
      const t = req.target;
      let ended: number;
      switch (t.case) {
        case "accessToken":
          if (t.value.length > deps.maxTokenBytes) throw invalidArgument(`access_token exceeds ${deps.maxTokenBytes} bytes`);
          ended = await sessions.revoke({ kind: "token", accessToken: t.value }, req.reason, ctx);
          break;
        case "sessionId":
          ended = await sessions.revoke({ kind: "session", sid: sessionId(t.value, "session_id") }, req.reason, ctx);
          break;
        case "userId":
          ended = await sessions.revoke({ kind: "user", userId: text(t.value, "user_id", 1, 256) }, req.reason, ctx);
          break;
        default:
          throw invalidArgument("one of access_token, session_id or user_id is required");
      }
      return create(RevokeResponseSchema, { sessionsEnded: ended });
    },

    async logout(req: LogoutRequest, ctx) {
      const claims = requireUser(await caller(ctx));
      const scope = SCOPE_OF[req.scope];
      if (!scope) throw invalidArgument(`scope ${req.scope} is not a LogoutScope`);
      if (scope === "session") sessionId(req.sessionId, "session_id");
      else if (req.sessionId) throw invalidArgument("session_id goes only with LOGOUT_SCOPE_SESSION");
      const ended = await sessions.logout(claims, scope, req.sessionId, ctx);
      return create(LogoutResponseSchema, { sessionsEnded: ended });
    },

    async listSessions(req: ListSessionsRequest, ctx) {
      const who = await caller(ctx);
      let userId: string;
      let currentSid = "";
      if (who.kind === "user" && (!req.userId || req.userId === who.claims.sub)) {
        userId = who.claims.sub;
        currentSid = who.claims.sid;
      } else {
        if (!req.userId) requireUser(who);
        requireScope(who, "sessions:read");
        userId = text(req.userId, "user_id", 1, 256);
      }
      const list = await sessions.listSessions(userId);
      return create(ListSessionsResponseSchema, {
        sessions: list.map((s) =>
          create(SessionInfoSchema, {
            sessionId: s.sid,
            device: { id: s.deviceId, name: s.deviceName },
            userAgent: s.userAgent,
            ipAddress: s.ip,
            createdAt: timestampFromMs(s.createdAt),
            lastActivityAt: timestampFromMs(s.lastActivityAt),
            expiresAt: timestampFromMs(Math.min(s.idleExpiresAt, s.absoluteExpiresAt)),
            absoluteExpiresAt: timestampFromMs(s.absoluteExpiresAt),
            current: s.sid === currentSid,
            clientId: s.clientId,
          }),
        ),
      });
    },

    async getJwks() {
      return create(GetJwksResponseSchema, {
        keys: keys.jwks().map((k) =>
          create(JsonWebKeySchema, {
            kid: k.kid ?? "", kty: k.kty ?? "", alg: k.alg ?? "", use: k.use ?? "", crv: k.crv ?? "",
            x: k.x ?? "", y: k.y ?? "", n: k.n ?? "", e: k.e ?? "",
          }),
        ),
      });
    },
  };
}

function pair(p: IssuedPair) {
  return create(TokenPairSchema, {
    accessToken: p.accessToken,
    accessTokenExpiresAt: timestampFromMs(p.accessTokenExpiresAt),
    refreshToken: p.refreshToken,
    refreshTokenExpiresAt: timestampFromMs(p.refreshTokenExpiresAt),
    tokenType: "Bearer",
  });
}

// Control characters (Unicode Cc: C0, DEL and C1, e.g. U+009B CSI, U+0085 NEL)
// would corrupt logs, terminals and lists shown to users.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function text(value: string, field: string, min: number, max: number): string {
  if (value.length < min) throw invalidArgument(min === 1 ? `${field} is required` : `${field} is shorter than ${min}`);
  if (value.length > max) throw invalidArgument(`${field} exceeds ${max} characters`);
  if (CONTROL.test(value)) throw invalidArgument(`${field} contains control characters`);
  return value;
}

function list(values: string[], field: string): string[] {
  if (values.length > 64) throw invalidArgument(`${field} has more than 64 entries`);
  values.forEach((v, i) => text(v, `${field}[${i}]`, 1, 128));
  return [...values];
}

/** The shortest max_lifetime: the least SA_SESSION_ABSOLUTE_LIFETIME accepts. */
const MIN_SESSION_LIFETIME_MS = 60_000;

/** max_lifetime in ms, or undefined when unset; the session service caps it at the configured lifetime. */
function maxLifetime(value: Duration | undefined): number | undefined {
  if (!value) return undefined;
  const { seconds, nanos } = value;
  if (seconds < 0n || nanos < 0 || nanos > 999_999_999) throw invalidArgument("max_lifetime is not a valid non-negative duration");
  // Anything over ~290 million years is as good as unlimited, and stays a safe number.
  const ms = seconds > 9_000_000_000_000n ? Number.MAX_SAFE_INTEGER : Number(seconds) * 1000 + Math.floor(nanos / 1e6);
  if (ms < MIN_SESSION_LIFETIME_MS) throw invalidArgument(`max_lifetime must be at least ${MIN_SESSION_LIFETIME_MS / 1000}s`);
  return ms;
}

function ipAddress(value: string): string {
  if (value && !isIP(value)) throw invalidArgument("ip_address is not an IPv4 or IPv6 address");
  return value;
}

function sessionId(value: string, field: string): string {
  if (!value) throw invalidArgument(`${field} is required`);
  if (!isSessionId(value)) throw invalidArgument(`${field} is not a session id`);
  return value;
}
