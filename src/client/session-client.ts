// The session client keeps one session alive for a browser page or an app:
//
// - The access token lives in memory only; in browser mode the refresh token is an
//   HttpOnly cookie the SDK never sees, in app mode a storage adapter keeps it.
// - It refreshes ahead of expiry (margin ± jitter) and once when a call is refused with
//   UNAUTHENTICATED / 401. All refreshes of the client share one call in flight; across
//   tabs a lock (Web Locks) elects one refresher, and the grant it obtains is broadcast
//   in memory (BroadcastChannel) so the tabs that waited take it instead of refreshing
//   again. The lock is only an optimisation: acquiring it times out and the tab then
//   refreshes anyway, because the authority's grace window turns two racing refreshes
//   into the same pair. So a stuck or crashed holder delays a refresh, never blocks it.
// - It follows WatchSession, so a revocation ends the session at once, with the reason
//   the authority gave; one tab per session holds the stream and tells the others.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { LogoutScope, SessionAuthorityService } from "../gen/sessionauthority/v1/authority_pb.js";
import { resolveClientOptions, type ResolvedClientOptions, type SessionClientOptions } from "./client-options.js";
import { deviceSessionOf, type DeviceSession } from "./device-session.js";
import { defaultLogoutMessage } from "./logout-messages.js";
import { backoffDelay, plannedRefreshAt } from "./refresh-schedule.js";
import { fromConnectError, SessionClientError } from "./session-client-error.js";
import { Emitter, type LoggedOutEvent, type LoggedOutReason, type RevocationReasonName, type SessionEvents, type SessionSnapshot } from "./session-events.js";
import { peekClaims, type SessionGrant } from "./session-grant.js";
import type { LockHandle } from "./session-lock.js";
import { SessionWatch } from "./session-watch.js";
import { openTabChannel, type TabChannel, type TabMessage } from "./tab-channel.js";
import { Alarm } from "./timers.js";

/**
 * Keeps a user signed in: access token in memory, refreshed ahead of expiry, live
 * logout, device management. Build one with {@link createSessionClient}.
 *
 * @example
 * ```ts
 * const client = createSessionClient({ baseUrl: "https://auth.example.com" });
 * client.on("logged-out", (e) => showLogin(e.message));
 * client.on("expiring", (e) => warn(`Session ends in ${Math.round(e.inMs / 60000)} min`));
 * if (!(await client.resume())) await client.signIn(handoffCode);
 * const res = await client.fetch("https://api.example.com/orders"); // Bearer attached, 401 refreshed once
 * ```
 */
export interface SessionClient<SignIn = string> {
  /** The current session (no token), or undefined when signed out. */
  readonly session: SessionSnapshot | undefined;
  /**
   * Picks up an existing session (cookie, or stored refresh token) with one refresh.
   * Resolves to undefined when there is none; rejects with `unavailable` when the
   * authority cannot be reached.
   */
  resume(): Promise<SessionSnapshot | undefined>;
  /** Starts a session: a handoff code (browser mode) or a CreateSession response (RPC refresher). */
  signIn(input: SignIn): Promise<SessionSnapshot>;
  /** A valid access token, refreshing first if it has (almost) expired; rejects with `signed_out` without a session. */
  getAccessToken(): Promise<string>;
  /** Refreshes now (sharing a refresh already in flight). */
  refresh(): Promise<SessionSnapshot>;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof SessionEvents>(event: K, listener: (payload: SessionEvents[K]) => void): () => void;
  /**
   * A Connect interceptor: attaches `authorization: Bearer <token>` (unless the call has
   * an authorization header already) and, when a unary call is refused with
   * UNAUTHENTICATED, refreshes once and retries it once. Without a session the call
   * rejects with SessionClientError `signed_out` before anything is sent.
   */
  readonly interceptor: Interceptor;
  /**
   * `fetch` with the Bearer token attached; a 401 answer refreshes once and retries once.
   * It sends the token wherever it is pointed: use it for your own APIs only.
   */
  readonly fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
  /** The user's live sessions (ListSessions), the current one marked. */
  listDevices(): Promise<DeviceSession[]>;
  /** Ends one of the user's sessions (Logout scope SESSION); the current one means `logout()`. Resolves to sessions ended. */
  endDevice(sessionId: string): Promise<number>;
  /** Ends every other session of the user (Logout scope OTHERS). Resolves to sessions ended. */
  endOtherDevices(): Promise<number>;
  /**
   * Ends the current session at the authority, then locally (`logged-out` with reason
   * `logout`). Local state is cleared even if the authority cannot be reached (the
   * promise then rejects).
   */
  logout(): Promise<void>;
  /** Ends every session of the user, this one included (Logout scope ALL). Resolves to sessions ended. */
  logoutEverywhere(): Promise<number>;
  /** Stops timers, the watch and the tab channel; pending calls reject with `closed`. */
  close(): void;
}

