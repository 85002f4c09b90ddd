import type { Logger } from "../shared/logger.js";
import type { SessionStore, StoredSession } from "../store/session-store.js";
import type { SecurityEvents } from "./security-events.js";

export interface LoginWatchOptions {
  store: SessionStore;
  events: SecurityEvents;
  logger: Logger;
  /** Device ids and addresses remembered per user (each); 0 turns the watch off. */
  keep: number;
  /** A device or address not seen for this long is new again. */
  forgetAfterMs: number;
}

/**
 * Raises `new_device_login` when a user logs in from a device id or IP address
 * not among the ones recently seen for them (the store remembers them, in the
 * user's slot, and records the event in the same step). An alert, never a
 * reason to fail the login: a failed check is logged and the login goes ahead.
 */
export class LoginWatch {
  constructor(private readonly o: LoginWatchOptions) {}

  async notice(session: StoredSession, now: number, requestId?: string): Promise<void> {
    const { keep, forgetAfterMs } = this.o;
    if (keep <= 0 || (!session.deviceId && !session.ip)) return;
    try {
      const { newDevice, newIp } = await this.o.store.recordLogin({
        userId: session.userId, sid: session.sid, deviceId: session.deviceId, ip: session.ip, now, keep, forgetAfterMs,
      });
      if (!newDevice && !newIp) return;
      this.o.events.record({
        type: "new_device_login", userId: session.userId, sid: session.sid, at: now,
        ...(newDevice ? { deviceId: session.deviceId } : {}),
        ...(newIp ? { ip: session.ip } : {}),
      }, requestId);
    } catch (e) {
      this.o.logger.warn({ requestId, err: (e as Error).message, sid: session.sid }, "new-device check failed; the login goes ahead");
    }
  }
}
