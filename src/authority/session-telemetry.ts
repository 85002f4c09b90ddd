import type { AuthorityMetrics } from "../metrics/authority-metrics.js";
import type { SessionObserver } from "./session-observer.js";
import type { ThresholdAlarm } from "./threshold-alarm.js";

/**
 * Turns what the session service reports into metrics, and feeds ended
 * sessions to the mass-logout alarm.
 */
export class SessionTelemetry implements SessionObserver {
  constructor(
    private readonly metrics: AuthorityMetrics,
    private readonly massLogout: ThresholdAlarm,
    /** SA_SESSION_ABSOLUTE_LIFETIME: a session was created this long before its absolute expiry. */
    private readonly absoluteLifetimeMs: number,
  ) {}

  sessionCreated(): void {
    this.metrics.loggedIn();
  }

  refreshed(result: "rotated" | "grace"): void {
    this.metrics.refreshed(result);
  }

  sessionsEnded(reason: number, absoluteExpiresAt: readonly number[], now: number): void {
    // The store keeps no creation time where its scripts can read it, but every
    // session's absolute expiry is its creation plus the lifetime: exact unless
    // SA_SESSION_ABSOLUTE_LIFETIME changed since the session began.
    this.metrics.sessionsEnded(reason, absoluteExpiresAt.map((at) => (at > 0 ? now - (at - this.absoluteLifetimeMs) : undefined)));
    this.massLogout.add(absoluteExpiresAt.length);
  }
}
