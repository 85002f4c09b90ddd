import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  RevocationReason, SessionEndedSchema, WatchSessionResponseSchema, type WatchSessionRequest, type WatchSessionResponse,
} from "../gen/sessionauthority/v1/authority_pb.js";
import type { SessionEndFeed, SessionEndNotice } from "../events/session-end-feed.js";
import type { Clock } from "../shared/clock.js";
import { AuthorityError } from "../shared/errors.js";
import type { StoredSession } from "../store/session-store.js";
import type { CallContext, ServerStreamHandler } from "../transport/call-context.js";
import { sessionEndedMessage } from "./session-ended-messages.js";
import type { SessionService } from "./session-service.js";

/** Timer functions, injectable so tests can drive heartbeats. */
export interface WatchTimers {
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface SessionWatchOptions {
  sessions: SessionService;
  feed: SessionEndFeed;
  clock: Clock;
  heartbeatMs: number;
  /** Open streams per user; one more is RESOURCE_EXHAUSTED, so a token holder cannot exhaust memory. */
  maxPerUser: number;
  timers?: WatchTimers;
}

export interface SessionWatch {
  /** The WatchSession RPC, for every transport. */
  handler: ServerStreamHandler<WatchSessionRequest, WatchSessionResponse>;
  /**
   * Ends every open stream with UNAVAILABLE (shutdown), so clients reconnect to
   * another replica; resolves once the handlers have returned (at most `waitMs`).
   */
  closeAll(waitMs?: number): Promise<void>;
  /** Streams open now. */
  readonly open: number;
}

const realTimers: WatchTimers = {
  setInterval: (callback, ms) => setInterval(callback, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/**
 * WatchSession: tells a device when its session ends and when the user's other
 * sessions end, as the session-end feed reports them (NATS across replicas, or
 * the in-process bus). The caller is authenticated by signature first, so a
 * device whose session was revoked while it was away still hears why
 * (SessionEnded at once) instead of a bare UNAUTHENTICATED.
 */
export function createSessionWatch(o: SessionWatchOptions): SessionWatch {
  const timers = o.timers ?? realTimers;
  const perUser = new Map<string, number>();
  const stops = new Set<() => void>();
  let drained: (() => void) | undefined;

  async function* watchSession(_request: WatchSessionRequest, context: CallContext, signal: AbortSignal): AsyncGenerator<WatchSessionResponse> {
    const token = bearerToken(context);
    const verified = await o.sessions.verify(token);
    if (!verified.valid) throw new AuthorityError("unauthenticated", `access token rejected: ${verified.reason}`);
    const { sub: userId, sid } = verified.claims;

    const count = perUser.get(userId) ?? 0;
    if (count >= o.maxPerUser) throw new AuthorityError("resource_exhausted", `at most ${o.maxPerUser} WatchSession streams per user are open at once`);
    perUser.set(userId, count + 1);

    // Subscribed before the store is read, so an end between the two is not missed.
    const notices: SessionEndNotice[] = [];
    let heartbeatDue = false;
    let stopped: AuthorityError | undefined;
    let wake: (() => void) | undefined;
    const poke = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const unsubscribe = o.feed.subscribe(userId, (notice) => {
      notices.push(notice);
      poke();
    });
    const stop = () => {
      stopped = new AuthorityError("unavailable", "the server is shutting down; reconnect");
      poke();
    };
    stops.add(stop);
    signal.addEventListener("abort", poke);
    const heartbeat = timers.setInterval(() => {
      heartbeatDue = true;
      poke();
    }, o.heartbeatMs);

    try {
      const [validation, session] = await Promise.all([o.sessions.validate(token), o.sessions.liveSession(sid)]);
      if (!session || session.userId !== userId) {
        const reason = validation.valid ? RevocationReason.UNSPECIFIED : (validation.revocationReason ?? RevocationReason.UNSPECIFIED);
        yield ended(sid, reason, o.clock.now(), true, false);
        return;
      }
      // The session lives but this token was revoked on its own: the client should refresh.
      if (!validation.valid) throw new AuthorityError("unauthenticated", `access token rejected: ${validation.reason}`);
      yield create(WatchSessionResponseSchema, {
        event: { case: "started", value: { sessionId: sid, sessionExpiresAt: timestampFromMs(session.absoluteExpiresAt) } },
      });

      // The store has the last word: notices travel at most once (a NATS blip loses
      // them) and a user-wide notice carries another replica's clock.
      const gone = async () => !(await o.sessions.liveSession(sid));
      for (;;) {
        while (notices.length) {
          const notice = notices.shift()!;
          const message = toMessage(notice, session) ?? (notice.kind === "user" && (await gone()) ? ended(sid, notice.reason, notice.at, true, true) : undefined);
          if (!message) continue;
          yield message;
          if (message.event.case === "ended") return;
        }
        if (signal.aborted) return;
        if (stopped) throw stopped;
        if (heartbeatDue) {
          heartbeatDue = false;
          if (await gone()) {
            const validation = await o.sessions.validate(token);
            yield ended(sid, validation.valid ? RevocationReason.UNSPECIFIED : (validation.revocationReason ?? RevocationReason.UNSPECIFIED), o.clock.now(), true, false);
            return;
          }
          yield create(WatchSessionResponseSchema, { event: { case: "heartbeat", value: { at: timestampFromMs(o.clock.now()) } } });
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      timers.clearInterval(heartbeat);
      signal.removeEventListener("abort", poke);
      stops.delete(stop);
      if (stops.size === 0) drained?.();
      unsubscribe();
      const left = (perUser.get(userId) ?? 1) - 1;
      if (left > 0) perUser.set(userId, left);
      else perUser.delete(userId);
    }
  }

  return {
    handler: watchSession,
    async closeAll(waitMs = 1000) {
      if (stops.size === 0) return;
      const done = new Promise<void>((resolve) => (drained = resolve));
      for (const stop of stops) stop();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
      clearTimeout(timer);
      // The transports write each stream's final status in the turns after its handler returned.
      await new Promise((resolve) => setTimeout(resolve, 20));
    },
    get open() {
      return stops.size;
    },
  };
}

/** What a notice means to the watcher of `session`; undefined if nothing. */
function toMessage(notice: SessionEndNotice, session: StoredSession): WatchSessionResponse | undefined {
  if (notice.kind === "user") {
    // A global logout ends the sessions that existed then, not a later sign-in.
    return session.createdAt < notice.at ? ended(session.sid, notice.reason, notice.at, true, true) : undefined;
  }
  return ended(notice.sid, notice.reason, notice.at, notice.sid === session.sid, false);
}

function ended(sid: string, reason: number, at: number, own: boolean, allSessions: boolean): WatchSessionResponse {
  const value = create(SessionEndedSchema, {
    sessionId: sid, reason, message: sessionEndedMessage(reason, own), endedAt: timestampFromMs(at), allSessions,
  });
  return create(WatchSessionResponseSchema, { event: own ? { case: "ended", value } : { case: "otherSessionEnded", value } });
}

function bearerToken(context: CallContext): string {
  const match = /^bearer +(\S+)$/i.exec(context.header("authorization")?.trim() ?? "");
  if (!match) throw new AuthorityError("unauthenticated", "WatchSession needs the user's access token (authorization: Bearer ...)");
  return match[1]!;
}