/**
 * Builds a session client. Browser mode needs only the authority's URL; see
 * {@link SessionClientOptions} for app/Node mode and every tunable.
 *
 * @example
 * ```ts
 * // Browser: refresh token in an HttpOnly cookie set by POST /auth/v1/session.
 * const client = createSessionClient({ baseUrl: "https://auth.example.com" });
 * await client.signIn(handoffCode);
 * const api = createClient(OrdersService, createConnectTransport({ baseUrl: "https://api.example.com", interceptors: [client.interceptor] }));
 *
 * // Node or a mobile app: refresh token in a storage adapter (Keychain / Keystore).
 * const transport = createConnectTransport({ baseUrl: "https://auth.example.com" });
 * const app = createSessionClient({ transport, refresher: createRpcRefresher({ transport, storage }) });
 * await app.resume();
 * ```
 */
export function createSessionClient<SignIn = string>(options: SessionClientOptions<SignIn>): SessionClient<SignIn> {
  return new SessionClientImpl(resolveClientOptions(options));
}

// Clock differences below this are the noise of `iat` having whole seconds and of latency.
const SKEW_THRESHOLD_MS = 5_000;
// Sessions remembered as over, so a late broadcast or a racing refresh cannot revive them.
const ENDED_MEMORY = 16;

class SessionClientImpl<SignIn> implements SessionClient<SignIn> {
  private grant: SessionGrant | undefined;
  private skewMs = 0;
  private inFlight: Promise<SessionGrant> | undefined;
  private retryAttempt = 0;
  private warnedFor: number | undefined;
  private closed = false;
  private readonly ended: string[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly lifetime = new AbortController();
  private readonly refreshAlarm;
  private readonly expiringAlarm;
  private readonly endAlarm;
  private readonly events: Emitter<SessionEvents>;
  private readonly channel: TabChannel | undefined;
  private readonly watch: SessionWatch | undefined;
  private readonly rpc;
  private readonly lockName: string;
  private readonly unlistenWake: () => void;

  constructor(private readonly o: ResolvedClientOptions<SignIn>) {
    this.refreshAlarm = new Alarm(o.clock, o.timers);
    this.expiringAlarm = new Alarm(o.clock, o.timers);
    this.endAlarm = new Alarm(o.clock, o.timers);
    this.events = new Emitter((error) => o.logger.warn("a session event listener threw", { error: String(error) }));
    const name = o.channelName || "session-authority";
    this.lockName = `${name}:refresh`;
    this.channel = o.channelName === false ? undefined : openTabChannel(o.channelName, (m) => this.onTabMessage(m));
    this.rpc = createClient(SessionAuthorityService, o.transport);
    this.watch = o.watchSession
      ? new SessionWatch({
          transport: o.transport,
          clock: o.clock,
          timers: o.timers,
          random: o.random,
          lock: o.lock,
          lockName: `${name}:watch`,
          heartbeatTimeoutMs: o.heartbeatTimeoutMs,
          reconnectInitialMs: o.reconnectInitialMs,
          reconnectMaxMs: o.reconnectMaxMs,
          getAccessToken: () => this.getAccessToken(),
          refreshAfterRejection: (token) => this.refreshAfterRejection(token),
          onEnded: (end) =>
            this.endSession(end.sessionId, "revoked", { revocationReason: end.revocationReason, message: end.message, allSessions: end.allSessions }),
          onOtherEnded: (end) => {
            const forSession = this.grant?.sessionId;
            if (!forSession) return;
            const event = { sessionId: end.sessionId, revocationReason: end.revocationReason, message: end.message || defaultLogoutMessage("revoked", end.revocationReason), endedAt: end.endedAt };
            this.channel?.post({ type: "device-ended", forSession, event });
            this.events.emit("device-ended", event);
          },
          onError: (error, retryInMs) => this.events.emit("error", { error, during: "watch", retryInMs }),
        })
      : undefined;
    this.unlistenWake = this.listenForWake();
  }

  get session(): SessionSnapshot | undefined {
    return this.snapshot();
  }

  on<K extends keyof SessionEvents>(event: K, listener: (payload: SessionEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  async resume(): Promise<SessionSnapshot | undefined> {
    this.assertOpen();
    if (this.grant) return this.snapshot();
    try {
      await this.refreshOnce(undefined);
    } catch (error) {
      if (error instanceof SessionClientError && (error.endsSession || error.code === "signed_out")) return undefined;
      throw error;
    }
    return this.snapshot();
  }

  async signIn(input: SignIn): Promise<SessionSnapshot> {
    this.assertOpen();
    const { refresher } = this.o;
    if (typeof refresher.signIn !== "function") throw new SessionClientError("unsupported", "this refresher cannot sign in");
    const previous = this.inFlight;
    const operation = (async () => {
      await previous?.catch(() => {});
      const grant = await this.withTimeout((signal) => refresher.signIn!(input, signal));
      if (!this.adopt(grant, "sign-in")) throw new SessionClientError("closed", "the client was closed");
      return grant;
    })();
    this.track(operation);
    await operation;
    return this.snapshot()!;
  }

  async getAccessToken(): Promise<string> {
    this.assertOpen();
    const held = this.grant;
    if (held && this.remainingMs(held) > this.o.minTokenValidityMs) return held.accessToken;
    if (!held && !this.inFlight) throw new SessionClientError("signed_out", "not signed in");
    try {
      return (await this.refreshOnce(held?.accessToken)).accessToken;
    } catch (error) {
      // Offline close to expiry: a token that has not expired yet may still pass.
      const now = this.grant;
      if (now && (error as SessionClientError).code === "unavailable" && this.remainingMs(now) > 0) return now.accessToken;
      throw error;
    }
  }

  async refresh(): Promise<SessionSnapshot> {
    this.assertOpen();
    await this.refreshOnce(this.grant?.accessToken);
    return this.snapshot()!;
  }

  readonly interceptor: Interceptor = (next) => async (request) => {
    if (request.header.has("authorization")) return next(request);
    const token = await this.getAccessToken();
    request.header.set("authorization", `Bearer ${token}`);
    try {
      return await next(request);
    } catch (error) {
      // A streaming request body cannot be replayed; WatchSession handles its own refusals.
      if (request.stream || ConnectError.from(error).code !== Code.Unauthenticated) throw error;
      let fresh: string;
      try {
        fresh = await this.refreshAfterRejection(token);
      } catch {
        throw error; // the refusal stands; `logged-out` tells the app if the session is over
      }
      request.header.set("authorization", `Bearer ${fresh}`);
      return await next(request);
    }
  };

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const token = await this.getAccessToken();
    const request = new Request(input, init);
    const spare = request.clone(); // taken before the body is sent, for the one retry
    request.headers.set("authorization", `Bearer ${token}`);
    const send = this.o.fetch ?? globalThis.fetch;
    const response = await send(request);
    if (response.status !== 401) return response;
    let fresh: string;
    try {
      fresh = await this.refreshAfterRejection(token);
    } catch {
      return response;
    }
    await response.body?.cancel().catch(() => {});
    spare.headers.set("authorization", `Bearer ${fresh}`);
    return send(spare);
  };

  async listDevices(): Promise<DeviceSession[]> {
    const answer = await this.authorized("listDevices", (headers) => this.rpc.listSessions({}, { headers, timeoutMs: this.o.requestTimeoutMs }));
    return answer.sessions.map(deviceSessionOf);
  }

  async endDevice(sessionId: string): Promise<number> {
    if (typeof sessionId !== "string" || !sessionId) throw new SessionClientError("invalid_argument", "endDevice needs a session id");
    if (sessionId === this.grant?.sessionId) return this.endWith("current");
    const answer = await this.authorized("endDevice", (headers) =>
      this.rpc.logout({ scope: LogoutScope.SESSION, sessionId }, { headers, timeoutMs: this.o.requestTimeoutMs }),
    );
    return answer.sessionsEnded;
  }

  async endOtherDevices(): Promise<number> {
    const answer = await this.authorized("endOtherDevices", (headers) =>
      this.rpc.logout({ scope: LogoutScope.OTHERS }, { headers, timeoutMs: this.o.requestTimeoutMs }),
    );
    return answer.sessionsEnded;
  }

  async logout(): Promise<void> {
    await this.endWith("current");
  }

  logoutEverywhere(): Promise<number> {
    return this.endWith("all");
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.lifetime.abort(new SessionClientError("closed", "the client was closed"));
    this.refreshAlarm.cancel();
    this.expiringAlarm.cancel();
    this.endAlarm.cancel();
    this.watch?.close();
    this.channel?.close();
    this.unlistenWake();
    this.events.clear();
    this.waiters.clear();
  }

  // ---- refreshing ----

  /** One refresh at a time per client: every caller joins the one in flight. */
  private refreshOnce(staleToken: string | undefined): Promise<SessionGrant> {
    if (this.closed) return Promise.reject(new SessionClientError("closed", "the client was closed"));
    return this.inFlight ?? this.track(this.runRefresh(staleToken));
  }

  private track(operation: Promise<SessionGrant>): Promise<SessionGrant> {
    this.inFlight = operation;
    operation.then(
      () => this.inFlight === operation && (this.inFlight = undefined),
      () => this.inFlight === operation && (this.inFlight = undefined),
    );
    return operation;
  }

  private async runRefresh(staleToken: string | undefined): Promise<SessionGrant> {
    const startedFor = this.grant?.sessionId;
    // Another tab's grant will do if it is not the token we found wanting and has life left.
    const satisfied = (): SessionGrant | undefined => {
      const g = this.grant;
      return g && g.accessToken !== staleToken && this.remainingMs(g) > this.o.minTokenValidityMs ? g : undefined;
    };
    const endedMeanwhile = () => startedFor !== undefined && !this.grant && this.ended.includes(startedFor);
    const early = satisfied();
    if (early) return early;

    const { handle, grant: handedOver } = await this.lockForRefresh(satisfied);
    try {
      let outcome: SessionGrant | "ended" | undefined = handedOver ?? satisfied();
      // We waited for another tab: its grant may still be on its way over the channel.
      if (!outcome && handle?.contended) outcome = await this.waitFor(() => satisfied() ?? (endedMeanwhile() ? "ended" : undefined), this.o.handoverWaitMs);
      if (outcome === "ended" || endedMeanwhile()) throw new SessionClientError("signed_out", "the session ended while waiting to refresh");
      if (outcome) return outcome;
      if (this.closed) throw new SessionClientError("closed", "the client was closed");

      let grant: SessionGrant;
      try {
        grant = await this.withTimeout((signal) => this.o.refresher.refresh(signal));
      } catch (error) {
        throw this.refreshFailed(asClientError(error, "refresh"));
      }
      if (!this.adopt(grant, "refresh")) throw new SessionClientError("signed_out", "the session ended during the refresh");
      return grant;
    } finally {
      handle?.release();
    }
  }

  /**
   * Takes the cross-tab refresh lock, unless another tab's grant satisfies us first.
   * After lockTimeoutMs it gives up and the caller refreshes without the lock.
   */
  private async lockForRefresh(satisfied: () => SessionGrant | undefined): Promise<{ handle?: LockHandle; grant?: SessionGrant }> {
    const { timers, lockTimeoutMs } = this.o;
    const abort = new AbortController();
    const timer = timers.setTimeout(() => abort.abort(new SessionClientError("unavailable", "refresh lock timeout")), lockTimeoutMs);
    const acquiring = Promise.resolve().then(() => this.o.lock.acquire(this.lockName, abort.signal));
    const handover = this.waitForGrant(satisfied);
    // The timeout holds even for a lock that ignores its signal.
    const timedOut = new Promise<never>((_, reject) => abort.signal.addEventListener("abort", () => reject(abort.signal.reason), { once: true }));
    try {
      const first = await Promise.race([acquiring.then((handle) => ({ handle })), handover.promise.then((grant) => ({ grant })), timedOut]);
      if ("grant" in first) {
        abort.abort();
        acquiring.then((late) => late.release(), () => {});
        return { grant: first.grant };
      }
      return { handle: first.handle };
    } catch {
      acquiring.then((late) => late.release(), () => {});
      this.o.logger.warn("refresh lock not acquired in time; refreshing without it", { lockTimeoutMs });
      return {};
    } finally {
      timers.clearTimeout(timer);
      handover.cancel();
    }
  }

  private refreshFailed(error: SessionClientError): SessionClientError {
    if (error.endsSession) {
      if (this.grant) this.endSession(this.grant.sessionId, error.code as LoggedOutReason);
      else this.clearCredential();
      return error;
    }
    if (this.grant && !this.closed) {
      const delay = backoffDelay(this.retryAttempt++, this.o.retryInitialMs, this.o.retryMaxMs, this.o.random());
      this.refreshAlarm.set(this.o.clock.now() + delay, () => this.backgroundRefresh());
      this.events.emit("error", { error, during: "refresh", retryInMs: delay });
    }
    return error;
  }

  private backgroundRefresh(): void {
    // Failures are handled in refreshFailed (event, retry or logout).
    this.refreshOnce(this.grant?.accessToken).catch(() => {});
  }

  private async refreshAfterRejection(rejectedToken: string): Promise<string> {
    const held = this.grant;
    if (held && held.accessToken !== rejectedToken) return held.accessToken;
    if (!held && !this.inFlight) throw new SessionClientError("signed_out", "not signed in");
    return (await this.refreshOnce(rejectedToken)).accessToken;
  }

  // ---- state ----

  /** Takes a grant as the current one; false if its session is over or the client closed. */
  private adopt(grant: SessionGrant, source: "refresh" | "sign-in" | "other-tab"): boolean {
    if (this.closed || this.ended.includes(grant.sessionId)) return false;
    const previous = this.grant;
    if (previous && previous.sessionId !== grant.sessionId) this.markEnded(previous.sessionId); // replaced by a new sign-in
    const iat = peekClaims(grant.accessToken).iatMs;
    if (iat !== undefined) {
      const skew = iat - this.o.clock.now();
      this.skewMs = Math.abs(skew) >= SKEW_THRESHOLD_MS ? skew : 0;
    }
    this.grant = grant;
    this.retryAttempt = 0;
    this.schedule(grant);
    if (source !== "other-tab") this.channel?.post({ type: "grant", grant });
    this.watch?.start(grant.sessionId);
    this.notifyWaiters();
    this.events.emit("refreshed", { session: this.snapshot()!, source });
    return true;
  }

  private schedule(grant: SessionGrant): void {
    const { clock, refreshMarginMs, refreshJitterMs, expiringWarningMs } = this.o;
    const now = clock.now();
    // A token that lives as long as the session cannot be outlived by refreshing: leave it to the end alarm.
    // JWT times are whole seconds, so the last token a refresh can bring expires at the session's end
    // rounded down to the second; refreshing a token that has it would only bring it again, faster and faster.
    if (grant.accessTokenExpiresAt < Math.floor(grant.sessionExpiresAt / 1000) * 1000) {
      const at = plannedRefreshAt(now, this.local(grant.accessTokenExpiresAt), refreshMarginMs, refreshJitterMs, this.o.random());
      this.refreshAlarm.set(at, () => this.backgroundRefresh());
    } else {
      this.refreshAlarm.cancel();
    }
    // Unless a refresh succeeds first, the session ends at the earlier of its idle deadline and its absolute end.
    const endsAt = this.local(Math.min(grant.refreshExpiresAt, grant.sessionExpiresAt));
    const cause = grant.sessionExpiresAt <= grant.refreshExpiresAt ? "lifetime" : "idle";
    this.endAlarm.set(endsAt, () => this.endSession(grant.sessionId, "expired"));
    if (this.warnedFor === endsAt) return this.expiringAlarm.cancel();
    this.expiringAlarm.set(endsAt - expiringWarningMs, () => {
      this.warnedFor = endsAt;
      this.events.emit("expiring", { sessionId: grant.sessionId, endsAt, inMs: Math.max(0, endsAt - clock.now()), cause });
    });
  }

  /** Ends `sessionId` locally if it is the current one: timers, watch, credential, other tabs, then `logged-out`. */
  private endSession(
    sessionId: string,
    reason: LoggedOutReason,
    details: { revocationReason?: RevocationReasonName; message?: string; allSessions?: boolean } = {},
    fromOtherTab = false,
  ): void {
    this.markEnded(sessionId);
    if (this.grant?.sessionId !== sessionId) return;
    this.grant = undefined;
    this.refreshAlarm.cancel();
    this.expiringAlarm.cancel();
    this.endAlarm.cancel();
    this.warnedFor = undefined;
    this.watch?.stop();
    this.clearCredential();
    const event: LoggedOutEvent = {
      reason,
      ...(details.revocationReason ? { revocationReason: details.revocationReason } : {}),
      message: details.message || defaultLogoutMessage(reason, details.revocationReason),
      sessionId,
      allSessions: details.allSessions ?? false,
    };
    if (!fromOtherTab) this.channel?.post({ type: "logged-out", event });
    this.notifyWaiters();
    this.events.emit("logged-out", event);
  }

  private onTabMessage(message: TabMessage): void {
    if (this.closed) return;
    const held = this.grant;
    switch (message.type) {
      case "grant": {
        const g = message.grant;
        const take = held
          ? held.sessionId === g.sessionId
            ? g.accessToken !== held.accessToken && g.accessTokenExpiresAt >= held.accessTokenExpiresAt
            : this.o.refresher.sharedCredential // the shared cookie now belongs to a newer sign-in
          : this.o.refresher.sharedCredential;
        if (take) this.adopt(g, "other-tab");
        return;
      }
      case "logged-out": {
        const e = message.event;
        return this.endSession(e.sessionId, e.reason, e, true);
      }
      case "device-ended":
        if (held?.sessionId === message.forSession) this.events.emit("device-ended", message.event);
        return;
    }
  }

  private async endWith(scope: "current" | "all"): Promise<number> {
    this.assertOpen();
    const held = this.grant;
    const token = held ? await this.getAccessToken().catch(() => held.accessToken) : undefined;
    // Signed out locally at once, whatever the network does; the authority is told next.
    const current = this.grant ?? held;
    if (current) this.endSession(current.sessionId, "logout", { allSessions: scope === "all" });
    try {
      return await this.withTimeout((signal) => this.o.refresher.logout(scope, token, signal));
    } catch (error) {
      const e = asClientError(error, "logout");
      if (e.endsSession) return 0; // already over, which is what was asked
      throw e;
    }
  }

  /** Runs a Connect call with the Bearer token; on UNAUTHENTICATED refreshes once and retries once. */
  private async authorized<T>(what: string, call: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    this.assertOpen();
    const token = await this.getAccessToken();
    try {
      return await call({ authorization: `Bearer ${token}` });
    } catch (error) {
      if (ConnectError.from(error).code !== Code.Unauthenticated) throw fromConnectError(error, what);
      const fresh = await this.refreshAfterRejection(token);
      try {
        return await call({ authorization: `Bearer ${fresh}` });
      } catch (retryError) {
        throw fromConnectError(retryError, what);
      }
    }
  }

  // ---- helpers ----

  /** Runs a request with the request timeout and the client's lifetime; never outlives either. */
  private withTimeout<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const { timers, requestTimeoutMs } = this.o;
    const abort = new AbortController();
    const stop = (reason: unknown) => abort.abort(reason);
    const onClose = () => stop(this.lifetime.signal.reason);
    this.lifetime.signal.addEventListener("abort", onClose, { once: true });
    const timer = timers.setTimeout(() => stop(new SessionClientError("unavailable", `no answer within ${requestTimeoutMs} ms`)), requestTimeoutMs);
    // Even a fetch or refresher that ignores its signal cannot hold us past the timeout.
    const aborted = new Promise<never>((_, reject) => abort.signal.addEventListener("abort", () => reject(abort.signal.reason), { once: true }));
    aborted.catch(() => {});
    return Promise.race([Promise.resolve().then(() => run(abort.signal)), aborted]).finally(() => {
      timers.clearTimeout(timer);
      this.lifetime.signal.removeEventListener("abort", onClose);
    });
  }

  private waitForGrant<T>(check: () => T | undefined): { promise: Promise<T>; cancel(): void } {
    let notify!: () => void;
    const promise = new Promise<T>((resolve) => {
      notify = () => {
        const value = check();
        if (value === undefined) return;
        this.waiters.delete(notify);
        resolve(value);
      };
    });
    this.waiters.add(notify);
    notify(); // it may hold already
    return { promise, cancel: () => this.waiters.delete(notify) };
  }

  private async waitFor<T>(check: () => T | undefined, ms: number): Promise<T | undefined> {
    const waiter = this.waitForGrant(check);
    let timer: unknown;
    const timeout = new Promise<undefined>((resolve) => (timer = this.o.timers.setTimeout(() => resolve(undefined), ms)));
    try {
      return await Promise.race([waiter.promise, timeout]);
    } finally {
      waiter.cancel();
      this.o.timers.clearTimeout(timer);
    }
  }

  private notifyWaiters(): void {
    for (const notify of [...this.waiters]) notify();
  }

  private markEnded(sessionId: string): void {
    if (this.ended.includes(sessionId)) return;
    this.ended.push(sessionId);
    if (this.ended.length > ENDED_MEMORY) this.ended.shift();
  }

  private clearCredential(): void {
    this.o.refresher.clear().catch((error) => this.o.logger.warn("clearing the refresh credential failed", { error: String(error) }));
  }

  /** An authority timestamp on the local clock. */
  private local(authorityMs: number): number {
    return authorityMs - this.skewMs;
  }

  private remainingMs(grant: SessionGrant): number {
    return this.local(grant.accessTokenExpiresAt) - this.o.clock.now();
  }

  private snapshot(): SessionSnapshot | undefined {
    const g = this.grant;
    if (!g) return undefined;
    return {
      sessionId: g.sessionId,
      userId: g.userId,
      accessTokenExpiresAt: this.local(g.accessTokenExpiresAt),
      refreshExpiresAt: this.local(g.refreshExpiresAt),
      sessionExpiresAt: this.local(g.sessionExpiresAt),
      clockSkewMs: this.skewMs,
    };
  }

  private assertOpen(): void {
    if (this.closed) throw new SessionClientError("closed", "the client was closed");
  }

  /**
   * Browsers throttle timers in background tabs and stop them in sleep: when the page
   * becomes visible or the network returns, refresh at once if one is due or failing.
   */
  private listenForWake(): () => void {
    const target = globalThis as { addEventListener?: EventTarget["addEventListener"]; removeEventListener?: EventTarget["removeEventListener"] };
    const doc = (globalThis as { document?: { visibilityState?: string } & Partial<EventTarget> }).document;
    if (typeof target.addEventListener !== "function" || !doc || typeof doc.addEventListener !== "function") return () => {};
    const wake = () => {
      const g = this.grant;
      if (!g || doc.visibilityState === "hidden") return;
      if (this.retryAttempt > 0 || this.remainingMs(g) <= this.o.refreshMarginMs) this.backgroundRefresh();
    };
    target.addEventListener("online", wake);
    doc.addEventListener("visibilitychange", wake);
    return () => {
      target.removeEventListener?.("online", wake);
      doc.removeEventListener?.("visibilitychange", wake);
    };
  }
}

function asClientError(error: unknown, what: string): SessionClientError {
  if (error instanceof SessionClientError) return error;
  return new SessionClientError("unavailable", `${what} failed: ${error instanceof Error ? error.message : String(error)}`, undefined, error);
}
