import { securityEventDetail, type SecurityEventFacts, type SecurityEventType } from "../events/security-event-detail.js";
import type { Logger } from "../shared/logger.js";

export type { SecurityEventType };

/** A security-relevant occurrence worth alerting on. */
export interface SecurityEvent extends SecurityEventFacts {
  sid: string;
}

export type SecurityEventListener = (event: SecurityEvent) => void;

/**
 * Types the store records in a user's outbox in the same step as their cause,
 * so the relay publishes them reliably. The others are about a whole replica
 * and are published directly (OutboxRelay.publishSecurityEvent).
 */
export const RECORDED_BY_STORE: ReadonlySet<SecurityEventType> = new Set(["refresh_reuse", "new_device_login", "refresh_rate_exceeded"]);

/** Where security events go: always the log (warn), plus any subscriber (metrics, publishers, tests). */
export class SecurityEvents {
  private readonly listeners = new Set<SecurityEventListener>();

  constructor(private readonly logger: Logger) {}

  /** @param requestId the call that caused it, for the log line. */
  record(event: SecurityEvent, requestId?: string): void {
    this.logger.warn({ requestId, securityEvent: event.type, userId: event.userId, sid: event.sid, detail: securityEventDetail(event) }, "security event");
    for (const listener of this.listeners) listener(event);
  }

  subscribe(listener: SecurityEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
