import { randomBytes } from "node:crypto";
import { collectDefaultMetrics, Registry } from "prom-client";
import { SCOPES, type Config } from "../config/config.js";
import { startAuthority } from "../authority/authority-server.js";
import { hashApiKey } from "../authority/caller-auth.js";
import { createDemoEndpoints, DEMO_PATH } from "../authority/demo-endpoints.js";
import { buildDemoAssets } from "../demo/demo-assets.js";
import { createLogger } from "../shared/logger.js";
import { createStore, describeRedis } from "../store/create-store.js";

/** `serve` and `dev`: the authority, printing where it listens (and, in dev, a key and a call to try). */
export async function serve(config: Config, dev: boolean): Promise<void> {
  const logger = createLogger(config.logLevel);
  let devKey: string | undefined;
  if (dev && config.apiKeys.length === 0) {
    devKey = `dev_${randomBytes(24).toString("base64url")}`;
    config.apiKeys = [{ name: "dev", sha256: hashApiKey(devKey).toString("hex"), scopes: [...SCOPES] }];
  }
  // The demo page is for `npm start` only: a production server has no demo login.
  const demo = dev ? await buildDemoAssets().catch((e: Error) => e) : undefined;
  const store = await createStore(config, logger);
  // Process metrics (CPU, memory, event-loop delay, GC) beside the authority's own.
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const authority = await startAuthority({
    config, store, logger, registry,
    httpRoutes: demo && !(demo instanceof Error) ? (services) => createDemoEndpoints({ ...services, assets: demo }) : undefined,
  });
  const http = `http://${config.host}:${authority.httpPort}`;
  process.stdout.write(
    [
      "",
      "session authority is running",
      `  store   ${config.redisUrl || config.redisCluster ? `redis ${describeRedis(config)}` : "in-memory (embedded; set REDIS_URL for Redis)"}`,
      `  gRPC    ${config.host}:${authority.grpcPort}   (sessionauthority.v1.SessionAuthorityService, grpc.health.v1, reflection${grpcSecurity(config)})`,
      `  HTTP    ${http}   (Connect + gRPC-Web; JWKS at ${http}/.well-known/jwks.json; ${http}/metrics)`,
      ...(demo instanceof Error ? [`  demo    unavailable: ${demo.message}`] : demo ? [`  demo    ${http}${DEMO_PATH}/   (sign in as a demo user in two windows; README "Demo")`] : []),
      ...(devKey
        ? [
            `  API key ${devKey}   (development only; scopes ${SCOPES.join(", ")})`,
            "",
            "try it:",
            `  curl -s ${http}/sessionauthority.v1.SessionAuthorityService/CreateSession \\`,
            `    -H 'content-type: application/json' -H 'authorization: ApiKey ${devKey}' \\`,
            `    -d '{"userId":"alice","username":"Alice","roles":["user"],"device":{"id":"laptop-1","name":"Laptop"}}'`,
          ]
        : []),
      "",
    ].join("\n"),
  );
  const shutdown = async () => {
    logger.info("shutting down");
    await authority.stop();
    await store.close();
    process.exit(0);
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

function grpcSecurity(config: Config): string {
  if (!config.tls) return "; plaintext";
  return config.tls.clientCa ? "; TLS, client certificates verified if presented" : "; TLS";
}
