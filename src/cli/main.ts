import { randomBytes } from "node:crypto";
import { ConfigError, loadConfig, loadSidecarConfig, type Config, type SidecarConfig } from "../config/config.js";
import { NatsRevocationFeed } from "../events/nats-revocation-feed.js";
import { startSidecar } from "../sidecar/sidecar-server.js";
import { createVerifier } from "../verifier/index.js";
import { startAuthority } from "../authority/authority-server.js";
import { hashApiKey } from "../authority/caller-auth.js";
import { SigningKeyRing } from "../authority/signing-keys.js";
import { systemClock } from "../shared/clock.js";
import { createLogger } from "../shared/logger.js";
import { createStore, redactUrl } from "../store/create-store.js";

const USAGE = `session-authority <command>

  serve                 run the authority (configuration from the environment)
  dev                   run it for development: in-memory store unless REDIS_URL is set,
                        a generated API key, and an example call printed
  sidecar               run a verifier sidecar beside a service (SA_AUTHORITY_URL, NATS_URL)
  keys rotate           add a new signing key (published now, used after SA_KEY_PUBLISH_DELAY)
  keys new-api-key NAME print a new random API key and its SA_API_KEYS entry
  help                  this text
`;

async function main(argv: string[]): Promise<void> {
  const [command, sub, arg] = argv;
  switch (command) {
    case "serve":
      return serve(loadConfig(), false);
    case "dev":
      return serve(loadConfig(), true);
    case "sidecar":
      return sidecar(loadSidecarConfig());
    case "keys":
      if (sub === "rotate") return rotateKeys(loadConfig());
      if (sub === "new-api-key") return newApiKey(arg ?? "service");
      break;
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(USAGE);
      return;
  }
  process.stderr.write(`unknown command: ${argv.join(" ")}\n\n${USAGE}`);
  process.exitCode = 2;
}

async function serve(config: Config, dev: boolean): Promise<void> {
  const logger = createLogger(config.logLevel);
  let devKey: string | undefined;
  if (dev && config.apiKeys.length === 0) {
    devKey = `dev_${randomBytes(24).toString("base64url")}`;
    config.apiKeys = [{ name: "dev", sha256: hashApiKey(devKey).toString("hex"), scopes: ["sessions:create", "sessions:revoke", "sessions:read"] }];
  }
  const store = await createStore(config, logger);
  const authority = await startAuthority({ config, store, logger });
  const http = `http://${config.host}:${authority.httpPort}`;
  process.stdout.write(
    [
      "",
      "session authority is running",
      `  store   ${config.redisUrl ? `redis ${redactUrl(config.redisUrl)}` : "in-memory (embedded; set REDIS_URL for Redis)"}`,
      `  gRPC    ${config.host}:${authority.grpcPort}   (sessionauthority.v1.SessionAuthorityService)`,
      `  HTTP    ${http}   (Connect + gRPC-Web; JWKS at ${http}/.well-known/jwks.json)`,
      ...(devKey
        ? [
            `  API key ${devKey}   (development only; scopes sessions:create, sessions:revoke, sessions:read)`,
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

async function sidecar(config: SidecarConfig): Promise<void> {
  const logger = createLogger(config.logLevel);
  const verifier = createVerifier({
    jwksUrl: `${config.authorityUrl}/.well-known/jwks.json`,
    issuer: config.issuer,
    audience: config.audience,
    feed: new NatsRevocationFeed({ servers: config.natsUrl.split(","), logger }),
    clockSkewMs: config.clockSkewMs,
    maxTokenBytes: config.maxTokenBytes,
    maxStalenessMs: config.maxStalenessMs,
    failMode: config.failMode,
    tokenCacheSize: config.tokenCacheSize,
    logger,
  });
  // Serve at once: health says NOT_SERVING until the keys and the revocation
  // stream are loaded, so orchestrators wait for readiness, not for the port.
  const running = await startSidecar(config, verifier, logger);
  process.stdout.write(
    [
      "",
      "verifier sidecar is running",
      `  gRPC    ${config.host}:${running.grpcPort}   (ValidateToken, grpc.health.v1)`,
      `  HTTP    http://${config.host}:${running.httpPort}   (Connect; /healthz, /readyz, /status)`,
      `  keys    ${config.authorityUrl}/.well-known/jwks.json`,
      `  events  ${config.natsUrl}   (fail ${config.failMode} after ${config.maxStalenessMs} ms without them)`,
      "",
    ].join("\n"),
  );
  verifier.ready().then(
    () => logger.info("sidecar ready"),
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

async function rotateKeys(config: Config): Promise<void> {
  if (!config.redisUrl) throw new ConfigError("REDIS_URL", "keys rotate needs the shared store; the in-memory store lives inside one process");
  const logger = createLogger(config.logLevel);
  const store = await createStore(config, logger);
  const ring = new SigningKeyRing({
    store, keyEncryptionKey: config.keyEncryptionKey!, algorithm: config.signingAlgorithm, clock: systemClock, logger,
    publishDelayMs: config.keyPublishDelayMs, retainMs: config.accessTokenTtlMs + config.clockSkewMs, refreshIntervalMs: config.keyRefreshIntervalMs,
  });
  const key = await ring.rotate();
  process.stdout.write(`new signing key ${key.kid} (${key.alg}) signs from ${new Date(key.activatesAt).toISOString()}\n`);
  await store.close();
}

function newApiKey(name: string): void {
  const key = `sak_${randomBytes(32).toString("base64url")}`;
  const entry = { name, sha256: hashApiKey(key).toString("hex"), scopes: ["sessions:create", "sessions:revoke", "sessions:read"] };
  process.stdout.write(`API key (give it to the service; it is not stored anywhere):\n  ${key}\nSA_API_KEYS entry (trim the scopes to what the service needs):\n  ${JSON.stringify(entry)}\n`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof ConfigError) {
    process.stderr.write(`configuration error: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fatal: ${(e as Error).message}\n`);
  process.exit(1);
});
