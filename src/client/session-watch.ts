import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { SessionAuthorityService, type SessionEnded } from "../gen/sessionauthority/v1/authority_pb.js";
import type { Clock } from "../shared/clock.js";
import { revocationReasonName } from "./logout-messages.js";
import { backoffDelay } from "./refresh-schedule.js";
import { SessionClientError } from "./session-client-error.js";
import type { RevocationReasonName } from "./session-events.js";
import type { LockHandle, SessionLock } from "./session-lock.js";
import { Alarm, sleep, type Timers } from "./timers.js";

/** A SessionEnded message as the SDK passes it on. */
export interface WatchedEnd {
  sessionId: string;
  revocationReason: RevocationReasonName;
  /** From the authority; may be empty. */
  message: string;
  /** Authority epoch ms; 0 when unknown. */
  endedAt: number;
  allSessions: boolean;
}

/** What the watch needs from its client. */
export interface SessionWatchDeps {
  transport: Transport;
  clock: Clock;
  timers: Timers;
  random: () => number;
  lock: SessionLock;
  /** Prefix of the per-session leader lock: one tab watches a session, the others hear it over the tab channel. */
  lockName: string;
  heartbeatTimeoutMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  getAccessToken(): Promise<string>;
  /** Called when the stream was refused with UNAUTHENTICATED; rejects when no new token can be had. */
  refreshAfterRejection(rejectedToken: string): Promise<unknown>;
  onEnded(end: WatchedEnd): void;
  onOtherEnded(end: WatchedEnd): void;
  onError(error: Error, retryInMs: number | undefined): void;
}

type Outcome =
  | { kind: "ended" }
  | { kind: "stopped" }
  | { kind: "fatal"; error: Error }
  | { kind: "retry"; error: Error; started: boolean; immediate: boolean };

/**
 * Follows the WatchSession server stream of one session: reports its end (and other
 * devices' ends), reconnects with backoff when the stream drops or falls silent for
 * longer than the heartbeat timeout, and stops for good after SessionEnded.
 */
export class SessionWatch {
  private readonly rpc;
  private current: { sessionId: string; abort: AbortController } | undefined;
  /**
   * Leader locks of sessions no longer watched. Kept until close(): were one released
   * when its session ended, a waiting tab could take it and connect before the
   * broadcast of that end reached it, then report a refused refresh instead of the
   * authority's reason.
   */
  private readonly retained: LockHandle[] = [];
  private closed = false;
  /** Streams opened so far; for status and tests. */
  connects = 0;

  constructor(private readonly deps: SessionWatchDeps) {
    this.rpc = createClient(SessionAuthorityService, deps.transport);
  }

  /** Watches `sessionId` (a no-op if already watching it; any other watch stops). */
  start(sessionId: string): void {
    if (this.current?.sessionId === sessionId) return;
    this.stop();
    const abort = new AbortController();
    this.current = { sessionId, abort };
    void this.run(sessionId, abort.signal);
  }

  stop(): void {
    this.current?.abort.abort(new SessionClientError("closed", "watch stopped"));
    this.current = undefined;
  }

  /** Stops watching and lets another tab lead. */
  close(): void {
    this.closed = true;
    this.stop();
    for (const handle of this.retained.splice(0)) handle.release();
  }

  private async run(sessionId: string, signal: AbortSignal): Promise<void> {
    const { deps } = this;
    let leader;
    try {
      leader = await deps.lock.acquire(`${deps.lockName}:${sessionId}`, signal);
    } catch {
      return; // stopped before this tab's turn came
    }
    let keepLeading = true;
    try {
      let attempt = 0;
      for (;;) {
        const outcome = await this.once(sessionId, signal);
        if (outcome.kind === "ended" || outcome.kind === "stopped") return;
        if (outcome.kind === "fatal") {
          keepLeading = false; // let a later start (this tab's or another's) try again
          return deps.onError(outcome.error, undefined);
        }
        if (outcome.started) attempt = 0;
        const delay = outcome.immediate && attempt === 0 ? 0 : backoffDelay(attempt, deps.reconnectInitialMs, deps.reconnectMaxMs, deps.random());
        attempt++;
        deps.onError(outcome.error, delay);
        try {
          await sleep(deps.timers, delay, signal);
        } catch {
          return;
        }
      }
    } finally {
      if (this.closed || !keepLeading) leader.release();
      else this.retained.push(leader);
      if (this.current?.abort.signal === signal) this.current = undefined;
    }
  }

  /** One stream, from connect to its end. */
  private async once(sessionId: string, signal: AbortSignal): Promise<Outcome> {
    const { deps } = this;
    let token: string;
    try {
      token = await deps.getAccessToken();
    } catch (error) {
      if (signal.aborted) return { kind: "stopped" };
      const e = error as SessionClientError;
      // No session any more: the client is ending it (or has), which stops this watch.
      if (e.code !== "unavailable") return { kind: "stopped" };
      return { kind: "retry", error: e, started: false, immediate: false };
    }
    if (signal.aborted) return { kind: "stopped" };

    const stream = new AbortController();
    const stopStream = () => stream.abort();
    signal.addEventListener("abort", stopStream, { once: true });
    let silent = false;
    let started = false;
    const gap = new Alarm(deps.clock, deps.timers);
    const armGap = () =>
      gap.set(deps.clock.now() + deps.heartbeatTimeoutMs, () => {
        silent = true;
        stream.abort();
      });
    try {
      armGap();
      this.connects++;
      const messages = this.rpc.watchSession({}, { signal: stream.signal, headers: { authorization: `Bearer ${token}` } });
      for await (const { event } of messages) {
        armGap();
        switch (event.case) {
          case "started":
            started = true;
            break;
          case "ended":
            deps.onEnded(watchedEnd(event.value, sessionId));
            return { kind: "ended" };
          case "otherSessionEnded":
            deps.onOtherEnded(watchedEnd(event.value, event.value.sessionId));
            break;
        }
      }
      return { kind: "retry", error: new SessionClientError("unavailable", "the WatchSession stream closed without SessionEnded"), started, immediate: false };
    } catch (error) {
      if (signal.aborted) return { kind: "stopped" };
      if (silent) {
        return { kind: "retry", error: new SessionClientError("unavailable", `no WatchSession message for ${deps.heartbeatTimeoutMs} ms`), started, immediate: true };
      }
      const ce = ConnectError.from(error);
      if (ce.code === Code.Unimplemented) {
        return { kind: "fatal", error: new SessionClientError("unsupported", "the authority does not serve WatchSession", undefined, error) };
      }
      if (ce.code === Code.Unauthenticated) {
        try {
          await deps.refreshAfterRejection(token);
        } catch (refreshError) {
          if (signal.aborted || (refreshError as SessionClientError).code !== "unavailable") return { kind: "stopped" };
          return { kind: "retry", error: refreshError as Error, started, immediate: false };
        }
        return { kind: "retry", error: new SessionClientError("unauthenticated", "WatchSession refused the access token; refreshed"), started, immediate: true };
      }
      return { kind: "retry", error: new SessionClientError("unavailable", `WatchSession stream failed: ${ce.rawMessage || Code[ce.code]}`, undefined, error), started, immediate: false };
    } finally {
      gap.cancel();
      signal.removeEventListener("abort", stopStream);
    }
  }
}

function watchedEnd(ended: SessionEnded, sessionId: string): WatchedEnd {
  return {
    sessionId,
    revocationReason: revocationReasonName(ended.reason),
    message: ended.message,
    endedAt: ended.endedAt ? timestampMs(ended.endedAt) : 0,
    allSessions: ended.allSessions,
  };
}
