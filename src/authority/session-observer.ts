/**
 * What the session service reports as sessions come and go, for metrics and
 * alarms. Calls are synchronous and cheap, and never fail a request.
 */
export interface SessionObserver {
  sessionCreated(): void;
  /** A successful Refresh: a new pair, or the same pair again within the grace window. */
  refreshed(result: "rotated" | "grace"): void;
  /** Sessions ended now for `reason` (a RevocationReason), with the absolute expiry of each (0: unknown). */
  sessionsEnded(reason: number, absoluteExpiresAt: readonly number[], now: number): void;
}
