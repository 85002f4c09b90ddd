import type { Logger } from "../shared/logger.js";

/** A security-relevant occurrence worth alerting on. */
export interface SecurityEvent {
  type: "refresh_reuse";
  userId: string;
  sid: string;
  at: number;
}

export type SecurityEventListener = (event: SecurityEvent) => void;

/** Where security events go: always the log (warn), plus any subscriber (tests, publishers). */
export class SecurityEvents {
  private readonly listeners = new Set<SecurityEventListener>();

  constructor(private readonly logger: Logger) {}

  record(event: SecurityEvent): void {
    this.logger.warn({ securityEvent: event.type, userId: event.userId, sid: event.sid }, "security event");
    for (const listener of this.listeners) listener(event);
  }

  subscribe(listener: SecurityEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
