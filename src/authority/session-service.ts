import { timingSafeEqual } from "node:crypto";
import { RevocationReason } from "../gen/sessionauthority/v1/authority_pb.js";
import type { Config } from "../config/config.js";
import type { Clock } from "../shared/clock.js";
import { AuthorityError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { isSessionId, newSessionId } from "../store/session-id.js";
import type { RefreshRateLimit, SessionStore, StoredSession } from "../store/session-store.js";
import { verifyAccessToken, type AccessTokenClaims, type InvalidReason } from "../verifier/verify-access-token.js";
import type { SessionEndNotice } from "../events/session-end-feed.js";
import type { AccessTokenIssuer } from "./access-token-issuer.js";
import { hashHandoffSecret, newHandoffCode, parseHandoffCode } from "./handoff-code.js";
import {
  formatRefreshToken, hashRefreshSecret, newRefreshSecret, openWithSecret, parseRefreshToken, sealForSecret,
} from "./refresh-token.js";
import type { LoginWatch } from "./login-watch.js";
import type { SecurityEvents } from "./security-events.js";
import type { SessionObserver } from "./session-observer.js";
import type { SigningKeyRing } from "./signing-keys.js";

export type SessionPolicy = Pick<
  Config,
  | "issuer" | "audience" | "defaultClientId" | "accessTokenTtlMs" | "refreshGraceMs" | "sessionIdleTimeoutMs"
  | "sessionTouchIntervalMs" | "sessionAbsoluteLifetimeMs" | "clockSkewMs" | "maxTokenBytes" | "handoffTtlMs"
  | "alertRefreshRateLimit" | "alertRefreshRateWindowMs"
>;

export interface SessionServiceOptions {
  store: SessionStore;
  keys: SigningKeyRing;
  issuer: AccessTokenIssuer;
  policy: SessionPolicy;
  clock: Clock;
  logger: Logger;
  events: SecurityEvents;
  /**
   * Told of every session end this replica causes, after the store has it. Only
   * the in-process bus needs this; with NATS the outbox relay's events tell every
   * replica instead.
   */
  onSessionsEnded?: (notice: SessionEndNotice) => void;
  /**
   * Resolves when the revocations just recorded have reached the event bus (or
   * after a short bound); awaited before a revocation is acknowledged.
   */
  revocationsPublished?: () => Promise<void>;
  /** Told about logins, refreshes and ended sessions (metrics, alarms). */
  observer?: SessionObserver;
  /** Compares each login with the user's recent devices and addresses. */
  loginWatch?: LoginWatch;
}

/** The call a piece of work is for: its log lines carry the request id. */
export interface CallScope {
  readonly requestId: string;
}

/** What the login service says about a new session; the rest is the authority's. */
export type NewSession = Omit<StoredSession, "sid" | "createdAt" | "lastActivityAt" | "idleExpiresAt" | "absoluteExpiresAt">;

/** A token pair as handed to a client. Times in ms since the epoch. */
export interface IssuedPair {
  sid: string;
  userId: string;
  accessToken: string;
  accessTokenExpiresAt: number;
  refreshToken: string;
  refreshTokenExpiresAt: number;
  sessionExpiresAt: number;
}

export type Validation =
  | { valid: true; claims: AccessTokenClaims }
  | { valid: false; reason: InvalidReason; message: string; revocationReason?: RevocationReason };

export type RevokeTarget = { kind: "token"; accessToken: string } | { kind: "session"; sid: string } | { kind: "user"; userId: string };

export type LogoutScope = "current" | "all" | "others" | "session";

/** Older refresh hashes kept per session: presenting any of them is reuse. */
const REFRESH_HISTORY = 4;
/** Sessions whose claims a replica keeps for one-round-trip refreshes (~0.5 KB each). */
const CLAIMS_CACHE_SIZE = 50_000;

/**
 * The session lifecycle: issue, rotate, validate, revoke, list. Transport-free:
 * the RPC handlers translate to and from the wire.
 */
export class SessionService {
  /** Immutable claims of recently seen sessions, by sid (see refresh). */
  private readonly sessionClaims = new Map<string, StoredSession>();
  /** Built once: the rotate path passes the same object every time. */
  private readonly refreshRate: RefreshRateLimit | undefined;

  constructor(private readonly o: SessionServiceOptions) {
    const { alertRefreshRateLimit: limit, alertRefreshRateWindowMs: windowMs } = o.policy;
    this.refreshRate = limit > 0 ? { limit, windowMs } : undefined;
  }

  /**
   * @param maxLifetimeMs shortens the absolute lifetime below the configured one
   *   (a "public computer" sign-in); a longer value changes nothing.
   */
  async createSession(input: NewSession, maxLifetimeMs?: number, call?: CallScope): Promise<IssuedPair> {
    const { store, policy, clock } = this.o;
    const now = clock.now();
    const secret = newRefreshSecret();
    const lifetimeMs = Math.min(policy.sessionAbsoluteLifetimeMs, maxLifetimeMs ?? Infinity);
    const session: StoredSession = {
      ...input,
      clientId: input.clientId || policy.defaultClientId,
      sid: newSessionId(input.userId),
      createdAt: now,
      lastActivityAt: now,
      idleExpiresAt: Math.min(now + policy.sessionIdleTimeoutMs, now + lifetimeMs),
      absoluteExpiresAt: now + lifetimeMs,
    };
    const [notBefore] = await Promise.all([store.createSession(session, hashRefreshSecret(secret), now), this.o.loginWatch?.notice(session, now, call?.requestId)]);
    const access = await this.o.issuer.issue(session, now, notBefore);
    this.remember(session);
    this.o.observer?.sessionCreated();
    this.o.logger.info({ requestId: call?.requestId, sid: session.sid, userId: session.userId, clientId: session.clientId }, "session created");
    return pairOf(session, access, formatRefreshToken(session.sid, secret), session.idleExpiresAt);
  }

  async refresh(refreshToken: string, call?: CallScope): Promise<IssuedPair> {
    const parsed = parseRefreshToken(refreshToken);
    if (!parsed) throw new AuthorityError("refresh_token_invalid", "refresh token is malformed");
    const presented = hashRefreshSecret(parsed.secret);

    // A session's claims never change, so a replica that has seen the session signs
    // the successor before touching the store and rotates in one round trip; the
    // compare-and-set still decides. Anything unexpected takes the careful path.
    const known = this.sessionClaims.get(parsed.sid);
    if (known) {
      const now = this.o.clock.now();
      const attempt = await this.rotate(known, parsed.secret, presented, now, undefined, call);
      if (attempt !== "conflict") return attempt;
    }

    // Three passes at most: a lost compare-and-set race is read again, and then the
    // presented token is the fresh predecessor and takes the grace path.
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = this.o.clock.now();
      const snapshot = await this.o.store.getSession(parsed.sid, now);
      if (!snapshot) {
        this.sessionClaims.delete(parsed.sid);
        throw sessionEnded();
      }
      const { session, refresh } = snapshot;
      this.remember(session);

      if (timingSafeEqual(refresh.current, presented)) {
        const rotated = await this.rotate(session, parsed.secret, presented, now, snapshot.userNotBefore, call);
        if (rotated !== "conflict") return rotated;
        continue;
      }

      const { policy, store } = this.o;
      const position = refresh.history.findIndex((h) => timingSafeEqual(h, presented));
      if (position < 0) throw new AuthorityError("refresh_token_invalid", "refresh token is not valid");
      if (position === 0 && now - refresh.rotatedAt <= policy.refreshGraceMs && refresh.sealedSuccessor) {
        const same = openWithSecret<IssuedPair>(parsed.secret, refresh.sealedSuccessor);
        if (same) {
          this.o.observer?.refreshed("grace");
          return same;
        }
      }
      const outcome = await store.revokeOnReuse({
        sid: session.sid,
        userId: session.userId,
        presented,
        now,
        graceMs: policy.refreshGraceMs,
        coverUntil: this.coverUntil(now),
        reason: RevocationReason.REFRESH_TOKEN_REUSE,
      });
      if (outcome === "grace") continue;
      if (outcome === "unknown") throw sessionEnded();
      const reason = RevocationReason.REFRESH_TOKEN_REUSE;
      await this.sessionsEnded([{ kind: "session", userId: session.userId, sid: session.sid, reason, at: now }], reason, [session.absoluteExpiresAt], now);
      this.o.events.record({ type: "refresh_reuse", userId: session.userId, sid: session.sid, at: now }, call?.requestId);
      throw new AuthorityError("refresh_token_reused", "refresh token was already used; the session has been ended for safety");
    }
    throw new AuthorityError("refresh_token_invalid", "refresh token is not valid");
  }

  /**
   * Who holds a refresh token, without rotating it: the current token, or its
   * predecessor inside the grace window (another tab may just have rotated).
   * For calls where the refresh cookie is the credential but no new pair is due.
   */
  async refreshTokenHolder(refreshToken: string): Promise<{ userId: string; sid: string }> {
    const parsed = parseRefreshToken(refreshToken);
    if (!parsed) throw new AuthorityError("refresh_token_invalid", "refresh token is malformed");
    const presented = hashRefreshSecret(parsed.secret);
    const now = this.o.clock.now();
    const snapshot = await this.o.store.getSession(parsed.sid, now);
    if (!snapshot) throw sessionEnded();
    const { session, refresh } = snapshot;
    const previous = refresh.history[0];
    const current = timingSafeEqual(refresh.current, presented);
    const inGrace = previous !== undefined && now - refresh.rotatedAt <= this.o.policy.refreshGraceMs && timingSafeEqual(previous, presented);
    if (!current && !inGrace) throw new AuthorityError("refresh_token_invalid", "refresh token is not valid");
    return { userId: session.userId, sid: session.sid };
  }

  /**
   * Keeps a new session's first pair for a browser to collect with the returned
   * one-time code (TOKEN_DELIVERY_BROWSER_HANDOFF): sealed under the code, for
   * SA_HANDOFF_TTL.
   */
  async createHandoff(pair: IssuedPair): Promise<{ code: string; expiresAt: number }> {
    const now = this.o.clock.now();
    const expiresAt = now + this.o.policy.handoffTtlMs;
    const { code, secret } = newHandoffCode(pair.sid);
    await this.o.store.putHandoff({ sid: pair.sid, codeHash: hashHandoffSecret(secret), sealed: sealForSecret(secret, pair, "handoff v1"), now, expiresAt });
    return { code, expiresAt };
  }

  /** The pair a handoff code stands for, once: a second use, an unknown or an expired code is refused. */
  async redeemHandoff(code: string, call?: CallScope): Promise<IssuedPair> {
    const refused = () => new AuthorityError("unauthenticated", "the handoff code is unknown, expired or already used");
    const parsed = parseHandoffCode(code);
    if (!parsed) throw refused();
    const now = this.o.clock.now();
    const sealed = await this.o.store.takeHandoff({ sid: parsed.sid, codeHash: hashHandoffSecret(parsed.secret), now });
    const pair = sealed && openWithSecret<IssuedPair>(parsed.secret, sealed, "handoff v1");
    if (!pair) throw refused();
    // Revoked while the code was on its way to the browser.
    if (!(await this.o.store.getSession(pair.sid, now))) throw sessionEnded();
    this.o.logger.info({ requestId: call?.requestId, sid: pair.sid, userId: pair.userId }, "session handed off to a browser");
    return pair;
  }

  /** A live session, or undefined if it ended or expired. */
  async liveSession(sid: string): Promise<StoredSession | undefined> {
    return (await this.o.store.getSession(sid, this.o.clock.now()))?.session;
  }

  /** Signs the successor pair, seals it for the grace window and compare-and-sets the rotation. */
  private async rotate(session: StoredSession, secret: string, presented: Buffer, now: number, notBefore: number | undefined, call?: CallScope): Promise<IssuedPair | "conflict"> {
    const { policy, store } = this.o;
    const nextSecret = newRefreshSecret();
    const access = await this.o.issuer.issue(session, now, notBefore);
    const idleExpiresAt = Math.min(now + policy.sessionIdleTimeoutMs, session.absoluteExpiresAt);
    const pair = pairOf(session, access, formatRefreshToken(session.sid, nextSecret), idleExpiresAt);
    const result = await store.rotateRefresh({
      sid: session.sid,
      userId: session.userId,
      expected: presented,
      next: hashRefreshSecret(nextSecret),
      sealedSuccessor: sealForSecret(secret, pair),
      issuedAt: Math.floor(access.issuedAt / 1000),
      now,
      graceMs: policy.refreshGraceMs,
      idleTimeoutMs: policy.sessionIdleTimeoutMs,
      historySize: REFRESH_HISTORY,
      refreshRate: this.refreshRate,
    });
    if (result.outcome === "rotated") {
      this.o.observer?.refreshed("rotated");
      if (result.rateExceeded) {
        const { limit, windowMs } = this.refreshRate!;
        this.o.events.record({ type: "refresh_rate_exceeded", userId: session.userId, sid: session.sid, at: now, count: limit + 1, windowMs }, call?.requestId);
      }
      return pair;
    }
    if (result.outcome === "conflict") return "conflict";
    this.sessionClaims.delete(session.sid);
    throw sessionEnded();
  }

  private remember(session: StoredSession): void {
    // Insertion order is the eviction order: a bounded map, oldest out first.
    this.sessionClaims.delete(session.sid);
    this.sessionClaims.set(session.sid, session);
    if (this.sessionClaims.size > CLAIMS_CACHE_SIZE) this.sessionClaims.delete(this.sessionClaims.keys().next().value!);
  }

  /** Signature and claims only, no store: what a local verifier can know. */
  async verify(token: string): Promise<Validation> {
    const { keys, policy, clock } = this.o;
    const options = {
      key: (kid: string) => keys.verificationKey(kid),
      issuer: policy.issuer,
      audience: policy.audience,
      clockSkewMs: policy.clockSkewMs,
      maxTokenBytes: policy.maxTokenBytes,
      now: clock.now(),
    };
    let result = verifyAccessToken(token, options);
    if (!result.ok && result.reason === "unknown_key") {
      // Another replica may have rotated: reread the shared key set (rate-limited).
      await keys.reloadForUnknownKid();
      result = verifyAccessToken(token, { ...options, now: clock.now() });
    }
    if (!result.ok) return { valid: false, reason: result.reason, message: result.message };
    if (!isSessionId(result.claims.sid)) return { valid: false, reason: "malformed", message: "claim sid is not a session id" };
    return { valid: true, claims: result.claims };
  }

  /** Authoritative: signature, claims and the revocation state in the store. */
  async validate(token: string): Promise<Validation> {
    const verified = await this.verify(token);
    if (!verified.valid) return verified;
    const { claims } = verified;
    const { policy, clock } = this.o;
    const check = await this.o.store.checkToken({
      userId: claims.sub,
      sid: claims.sid,
      jti: claims.jti,
      issuedAt: claims.iat,
      now: clock.now(),
      touchIntervalMs: policy.sessionTouchIntervalMs,
      idleTimeoutMs: policy.sessionIdleTimeoutMs,
    });
    if (check.revoked) return { valid: false, reason: "revoked", message: "token has been revoked", revocationReason: check.reason };
    return verified;
  }

  async revoke(target: RevokeTarget, reason: RevocationReason, call?: CallScope): Promise<number> {
    const { store, clock, logger } = this.o;
    const now = clock.now();
    switch (target.kind) {
      case "token": {
        const verified = await this.verify(target.accessToken);
        if (!verified.valid) {
          if (verified.reason === "expired") return 0;
          throw new AuthorityError("invalid_argument", `access_token cannot be revoked: ${verified.message}`);
        }
        const { claims } = verified;
        await store.revokeToken({ userId: claims.sub, sid: claims.sid, jti: claims.jti, reason, now, coverUntil: claims.exp * 1000 + this.o.policy.clockSkewMs });
        await this.o.revocationsPublished?.();
        logger.info({ requestId: call?.requestId, jti: claims.jti, sid: claims.sid, reason }, "access token revoked");
        return 0;
      }
      case "session": {
        const snapshot = await store.getSession(target.sid, now);
        const userId = snapshot?.session.userId ?? "";
        const result = await store.endSessions({
          userId, target: { kind: "one", sid: target.sid }, reason, now, coverUntil: this.coverUntil(now), requireOwnership: false,
        });
        const notices = result.ended.length ? [{ kind: "session" as const, userId, sid: target.sid, reason, at: now }] : [];
        await this.sessionsEnded(notices, reason, result.absoluteExpiresAt, now);
        logger.info({ requestId: call?.requestId, sid: target.sid, reason, ended: result.ended.length }, "session revoked");
        return result.ended.length;
      }
      case "user": {
        const result = await store.endSessions({
          userId: target.userId, target: { kind: "all" }, reason, now, coverUntil: this.coverUntil(now), requireOwnership: false,
        });
        await this.sessionsEnded([{ kind: "user", userId: target.userId, reason, at: now }], reason, result.absoluteExpiresAt, now);
        logger.info({ requestId: call?.requestId, userId: target.userId, reason, ended: result.ended.length }, "all sessions of user revoked");
        return result.ended.length;
      }
    }
  }

  /** `caller`: the access token's claims, or who holds the refresh cookie. */
  async logout(caller: Pick<AccessTokenClaims, "sub" | "sid">, scope: LogoutScope, sid?: string, call?: CallScope): Promise<number> {
    const { store, clock, logger } = this.o;
    const now = clock.now();
    const reason = RevocationReason.USER_REQUEST;
    const common = { userId: caller.sub, reason, now, coverUntil: this.coverUntil(now) };
    const target =
      scope === "all" ? ({ kind: "all" } as const)
      : scope === "others" ? ({ kind: "allExcept", sid: caller.sid } as const)
      : ({ kind: "one", sid: scope === "session" ? sid! : caller.sid } as const);
    const result = await store.endSessions({ ...common, target, requireOwnership: scope === "session" });
    if (!result.found) throw new AuthorityError("not_found", "no such session of yours");
    const notices: SessionEndNotice[] = scope === "all"
      ? [{ kind: "user", userId: caller.sub, reason, at: now }]
      : result.ended.map((ended) => ({ kind: "session", userId: caller.sub, sid: ended, reason, at: now }));
    await this.sessionsEnded(notices, reason, result.absoluteExpiresAt, now);
    logger.info({ requestId: call?.requestId, userId: caller.sub, sid: caller.sid, scope, ended: result.ended.length }, "logout");
    return result.ended.length;
  }

  async listSessions(userId: string): Promise<StoredSession[]> {
    return this.o.store.listSessions(userId, this.o.clock.now());
  }

  /**
   * What follows every session end the store recorded: the in-process bus hears
   * it, the answer waits for the event bus (bounded), and metrics count it.
   */
  private async sessionsEnded(notices: SessionEndNotice[], reason: RevocationReason, absoluteExpiresAt: number[], now: number): Promise<void> {
    for (const notice of notices) this.o.onSessionsEnded?.(notice);
    await this.o.revocationsPublished?.();
    this.o.observer?.sessionsEnded(reason, absoluteExpiresAt, now);
  }

  /** Revocation entries must outlive every access token they cover. */
  private coverUntil(now: number): number {
    return now + this.o.policy.accessTokenTtlMs + this.o.policy.clockSkewMs + 1000;
  }
}

const sessionEnded = () => new AuthorityError("session_ended", "the session has ended; sign in again");

function pairOf(session: StoredSession, access: { token: string; expiresAt: number }, refreshToken: string, refreshExpiresAt: number): IssuedPair {
  return {
    sid: session.sid,
    userId: session.userId,
    accessToken: access.token,
    accessTokenExpiresAt: access.expiresAt,
    refreshToken,
    refreshTokenExpiresAt: refreshExpiresAt,
    sessionExpiresAt: session.absoluteExpiresAt,
  };
}

