import { formatDuration } from "../shared/duration.js";

/** The security event types, as named in subjects (`sa.v1.security.<type>`), logs and metrics. */
export type SecurityEventType = "refresh_reuse" | "new_device_login" | "refresh_rate_exceeded" | "mass_logout" | "store_errors";

export const SECURITY_EVENT_TYPES: readonly SecurityEventType[] = [
  "refresh_reuse", "new_device_login", "refresh_rate_exceeded", "mass_logout", "store_errors",
];

/** What a security event says, wherever it was recorded (the store's outbox or one replica). */
export interface SecurityEventFacts {
  type: SecurityEventType;
  /** Empty for alerts about a whole replica (mass_logout, store_errors). */
  userId: string;
  sid?: string;
  at: number;
  /** What the alert counted when it fired (refreshes, ended sessions, store errors). */
  count?: number;
  /** The window `count` was counted in. */
  windowMs?: number;
  /** new_device_login: the device id and the address that were new (absent if not). */
  deviceId?: string;
  ip?: string;
}

/** The human-readable line of an event: for logs and the `detail` field. Never holds a secret. */
export function securityEventDetail(e: SecurityEventFacts): string {
  const within = e.windowMs === undefined ? "" : ` within ${formatDuration(e.windowMs)}`;
  switch (e.type) {
    case "refresh_reuse":
      return "a rotated refresh token was presented again after the grace window; the session was ended";
    case "new_device_login": {
      const what = [
        ...(e.deviceId !== undefined ? [`a new device ${JSON.stringify(e.deviceId)}`] : []),
        ...(e.ip !== undefined ? [`a new IP address ${e.ip}`] : []),
      ];
      return `login from ${what.join(" and ")}`;
    }
    case "refresh_rate_exceeded":
      return `session refreshed ${e.count} times${within}`;
    case "mass_logout":
      return `${e.count} sessions ended${within} on one authority replica`;
    case "store_errors":
      return `${e.count} session store errors${within} on one authority replica`;
  }
}
