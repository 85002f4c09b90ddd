import { Gauge, Histogram, type Registry } from "prom-client";
import { systemClock, type Clock } from "../shared/clock.js";
import type { Verifier } from "./verifier.js";

/** Options of {@link registerVerifierMetrics}. */
export interface VerifierMetricsOptions {
  /** Prefix of every metric name. Default `session_verifier_`. */
  prefix?: string;
  /** The verifier's clock, for the key-set age. Default: the system clock. */
  clock?: Clock;
}

/** Revocation propagation: well under 5 ms on a healthy feed, seconds after an outage. */
const LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30];

/**
 * Registers a verifier's metrics in a prom-client registry (yours, or one per
 * verifier; never the global default unless you pass it). Gauges are read
 * from `verifier.status()` when scraped, so a verification costs nothing
 * extra; the propagation histogram is fed by `verifier.onRevocationApplied`.
 *
 * | metric | type | meaning |
 * | --- | --- | --- |
 * | `<prefix>ready` | gauge | 1 once keys are loaded and the feed replayed |
 * | `<prefix>revocations{kind}` | gauge | revocation-set entries held (token, session, user) |
 * | `<prefix>revocation_propagation_seconds` | histogram | authority recorded a revocation → this verifier applied it |
 * | `<prefix>keys` | gauge | verification keys held |
 * | `<prefix>key_set_age_seconds` | gauge | time since the key set was last fetched successfully |
 * | `<prefix>feed_disconnected_seconds` | gauge | how long the revocation feed has been disconnected (0: connected) |
 * | `<prefix>feed_stale` | gauge | 1 while disconnected longer than maxStalenessMs |
 *
 * Returns a function that unregisters them.
 *
 * @example
 * ```ts
 * import { Registry } from "prom-client";
 * import { createVerifier, registerVerifierMetrics } from "session-authority/verifier";
 *
 * const registry = new Registry();
 * const verifier = createVerifier({ jwksUrl, issuer, audience, feed });
 * registerVerifierMetrics(verifier, registry);
 * app.get("/metrics", async (_req, res) => res.type(registry.contentType).send(await registry.metrics()));
 * ```
 */
export function registerVerifierMetrics(verifier: Verifier, registry: Registry, options: VerifierMetricsOptions = {}): () => void {
  const p = options.prefix ?? "session_verifier_";
  const clock = options.clock ?? systemClock;
  const registers = [registry];
  const names: string[] = [];
  const gauge = (name: string, help: string, collect: (this: Gauge<string>) => void, labelNames: string[] = []) => {
    names.push(`${p}${name}`);
    return new Gauge({ name: `${p}${name}`, help, labelNames, registers, collect });
  };
  gauge("ready", "1 once the keys are loaded and the revocation feed has been replayed.", function () {
    this.set(verifier.status().ready ? 1 : 0);
  });
  gauge("revocations", "Revocation-set entries held, by kind (expired ones not yet pruned included).", function () {
    const { tokens, sessions, users } = verifier.status().revocations;
    this.set({ kind: "token" }, tokens);
    this.set({ kind: "session" }, sessions);
    this.set({ kind: "user" }, users);
  }, ["kind"]);
  gauge("keys", "Verification keys held.", function () {
    this.set(verifier.status().keys);
  });
  gauge("key_set_age_seconds", "Time since the key set was last fetched successfully (absent before the first fetch).", function () {
    const at = verifier.status().lastKeyFetchAt;
    if (at !== undefined) this.set((clock.now() - at) / 1000);
  });
  gauge("feed_disconnected_seconds", "How long the revocation feed has been disconnected (0 while connected).", function () {
    this.set(verifier.status().staleForMs / 1000);
  });
  gauge("feed_stale", "1 while the revocation feed has been disconnected for longer than its staleness bound.", function () {
    this.set(verifier.status().feed === "stale" ? 1 : 0);
  });
  names.push(`${p}revocation_propagation_seconds`);
  const lag = new Histogram({
    name: `${p}revocation_propagation_seconds`,
    help: "From the authority recording a revocation to this verifier applying it (live events only; host clock differences included).",
    buckets: LAG_BUCKETS, registers,
  });
  const stop = verifier.onRevocationApplied((lagMs) => lag.observe(Math.max(0, lagMs) / 1000));
  return () => {
    stop();
    for (const name of names) registry.removeSingleMetric(name);
  };
}
