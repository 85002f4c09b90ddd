import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { SessionStore } from "../store/session-store.js";

export interface ActiveSessionCountOptions {
  store: SessionStore;
  clock: Clock;
  logger: Logger;
  /** How often; 0 turns the count off. */
  intervalMs: number;
  gauge: { set(value: number): void };
}

/**
 * Keeps the active-sessions gauge current from the store, not from a counter
 * in this process: sessions end silently by expiry, and other replicas create
 * them. Every replica asks each interval; the store lets one of them recount
 * (a keyspace SCAN on Redis) and hands the others that count.
 */
export function startActiveSessionCount(o: ActiveSessionCountOptions): () => void {
  if (o.intervalMs <= 0) return () => {};
  let counting = false;
  const tick = () => {
    if (counting) return;
    counting = true;
    o.store.countLiveSessions(o.clock.now(), o.intervalMs).then(
      (count) => {
        counting = false;
        if (count !== undefined) o.gauge.set(count);
      },
      (e) => {
        counting = false;
        o.logger.debug({ err: (e as Error).message }, "active sessions not counted");
      },
    );
  };
  tick();
  const timer = setInterval(tick, o.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
