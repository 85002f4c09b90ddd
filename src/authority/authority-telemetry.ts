import type { Registry } from "prom-client";
import type { Config } from "../config/config.js";
import { AuthorityMetrics } from "../metrics/authority-metrics.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { observeStoreErrors } from "../store/observed-store.js";
import type { SessionStore } from "../store/session-store.js";
import { startActiveSessionCount } from "./active-session-count.js";
import { LoginWatch } from "./login-watch.js";
import { SecurityEvents } from "./security-events.js";
import { SessionTelemetry } from "./session-telemetry.js";
import { ThresholdAlarm } from "./threshold-alarm.js";

export interface AuthorityTelemetryOptions {
  config: Config;
  store: SessionStore;
  clock: Clock;
  logger: Logger;
  /** A fresh one if absent. */
  registry?: Registry;
}

/** Everything the authority measures and alerts on, built from the configuration's thresholds. */
export interface AuthorityTelemetry {
  metrics: AuthorityMetrics;
  events: SecurityEvents;
  /** The store to use: the same one, with every failure counted. */
  store: SessionStore;
  observer: SessionTelemetry;
  loginWatch: LoginWatch;
  /** Starts the periodic active-session count. */
  start(): void;
  stop(): void;
}

/**
 * Wires metrics and alerts: every security event is logged and counted by
 * type; store failures and ended sessions feed their alarms.
 */
export function createAuthorityTelemetry(o: AuthorityTelemetryOptions): AuthorityTelemetry {
  const { config, clock, logger } = o;
  const metrics = new AuthorityMetrics(o.registry);
  const events = new SecurityEvents(logger);
  events.subscribe((event) => {
    metrics.securityEvent(event.type);
    if (event.type === "refresh_reuse") metrics.reuseDetected();
  });
  const replicaAlarm = (type: "mass_logout" | "store_errors", threshold: number, windowMs: number) =>
    new ThresholdAlarm({
      threshold, windowMs, clock,
      onAlarm: (count) => events.record({ type, userId: "", sid: "", at: clock.now(), count, windowMs }),
    });
  const storeErrors = replicaAlarm("store_errors", config.alertStoreErrors, config.alertStoreErrorsWindowMs);
  const massLogout = replicaAlarm("mass_logout", config.alertMassLogoutSessions, config.alertMassLogoutWindowMs);
  const store = observeStoreErrors(o.store, () => {
    metrics.storeError();
    storeErrors.add();
  });
  let stopCount = () => {};
  return {
    metrics,
    events,
    store,
    observer: new SessionTelemetry(metrics, massLogout, config.sessionAbsoluteLifetimeMs),
    loginWatch: new LoginWatch({ store, events, logger, keep: config.alertKnownDevices, forgetAfterMs: config.alertDeviceMemoryMs }),
    start() {
      stopCount();
      stopCount = startActiveSessionCount({ store, clock, logger, intervalMs: config.activeSessionsIntervalMs, gauge: metrics.activeSessions });
    },
    stop: () => stopCount(),
  };
}
