import { createServer, type ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Registry } from "prom-client";
import type { Config } from "../config/config.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { SessionAuthorityService } from "../gen/sessionauthority/v1/authority_pb.js";
import { systemClock, type Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { SessionStore } from "../store/session-store.js";
import type { Handlers, ServedService } from "../transport/call-context.js";
import { connectHandler } from "../transport/connect-service.js";
import { grpcJsService } from "../transport/grpc-js-service.js";
import { grpcServerCredentials } from "../transport/grpc-server-credentials.js";
import { startH2GrpcServer } from "../transport/h2-grpc-server.js";
import { HealthStatus } from "../transport/health-service.js";
import { reflectionServices } from "../transport/reflection-service.js";
import { closeHttp, listen } from "../transport/listen.js";
import { LocalSessionEndFeed } from "../events/local-session-end-feed.js";
import { NatsSessionEndFeed } from "../events/nats-session-end-feed.js";
import { OutboxRelay } from "../events/outbox-relay.js";
import { RevocationSnapshotWriter } from "../events/revocation-snapshot-writer.js";
import type { SessionEndFeed } from "../events/session-end-feed.js";
import type { AuthorityMetrics } from "../metrics/authority-metrics.js";
import { instrumentHandlers } from "../metrics/instrument-handlers.js";
import { serveMetrics } from "../metrics/serve-metrics.js";
import { AccessTokenIssuer } from "./access-token-issuer.js";
import { SigningWorker } from "./signing-worker.js";
import { createBrowserEndpoints } from "./browser-endpoints.js";
import { CorsPolicy } from "./cors-policy.js";
import { createAuthorityTelemetry } from "./authority-telemetry.js";
import type { HttpRoute } from "./json-http.js";
import { CallerAuthenticator } from "./caller-auth.js";
import { createAuthorityHandlers } from "./handlers.js";
import { RECORDED_BY_STORE, type SecurityEvents } from "./security-events.js";
import { SessionService } from "./session-service.js";
import { createSessionWatch, type SessionWatch, type WatchTimers } from "./session-watch.js";
import { keyRingSettings, SigningKeyRing } from "./signing-keys.js";

export interface AuthorityOptions {
  config: Config;
  store: SessionStore;
  logger: Logger;
  clock?: Clock;
  /** Where WatchSession hears of session ends; default: NATS with NATS_URL, else an in-process bus. */
  sessionEnds?: SessionEndFeed;
  /** Heartbeat timers of WatchSession (tests). */
  watchTimers?: WatchTimers;
  /** Where access tokens are signed; a thread of its own, closed at stop(), if absent. */
  signer?: SigningWorker;
  /** Where the metrics go (served at GET /metrics); a registry of its own if absent. */
  registry?: Registry;
  /**
   * More routes on the HTTP port (the dev server's demo), built from the services
   * they may use; tried after the browser endpoints, before Connect.
   */
  httpRoutes?: (services: AuthorityServices) => HttpRoute;
}

/** What extra HTTP routes get to work with: the same session service as the RPCs. */
export interface AuthorityServices {
  sessions: SessionService;
  cors: CorsPolicy;
  clock: Clock;
  logger: Logger;
}

export interface RunningAuthority {
  grpcPort: number;
  httpPort: number;
  sessions: SessionService;
  keys: SigningKeyRing;
  events: SecurityEvents;
  metrics: AuthorityMetrics;
  /** Publishes the outbox to NATS; absent without NATS_URL. */
  relay: OutboxRelay | undefined;
  /** Keeps the revocation snapshot current; absent without NATS_URL or with SA_REVOCATION_SNAPSHOT_INTERVAL=0. */
  snapshots: RevocationSnapshotWriter | undefined;
  /** The RPC handlers, for serving them on another transport. */
  handlers: Handlers;
  /** The session-end feed WatchSession listens to. */
  sessionEnds: SessionEndFeed;
  /** grpc.health.v1 on the gRPC port: SERVING from start until stop() begins. */
  health: HealthStatus;
  watch: SessionWatch;
  stop(): Promise<void>;
}

const MAX_MESSAGE_BYTES = 64 * 1024;

/**
 * Starts the authority: gRPC for services and sidecars (a bare-HTTP/2 server in
 * plaintext, grpc-js with TLS), and on a second port HTTP/1.1 with Connect,
 * gRPC-Web and the JWKS document for browsers and curl. One set of handlers
 * serves them all.
 */
export async function startAuthority(options: AuthorityOptions): Promise<RunningAuthority> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const telemetry = createAuthorityTelemetry({ config, clock, logger, store: options.store, registry: options.registry });
  const { store, events, metrics } = telemetry;
  const keyEncryptionKey = config.keyEncryptionKey ?? randomBytes(32);
  // The relay publishes what the store's scripts put in the outbox; without NATS
  // the store keeps no outbox at all (see createStore).
  const relay = config.natsUrl
    ? new OutboxRelay({
        store, logger, clock,
        servers: config.natsUrl.split(","),
        streamReplicas: config.natsStreamReplicas,
        revocationMaxAgeMs: config.accessTokenTtlMs + config.clockSkewMs + 60_000,
      })
    : undefined;
  relay?.start();
  // Sidecars start from this snapshot and read only the stream after it.
  const snapshots = config.natsUrl && config.revocationSnapshotIntervalMs > 0
    ? new RevocationSnapshotWriter({ servers: config.natsUrl.split(","), intervalMs: config.revocationSnapshotIntervalMs, clockSkewMs: config.clockSkewMs, logger, clock })
    : undefined;
  snapshots?.start();
  // Alerts about this replica belong to no user's outbox: the relay publishes them directly.
  if (relay) events.subscribe((event) => void (RECORDED_BY_STORE.has(event.type) || relay.publishSecurityEvent(event)));
  const keys = new SigningKeyRing({
    ...keyRingSettings(config), store, keyEncryptionKey, clock, logger,
    onKeyAdded: (kid) => void relay?.publishKeyAdded(kid),
  });
  await keys.start();
  metrics.trackSigningKeys(keys, () => clock.now());

  // Without NATS this process is the only one that can end sessions, so its own
  // bus is the whole truth; with NATS every replica hears the relay's events.
  const localEnds = (options.sessionEnds ?? config.natsUrl) ? undefined : new LocalSessionEndFeed();
  const sessionEnds = options.sessionEnds ?? localEnds ?? new NatsSessionEndFeed({ servers: config.natsUrl.split(","), logger });
  const signer = options.signer ?? new SigningWorker(logger);
  const sessions = new SessionService({
    store, keys, clock, logger, events, observer: telemetry.observer, loginWatch: telemetry.loginWatch,
    onSessionsEnded: localEnds && ((notice) => localEnds.publish(notice)),
    revocationsPublished: relay ? () => relay.settled() : undefined,
    issuer: new AccessTokenIssuer({ keys, signer, issuer: config.issuer, audience: config.audience, ttlMs: config.accessTokenTtlMs }),
    policy: config,
  });
  const watch = createSessionWatch({
    sessions, feed: sessionEnds, clock, heartbeatMs: config.watchHeartbeatMs, maxPerUser: config.watchMaxPerUser, timers: options.watchTimers,
  });
  const handlers: Handlers = instrumentHandlers(
    SessionAuthorityService,
    {
      ...createAuthorityHandlers({ sessions, keys, auth: new CallerAuthenticator(config.apiKeys, config.mtlsIdentities, sessions), maxTokenBytes: config.maxTokenBytes }),
      watchSession: watch.handler,
    },
    metrics.rpcDuration,
  );

  // Health follows the process, not the store: with every replica on one Redis,
  // an outage would take them all out of the load balancer at once, turning the
  // clear UNAVAILABLE answers (and the store-error alerts) into refused connections.
  // It drops to NOT_SERVING when stop() begins, so traffic drains first.
  const grpcHealth = new HealthStatus([SessionAuthorityService.typeName]);
  const served: ServedService[] = [{ service: SessionAuthorityService, handlers }, { service: Health, handlers: grpcHealth.handlers() }];
  // Reflection needs a bidirectional stream: on the gRPC port only (HTTP/1.1 cannot carry one).
  const grpcServices = [...served, ...reflectionServices(served.map((s) => s.service))];

  // Plaintext gRPC (a service mesh or loopback) is served by the bare-HTTP/2 server,
  // which measured faster; TLS and client certificates by grpc-js, whose credentials
  // carry them. The handlers are the same either way.
  const grpcServer = config.tls ? await startGrpcJs() : await startH2GrpcServer({
    host: config.host, port: config.grpcPort, services: grpcServices, logger, maxMessageBytes: MAX_MESSAGE_BYTES,
  });
  const grpcPort = grpcServer.port;

  async function startGrpcJs(): Promise<{ port: number; close(): Promise<void> }> {
    const server = new grpc.Server({
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.keepalive_permit_without_calls": 1,
    });
    for (const { service, handlers } of grpcServices) {
      const { definition, implementation } = grpcJsService(service, handlers, logger);
      server.addService(definition, implementation);
    }
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${config.host}:${config.grpcPort}`, grpcServerCredentials(config.tls), (err, p) => (err ? reject(err) : resolve(p))),
    );
    return {
      port,
      close: () =>
        new Promise<void>((resolve) => {
          // A stream that has not ended by then is cut.
          const force = setTimeout(() => server.forceShutdown(), 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        }),
    };
  }

  const connect = connectHandler(served, logger, MAX_MESSAGE_BYTES);
  const cors = new CorsPolicy(config.allowedOrigins);
  const browser = createBrowserEndpoints({ sessions, cors, clock, logger });
  const extra = options.httpRoutes?.({ sessions, cors, clock, logger });
  const httpServer = createServer((req, res) => {
    if (req.url === "/.well-known/jwks.json" && (req.method === "GET" || req.method === "HEAD")) return jwks(res, keys);
    if (req.url === "/healthz" && req.method === "GET") return health(res, store);
    if (req.url === "/metrics" && req.method === "GET") return serveMetrics(res, metrics.registry);
    if (browser(req, res)) return;
    if (extra?.(req, res)) return;
    // Connect routes: browsers on allowed origins call ListSessions, Logout and WatchSession with a Bearer token.
    if (req.method === "OPTIONS") return cors.preflight(req, res, "connect");
    cors.decorate(req, res, "connect");
    connect(req, res);
  });
  const httpPort = await listen(httpServer, config.host, config.httpPort);
  telemetry.start();
  grpcHealth.setAll(true);

  return {
    grpcPort,
    httpPort,
    sessions,
    keys,
    events,
    metrics,
    handlers,
    relay,
    snapshots,
    sessionEnds,
    watch,
    health: grpcHealth,
    async stop() {
      grpcHealth.setAll(false);
      keys.stop();
      telemetry.stop();
      // Open watches end first (UNAVAILABLE), or the servers would wait for them.
      await watch.closeAll();
      if (!options.sessionEnds) await sessionEnds.close();
      await Promise.all([relay?.stop(), snapshots?.stop()]);
      await Promise.all([grpcServer.close(), closeHttp(httpServer)]);
      if (!options.signer) await signer.close();
    },
  };
}

function jwks(res: ServerResponse, keys: SigningKeyRing): void {
  const body = JSON.stringify({ keys: keys.jwks() });
  // Short enough that a rotation (published SA_KEY_PUBLISH_DELAY before use) is seen in time.
  res.writeHead(200, { "content-type": "application/jwk-set+json", "cache-control": "public, max-age=60, stale-while-revalidate=30" });
  res.end(body);
}

function health(res: ServerResponse, store: SessionStore): void {
  store.ping().then(
    () => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
    },
    () => {
      res.writeHead(503, { "content-type": "text/plain" });
      res.end("store unavailable\n");
    },
  );
}
