import { setFlagsFromString } from "node:v8";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { SidecarConfig } from "../config/config.js";
import { NatsRevocationFeed } from "../events/nats-revocation-feed.js";
import { createLogger } from "../shared/logger.js";
import { startSidecar } from "../sidecar/sidecar-server.js";
import { createVerifier } from "../verifier/index.js";

/** V8 heap flags while the revocation stream replays, each with the default it returns to once ready. */
const REPLAY_HEAP_FLAGS = [
  ["--optimize-for-size", "--no-optimize-for-size"],
  ["--semi-space-growth-factor=1", "--semi-space-growth-factor=2"],
  ["--no-parallel-scavenge", "--parallel-scavenge"],
] as const;

/** `sidecar`: a verifier beside one service. */
export async function sidecar(config: SidecarConfig): Promise<void> {
  // Replaying the revocation stream allocates far more than it keeps, and V8's
  // default heuristics answer that burst by growing the heap for good: a sidecar
  // with 100k revocations sat at ~140 MB RSS, against ~95 MB when the young
  // generation is kept at its initial size and V8 favours memory during the
  // load. The many small scavenges that costs run faster on the main thread
  // alone, beside a busy NATS server on few cores (ready in ~2.1 s, not ~2.7 s).
  // Measured with `npm run bench:verify`. Serving then runs on defaults.
  for (const [replay] of REPLAY_HEAP_FLAGS) setFlagsFromString(replay);
  const logger = createLogger(config.logLevel);
  const verifier = createVerifier({
    jwksUrl: `${config.authorityUrl}/.well-known/jwks.json`,
    issuer: config.issuer,
    audience: config.audience,
    feed: new NatsRevocationFeed({ servers: config.natsUrl.split(","), snapshots: config.snapshots, logger }),
    clockSkewMs: config.clockSkewMs,
    maxTokenBytes: config.maxTokenBytes,
    maxStalenessMs: config.maxStalenessMs,
    failMode: config.failMode,
    tokenCacheSize: config.tokenCacheSize,
    logger,
  });
  // Serve at once: health says NOT_SERVING until the keys and the revocation
  // stream are loaded, so orchestrators wait for readiness, not for the port.
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const running = await startSidecar(config, verifier, logger, registry);
  process.stdout.write(
    [
      "",
      "verifier sidecar is running",
      `  gRPC    ${config.host}:${running.grpcPort}   (ValidateToken, grpc.health.v1, reflection)`,
      `  HTTP    http://${config.host}:${running.httpPort}   (Connect; /healthz, /readyz, /status, /metrics)`,
      `  keys    ${config.authorityUrl}/.well-known/jwks.json`,
      `  events  ${config.natsUrl}   (fail ${config.failMode} after ${config.maxStalenessMs} ms without them)`,
      "",
    ].join("\n"),
  );
  verifier.ready().then(
    () => {
      for (const [, serving] of REPLAY_HEAP_FLAGS) setFlagsFromString(serving);
      logger.info("sidecar ready");
    },
    () => undefined,
  );
  const shutdown = async () => {
    await running.stop();
    await verifier.close();
    process.exit(0);
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}
