import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { SECURITY_EVENT_TYPES, type SecurityEventType } from "../events/security-event-detail.js";
import { RevocationReason } from "../gen/sessionauthority/v1/authority_pb.js";

const P = "session_authority_";

/** Handler time of authority RPCs: a Refresh is a few ms, a slow store up to its 2 s timeout. */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Session lengths: minutes to the 30-day default absolute lifetime and beyond. */
const SESSION_LENGTH_BUCKETS = [60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86_400, 3 * 86_400, 7 * 86_400, 14 * 86_400, 30 * 86_400, 90 * 86_400];

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

/** "USER_REQUEST" → "user_request": label values as the proto enum names them, lower case. */
const reasonLabel = (reason: number) => (RevocationReason[reason] ?? "OTHER").toLowerCase();

/**
 * The authority's metrics, all `session_authority_*`, in a registry of its own
 * (never prom-client's global one), so two authorities in one process keep
 * apart. Labelled children are resolved once here; the recording methods are
 * what the request paths call. README "Metrics" lists every series.
 */
export class AuthorityMetrics {
  readonly registry: Registry;
  readonly rpcDuration: Histogram<"method" | "code">;
  readonly activeSessions: Gauge;
  private readonly logins: Counter;
  private readonly refreshes: { rotated: Inc; grace: Inc };
  private readonly reuse: Counter;
  private readonly ended = new Map<number, Inc>();
  private readonly endedCounter: Counter<"reason">;
  private readonly sessionLength: Observe;
  private readonly securityEvents = new Map<SecurityEventType, Inc>();
  private readonly storeErrors: Counter;

  constructor(registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.rpcDuration = new Histogram({
      name: `${P}rpc_duration_seconds`, help: "Time in the RPC handler, by method and gRPC status code.",
      labelNames: ["method", "code"], buckets: RPC_BUCKETS, registers,
    });
    this.activeSessions = new Gauge({
      name: `${P}active_sessions`,
      help: "Live sessions in the whole store, recounted every SA_ACTIVE_SESSIONS_INTERVAL by one replica (absent until the first count).",
      registers,
    });
    this.logins = new Counter({ name: `${P}logins_total`, help: "Sessions created (CreateSession).", registers });
    const refreshes = new Counter({
      name: `${P}refreshes_total`,
      help: "Successful refreshes: rotated (a new pair) or grace (a retry of the previous token within the grace window got the same pair).",
      labelNames: ["result"], registers,
    });
    this.refreshes = { rotated: refreshes.labels("rotated"), grace: refreshes.labels("grace") };
    this.reuse = new Counter({ name: `${P}refresh_reuse_detected_total`, help: "Refresh tokens presented again after the grace window (the session was ended).", registers });
    this.endedCounter = new Counter({
      name: `${P}logouts_total`, help: "Sessions ended by logout, revocation or refresh-token reuse, by revocation reason.",
      labelNames: ["reason"], registers,
    });
    this.sessionLength = new Histogram({
      name: `${P}session_length_seconds`,
      help: "Age of sessions when they ended by logout, revocation or reuse (sessions that expire silently are not observed).",
      buckets: SESSION_LENGTH_BUCKETS, registers,
    });
    const security = new Counter({ name: `${P}security_events_total`, help: "Security events raised, by type.", labelNames: ["type"], registers });
    this.storeErrors = new Counter({ name: `${P}store_errors_total`, help: "Failed calls to the session store (Redis unreachable, a rejected command).", registers });

    // Every known series starts at 0, so rate() and alerts see the first event.
    for (const child of Object.values(this.refreshes)) child.inc(0);
    for (const type of SECURITY_EVENT_TYPES) {
      const child = security.labels(type);
      child.inc(0);
      this.securityEvents.set(type, child);
    }
    for (const value of Object.values(RevocationReason)) {
      if (typeof value !== "number" || value === RevocationReason.UNSPECIFIED) continue;
      const child = this.endedCounter.labels(reasonLabel(value));
      child.inc(0);
      this.ended.set(value, child);
    }
  }

  loggedIn(): void {
    this.logins.inc();
  }

  refreshed(result: "rotated" | "grace"): void {
    this.refreshes[result].inc();
  }

  reuseDetected(): void {
    this.reuse.inc();
  }

  /** Sessions that ended now for `reason`, each with its length; a length that cannot be known is left out of the histogram. */
  sessionsEnded(reason: number, lengthsMs: readonly (number | undefined)[]): void {
    if (lengthsMs.length === 0) return;
    let child = this.ended.get(reason);
    if (!child) this.ended.set(reason, (child = this.endedCounter.labels(reasonLabel(reason))));
    child.inc(lengthsMs.length);
    for (const ms of lengthsMs) if (ms !== undefined && ms >= 0) this.sessionLength.observe(ms / 1000);
  }

  securityEvent(type: SecurityEventType): void {
    this.securityEvents.get(type)!.inc();
  }

  storeError(): void {
    this.storeErrors.inc();
  }

  /** Age and number of the signing keys, read when scraped. */
  trackSigningKeys(keys: { activeSince(): number | undefined; jwks(): unknown[] }, now: () => number): void {
    new Gauge({
      name: `${P}signing_key_age_seconds`, help: "How long the key that signs new tokens has been signing (a rotation resets it).",
      registers: [this.registry],
      collect() {
        const since = keys.activeSince();
        if (since !== undefined) this.set((now() - since) / 1000);
      },
    });
    new Gauge({
      name: `${P}signing_keys`, help: "Public keys in the published key set (JWKS).", registers: [this.registry],
      collect() {
        this.set(keys.jwks().length);
      },
    });
  }
}
