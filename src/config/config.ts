import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseDuration } from "../shared/duration.js";

export type SigningAlgorithm = "ES256" | "EdDSA" | "RS256";
export const SIGNING_ALGORITHMS: readonly SigningAlgorithm[] = ["ES256", "EdDSA", "RS256"];

/** Scopes a service API key can hold. */
export type Scope = "sessions:create" | "sessions:revoke" | "sessions:read";
export const SCOPES: readonly Scope[] = ["sessions:create", "sessions:revoke", "sessions:read"];

export interface ApiKeyConfig {
  /** A name for logs and audit ("login-service"). */
  name: string;
  /** SHA-256 of the key, hex. The key itself is never configured. */
  sha256: string;
  scopes: Scope[];
}

/** A service identified by a verified client certificate instead of an API key. */
export interface MtlsIdentityConfig {
  /** "CN=<common name>", "DNS:<name>" or "URI:<uri>" of the certificate. */
  subject: string;
  name: string;
  scopes: Scope[];
}

/** PEM material for the gRPC port, read once at start. */
export interface TlsConfig {
  certChain: Buffer;
  privateKey: Buffer;
  /** CA bundle that client certificates are verified against; undefined: none are requested. */
  clientCa: Buffer | undefined;
}

/** A Redis Cluster to connect to: seed masters (the client discovers the rest) and what every node shares. */
export interface RedisClusterConfig {
  nodes: { host: string; port: number }[];
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
}

export interface Config {
  host: string;
  grpcPort: number;
  httpPort: number;
  /** Empty (and no redisCluster): the embedded in-memory store. */
  redisUrl: string;
  /** Set: the store is a Redis Cluster (REDIS_CLUSTER_NODES); redisUrl is then empty. */
  redisCluster: RedisClusterConfig | undefined;
  redisKeyPrefix: string;
  redisCommandTimeoutMs: number;
  natsUrl: string;
  /** How often the revocation set's snapshot is brought up to date (0: never). */
  revocationSnapshotIntervalMs: number;
  /** Replicas of each JetStream stream the authority creates (3 on a 3-node NATS cluster). */
  natsStreamReplicas: number;
  issuer: string;
  audience: string;
  defaultClientId: string;
  signingAlgorithm: SigningAlgorithm;
  /** 32 bytes that encrypt private signing keys at rest. */
  keyEncryptionKey: Buffer | undefined;
  accessTokenTtlMs: number;
  refreshGraceMs: number;
  sessionIdleTimeoutMs: number;
  sessionTouchIntervalMs: number;
  sessionAbsoluteLifetimeMs: number;
  clockSkewMs: number;
  maxTokenBytes: number;
  keyRefreshIntervalMs: number;
  keyPublishDelayMs: number;
  apiKeys: ApiKeyConfig[];
  /** undefined: the gRPC port is plaintext. */
  tls: TlsConfig | undefined;
  mtlsIdentities: MtlsIdentityConfig[];
  /** Browser origins (scheme://host[:port]) allowed to call the HTTP port with credentials, besides its own. */
  allowedOrigins: string[];
  /** How long a browser handoff code can be exchanged. */
  handoffTtlMs: number;
  /** WatchSession sends a heartbeat this often while nothing happens. */
  watchHeartbeatMs: number;
  /** Open WatchSession streams one user may hold at once. */
  watchMaxPerUser: number;
  logLevel: string;
  /** How often one replica recounts the live sessions for the active-sessions gauge (0: never). */
  activeSessionsIntervalMs: number;
  /** Alert when one session is refreshed more than this often within the window (0: off). */
  alertRefreshRateLimit: number;
  alertRefreshRateWindowMs: number;
  /** Device ids and IP addresses remembered per user for new-device alerts, each (0: off). */
  alertKnownDevices: number;
  /** A device or address unseen this long counts as new again. */
  alertDeviceMemoryMs: number;
  /** Alert when more sessions than this end within the window on one replica (0: off). */
  alertMassLogoutSessions: number;
  alertMassLogoutWindowMs: number;
  /** Alert when one replica sees more store failures than this within the window (0: off). */
  alertStoreErrors: number;
  alertStoreErrorsWindowMs: number;
}

/** Every default in one place. Durations in the environment use 500ms / 10s / 15m / 12h / 30d. */
export const DEFAULTS = {
  SA_HOST: "127.0.0.1",
  SA_GRPC_PORT: "50051",
  SA_HTTP_PORT: "8080",
  REDIS_URL: "",
  REDIS_CLUSTER_NODES: "",
  SA_REDIS_KEY_PREFIX: "sa",
  SA_REDIS_COMMAND_TIMEOUT: "2s",
  NATS_URL: "",
  SA_NATS_STREAM_REPLICAS: "1",
  SA_REVOCATION_SNAPSHOT_INTERVAL: "30s",
  SA_ISSUER: "https://session-authority.local",
  SA_AUDIENCE: "api",
  SA_DEFAULT_CLIENT_ID: "default",
  SA_SIGNING_ALGORITHM: "ES256",
  SA_KEY_ENCRYPTION_KEY: "",
  SA_ACCESS_TOKEN_TTL: "15m",
  SA_REFRESH_GRACE: "10s",
  SA_SESSION_IDLE_TIMEOUT: "30m",
  SA_SESSION_TOUCH_INTERVAL: "5m",
  SA_SESSION_ABSOLUTE_LIFETIME: "30d",
  SA_CLOCK_SKEW: "30s",
  SA_MAX_TOKEN_BYTES: "8192",
  SA_KEY_REFRESH_INTERVAL: "30s",
  SA_KEY_PUBLISH_DELAY: "2m",
  SA_API_KEYS: "[]",
  SA_TLS_CERT_FILE: "",
  SA_TLS_KEY_FILE: "",
  SA_TLS_CLIENT_CA_FILE: "",
  SA_MTLS_IDENTITIES: "[]",
  SA_ALLOWED_ORIGINS: "",
  SA_HANDOFF_TTL: "60s",
  SA_WATCH_HEARTBEAT: "25s",
  SA_WATCH_MAX_PER_USER: "32",
  SA_LOG_LEVEL: "info",
  SA_ACTIVE_SESSIONS_INTERVAL: "1m",
  SA_ALERT_REFRESH_RATE: "20",
  SA_ALERT_REFRESH_RATE_WINDOW: "1h",
  SA_ALERT_KNOWN_DEVICES: "10",
  SA_ALERT_DEVICE_MEMORY: "90d",
  SA_ALERT_MASS_LOGOUT: "1000",
  SA_ALERT_MASS_LOGOUT_WINDOW: "1m",
  SA_ALERT_STORE_ERRORS: "20",
  SA_ALERT_STORE_ERRORS_WINDOW: "1m",
  // Sidecar (session-authority sidecar); it shares SA_ISSUER, SA_AUDIENCE,
  // SA_CLOCK_SKEW, SA_MAX_TOKEN_BYTES, NATS_URL and SA_LOG_LEVEL with the authority.
  SA_AUTHORITY_URL: "http://127.0.0.1:8080",
  SA_SIDECAR_HOST: "127.0.0.1",
  SA_SIDECAR_GRPC_PORT: "50061",
  SA_SIDECAR_HTTP_PORT: "8081",
  SA_SIDECAR_MAX_STALENESS: "30s",
  SA_SIDECAR_FAIL_MODE: "closed",
  SA_SIDECAR_SNAPSHOTS: "on",
  SA_SIDECAR_TOKEN_CACHE_SIZE: "10000",
} as const;

export type ConfigKey = keyof typeof DEFAULTS;

/**
 * Where `dev` (npm start) differs: access tokens short enough that the demo page
 * shows them being refreshed within a minute. The environment still wins.
 */
export const DEV_DEFAULTS: Partial<Record<ConfigKey, string>> = {
  SA_ACCESS_TOKEN_TTL: "1m",
};

/** Which defaults apply: production's (`serve`, tools) or the development server's. */
export type ConfigProfile = "serve" | "dev";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly key: string, message: string) {
    super(`${key}: ${message}`);
  }
}

/**
 * Reads and validates the configuration. This module is the only reader of the
 * environment; everything else receives a Config. A JSON file named by
 * SA_CONFIG_FILE may hold the same keys; the environment wins over the file.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env, profile: ConfigProfile = "serve"): Config {
  const { raw, file, duration, integer, nonEmpty } = reader(env, profile === "dev" ? DEV_DEFAULTS : {});

  const signingAlgorithm = raw("SA_SIGNING_ALGORITHM") as SigningAlgorithm;
  if (!SIGNING_ALGORITHMS.includes(signingAlgorithm)) {
    throw new ConfigError("SA_SIGNING_ALGORITHM", `must be one of ${SIGNING_ALGORITHMS.join(", ")}`);
  }

  const redisUrl = raw("REDIS_URL").trim();
  if (redisUrl && !/^rediss?:\/\//.test(redisUrl)) throw new ConfigError("REDIS_URL", "must start with redis:// or rediss://");
  const redisCluster = parseRedisClusterNodes(raw("REDIS_CLUSTER_NODES"));
  if (redisCluster && redisUrl) {
    throw new ConfigError("REDIS_CLUSTER_NODES", "set either REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a Redis Cluster), not both");
  }
  const natsUrl = raw("NATS_URL").trim();

  const kekText = raw("SA_KEY_ENCRYPTION_KEY").trim();
  let keyEncryptionKey: Buffer | undefined;
  if (kekText) {
    keyEncryptionKey = Buffer.from(kekText, "base64");
    if (keyEncryptionKey.length !== 32) throw new ConfigError("SA_KEY_ENCRYPTION_KEY", "must be 32 bytes, base64-encoded (openssl rand -base64 32)");
  } else if (redisUrl || redisCluster) {
    const store = redisUrl ? "REDIS_URL" : "REDIS_CLUSTER_NODES";
    throw new ConfigError("SA_KEY_ENCRYPTION_KEY", `is required with ${store}, so every replica can decrypt the shared signing keys (openssl rand -base64 32)`);
  }

  const accessTokenTtlMs = duration("SA_ACCESS_TOKEN_TTL", 10_000, 86_400_000);
  const sessionIdleTimeoutMs = duration("SA_SESSION_IDLE_TIMEOUT", 60_000);
  const sessionAbsoluteLifetimeMs = duration("SA_SESSION_ABSOLUTE_LIFETIME", 60_000);
  if (sessionIdleTimeoutMs > sessionAbsoluteLifetimeMs) {
    throw new ConfigError("SA_SESSION_IDLE_TIMEOUT", "must not exceed SA_SESSION_ABSOLUTE_LIFETIME");
  }

  // Unset, the touch interval follows a shorter idle timeout (the default, 5m, is
  // a sixth of the default idle timeout) instead of failing on a key nobody set.
  const touchIsSet = env.SA_SESSION_TOUCH_INTERVAL !== undefined || file.SA_SESSION_TOUCH_INTERVAL !== undefined;
  const sessionTouchIntervalMs = touchIsSet
    ? duration("SA_SESSION_TOUCH_INTERVAL", 0, sessionIdleTimeoutMs)
    : Math.min(parseDuration(DEFAULTS.SA_SESSION_TOUCH_INTERVAL), Math.floor(sessionIdleTimeoutMs / 6));

  const tls = loadTls(raw);
  const mtlsIdentities = parseMtlsIdentities(raw("SA_MTLS_IDENTITIES"));
  if (mtlsIdentities.length && !tls?.clientCa) {
    throw new ConfigError("SA_MTLS_IDENTITIES", "needs SA_TLS_CLIENT_CA_FILE: only certificates verified against it can identify a caller");
  }

  return {
    host: nonEmpty("SA_HOST"),
    grpcPort: integer("SA_GRPC_PORT", 0, 65535),
    httpPort: integer("SA_HTTP_PORT", 0, 65535),
    redisUrl,
    redisCluster,
    redisKeyPrefix: nonEmpty("SA_REDIS_KEY_PREFIX"),
    redisCommandTimeoutMs: duration("SA_REDIS_COMMAND_TIMEOUT", 50, 60_000),
    natsUrl,
    // JetStream allows at most 5 replicas; more than the cluster has servers fails stream creation (logged).
    natsStreamReplicas: integer("SA_NATS_STREAM_REPLICAS", 1, 5),
    revocationSnapshotIntervalMs: duration("SA_REVOCATION_SNAPSHOT_INTERVAL", 0),
    issuer: nonEmpty("SA_ISSUER"),
    audience: nonEmpty("SA_AUDIENCE"),
    defaultClientId: nonEmpty("SA_DEFAULT_CLIENT_ID"),
    signingAlgorithm,
    keyEncryptionKey,
    accessTokenTtlMs,
    refreshGraceMs: duration("SA_REFRESH_GRACE", 0, 300_000),
    sessionIdleTimeoutMs,
    sessionTouchIntervalMs,
    sessionAbsoluteLifetimeMs,
    // At least 1 s: after a global logout new tokens carry iat = the user's
    // whole-second not-before, up to 1 s ahead of now; less skew refuses them.
    clockSkewMs: duration("SA_CLOCK_SKEW", 1000, 300_000),
    maxTokenBytes: integer("SA_MAX_TOKEN_BYTES", 512, 65536),
    keyRefreshIntervalMs: duration("SA_KEY_REFRESH_INTERVAL", 1000),
    keyPublishDelayMs: duration("SA_KEY_PUBLISH_DELAY", 0),
    apiKeys: parseApiKeys(raw("SA_API_KEYS")),
    tls,
    mtlsIdentities,
    allowedOrigins: parseOrigins(raw("SA_ALLOWED_ORIGINS")),
    handoffTtlMs: duration("SA_HANDOFF_TTL", 1000, 600_000),
    watchHeartbeatMs: duration("SA_WATCH_HEARTBEAT", 100, 300_000),
    watchMaxPerUser: integer("SA_WATCH_MAX_PER_USER", 1, 10_000),
    logLevel: raw("SA_LOG_LEVEL"),
    activeSessionsIntervalMs: duration("SA_ACTIVE_SESSIONS_INTERVAL", 0),
    alertRefreshRateLimit: integer("SA_ALERT_REFRESH_RATE", 0, 1_000_000),
    alertRefreshRateWindowMs: duration("SA_ALERT_REFRESH_RATE_WINDOW", 1000),
    alertKnownDevices: integer("SA_ALERT_KNOWN_DEVICES", 0, 1000),
    alertDeviceMemoryMs: duration("SA_ALERT_DEVICE_MEMORY", 60_000),
    alertMassLogoutSessions: integer("SA_ALERT_MASS_LOGOUT", 0, 100_000_000),
    alertMassLogoutWindowMs: duration("SA_ALERT_MASS_LOGOUT_WINDOW", 1000),
    alertStoreErrors: integer("SA_ALERT_STORE_ERRORS", 0, 100_000_000),
    alertStoreErrorsWindowMs: duration("SA_ALERT_STORE_ERRORS_WINDOW", 1000),
  };
}

/** A comma list of exact origins; no wildcard, since they receive credentials. */
function parseOrigins(text: string): string[] {
  return text.split(",").map((o) => o.trim()).filter(Boolean).map((origin) => {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      // reported below
    }
    if (!url || origin.includes("*") || (url.protocol !== "https:" && url.protocol !== "http:") || url.origin !== origin.replace(/\/$/, "").toLowerCase()) {
      throw new ConfigError("SA_ALLOWED_ORIGINS", `"${origin}" is not an origin like https://app.example.com (scheme, host and optional port; no path, no wildcard)`);
    }
    return url.origin;
  });
}

/** Validated access to the keys of DEFAULTS: the environment, then the optional file, then the default. */
function reader(env: Record<string, string | undefined>, profileDefaults: Partial<Record<ConfigKey, string>> = {}) {
  const file = env.SA_CONFIG_FILE ? readConfigFile(env.SA_CONFIG_FILE) : {};
  const raw = (key: ConfigKey): string => env[key] ?? file[key] ?? profileDefaults[key] ?? DEFAULTS[key];
  for (const key of Object.keys(file)) {
    if (!(key in DEFAULTS)) throw new ConfigError(key, `unknown key in ${env.SA_CONFIG_FILE}`);
  }

  const duration = (key: ConfigKey, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    let ms: number;
    try {
      ms = parseDuration(raw(key));
    } catch (e) {
      throw new ConfigError(key, (e as Error).message);
    }
    if (ms < min || ms > max) throw new ConfigError(key, `must be between ${min}ms and ${max}ms`);
    return ms;
  };
  const integer = (key: ConfigKey, min: number, max: number): number => {
    const text = raw(key);
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) throw new ConfigError(key, `"${text}" must be an integer from ${min} to ${max}`);
    return n;
  };
  const nonEmpty = (key: ConfigKey): string => {
    const v = raw(key).trim();
    if (!v) throw new ConfigError(key, "must not be empty");
    return v;
  };

  return { raw, file, duration, integer, nonEmpty };
}

export interface SidecarConfig {
  host: string;
  grpcPort: number;
  httpPort: number;
  /** The authority's HTTP base URL; its /.well-known/jwks.json holds the keys. */
  authorityUrl: string;
  natsUrl: string;
  issuer: string;
  audience: string;
  clockSkewMs: number;
  maxTokenBytes: number;
  /** After this long without its event feed the sidecar fails closed (or open, visibly). */
  maxStalenessMs: number;
  failMode: "closed" | "open";
  /** Start from the authority's revocation snapshot when there is a usable one (else replay the whole stream). */
  snapshots: boolean;
  tokenCacheSize: number;
  logLevel: string;
}

/** The sidecar's configuration; same rules and sources as loadConfig. */
export function loadSidecarConfig(env: Record<string, string | undefined> = process.env): SidecarConfig {
  const { raw, duration, integer, nonEmpty } = reader(env);
  const authorityUrl = nonEmpty("SA_AUTHORITY_URL").replace(/\/+$/, "");
  if (!/^https?:\/\//.test(authorityUrl)) throw new ConfigError("SA_AUTHORITY_URL", "must be the authority's http:// or https:// URL");
  const natsUrl = raw("NATS_URL").trim();
  if (!natsUrl) throw new ConfigError("NATS_URL", "is required: without the revocation feed a sidecar cannot honour logouts");
  const failMode = raw("SA_SIDECAR_FAIL_MODE");
  if (failMode !== "closed" && failMode !== "open") throw new ConfigError("SA_SIDECAR_FAIL_MODE", 'must be "closed" or "open"');
  const snapshots = raw("SA_SIDECAR_SNAPSHOTS");
  if (snapshots !== "on" && snapshots !== "off") throw new ConfigError("SA_SIDECAR_SNAPSHOTS", 'must be "on" or "off"');
  return {
    host: nonEmpty("SA_SIDECAR_HOST"),
    grpcPort: integer("SA_SIDECAR_GRPC_PORT", 0, 65535),
    httpPort: integer("SA_SIDECAR_HTTP_PORT", 0, 65535),
    authorityUrl,
    natsUrl,
    issuer: nonEmpty("SA_ISSUER"),
    audience: nonEmpty("SA_AUDIENCE"),
    clockSkewMs: duration("SA_CLOCK_SKEW", 1000, 300_000),
    maxTokenBytes: integer("SA_MAX_TOKEN_BYTES", 512, 65536),
    maxStalenessMs: duration("SA_SIDECAR_MAX_STALENESS", 1000),
    failMode,
    snapshots: snapshots === "on",
    tokenCacheSize: integer("SA_SIDECAR_TOKEN_CACHE_SIZE", 0, 10_000_000),
    logLevel: raw("SA_LOG_LEVEL"),
  };
}

/**
 * REDIS_CLUSTER_NODES: comma-separated redis:// (or rediss://) URLs of some
 * masters. One reachable seed is enough to discover the cluster; several let
 * a replica start while one of them is down. Credentials and TLS apply to every
 * node, so they must be the same on each URL.
 */
function parseRedisClusterNodes(text: string): RedisClusterConfig | undefined {
  const key = "REDIS_CLUSTER_NODES";
  const entries = text.split(",").map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0) return undefined;
  const parsed = entries.map((entry, i) => {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw new ConfigError(key, `entry ${i + 1} is not a URL; expected redis://host:port`);
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:") throw new ConfigError(key, `entry ${i + 1} must start with redis:// or rediss://`);
    if (!url.hostname) throw new ConfigError(key, `entry ${i + 1} has no host`);
    if (!["", "/", "/0"].includes(url.pathname)) throw new ConfigError(key, `entry ${i + 1} names a database; Redis Cluster has only database 0`);
    const port = url.port ? Number(url.port) : 6379;
    if (port === 0) throw new ConfigError(key, `entry ${i + 1} has port 0`);
    return {
      host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      port,
      tls: url.protocol === "rediss:",
      username: url.username ? decodeURIComponent(url.username) : undefined,
      password: url.password ? decodeURIComponent(url.password) : undefined,
    };
  });
  const [first] = parsed;
  for (const p of parsed) {
    if (p.tls !== first!.tls) throw new ConfigError(key, "mixes redis:// and rediss://; every node speaks the same protocol");
    if (p.username !== first!.username || p.password !== first!.password) {
      throw new ConfigError(key, "every URL must carry the same credentials (the client uses one set for all nodes)");
    }
  }
  return { nodes: parsed.map(({ host, port }) => ({ host, port })), username: first!.username, password: first!.password, tls: first!.tls };
}

function readConfigFile(path: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError("SA_CONFIG_FILE", `cannot read ${path}: ${(e as Error).message}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new ConfigError("SA_CONFIG_FILE", "must hold a JSON object");
  return Object.fromEntries(
    Object.entries(parsed).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
  );
}

/** A JSON list of objects, each with where it stands for error messages. */
function jsonObjects(key: string, text: string, example: string): { where: string; entry: Record<string, unknown> }[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(key, `must be a JSON array like ${example}`);
  }
  if (!Array.isArray(parsed)) throw new ConfigError(key, "must be a JSON array");
  return parsed.map((entry, i) => {
    const where = `${key}[${i}]`;
    if (!entry || typeof entry !== "object" || Array.isArray(entry)) throw new ConfigError(where, "must be an object");
    return { where, entry: entry as Record<string, unknown> };
  });
}

function parseApiKeys(text: string): ApiKeyConfig[] {
  const example = '[{"name":"login","sha256":"<hex>","scopes":["sessions:create"]}]';
  return jsonObjects("SA_API_KEYS", text, example).map(({ where, entry }) => {
    const { name, sha256, scopes } = entry;
    if (typeof name !== "string" || !name) throw new ConfigError(where, "needs a name");
    if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/i.test(sha256)) {
      throw new ConfigError(where, "sha256 must be the 64 hex digits of the key's SHA-256 (session-authority keys new-api-key NAME)");
    }
    return { name, sha256: sha256.toLowerCase(), scopes: scopeList(where, scopes) };
  });
}

function scopeList(where: string, scopes: unknown): Scope[] {
  if (!Array.isArray(scopes) || scopes.some((s) => !SCOPES.includes(s as Scope))) {
    throw new ConfigError(where, `scopes must be a list of ${SCOPES.join(", ")}`);
  }
  return scopes as Scope[];
}

/**
 * Reads the gRPC port's certificate, key and client CA. They are parsed here so
 * a wrong or mismatched file stops the start with the key's name, not a TLS
 * error on the first connection.
 */
function loadTls(raw: (key: ConfigKey) => string): TlsConfig | undefined {
  const certFile = raw("SA_TLS_CERT_FILE").trim();
  const keyFile = raw("SA_TLS_KEY_FILE").trim();
  const caFile = raw("SA_TLS_CLIENT_CA_FILE").trim();
  if (certFile && !keyFile) throw new ConfigError("SA_TLS_KEY_FILE", "is required with SA_TLS_CERT_FILE");
  if (keyFile && !certFile) throw new ConfigError("SA_TLS_CERT_FILE", "is required with SA_TLS_KEY_FILE");
  if (!certFile) {
    if (caFile) throw new ConfigError("SA_TLS_CLIENT_CA_FILE", "needs SA_TLS_CERT_FILE and SA_TLS_KEY_FILE (client certificates exist only over TLS)");
    return undefined;
  }
  const certChain = readPem("SA_TLS_CERT_FILE", certFile);
  const privateKey = readPem("SA_TLS_KEY_FILE", keyFile);
  const certificate = parsePem("SA_TLS_CERT_FILE", () => new X509Certificate(certChain));
  const key = parsePem("SA_TLS_KEY_FILE", () => createPrivateKey(privateKey));
  if (!certificate.checkPrivateKey(key)) throw new ConfigError("SA_TLS_KEY_FILE", "does not match the certificate in SA_TLS_CERT_FILE");
  let clientCa: Buffer | undefined;
  if (caFile) {
    clientCa = readPem("SA_TLS_CLIENT_CA_FILE", caFile);
    parsePem("SA_TLS_CLIENT_CA_FILE", () => new X509Certificate(clientCa!));
  }
  return { certChain, privateKey, clientCa };
}

function readPem(key: ConfigKey, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(key, `cannot read ${path}: ${(e as Error).message}`);
  }
}

function parsePem<T>(key: ConfigKey, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new ConfigError(key, `is not a usable unencrypted PEM file: ${(e as Error).message}`);
  }
}

// Typed subjects, so a DNS name can never match an identity meant for a common
// name (or the reverse) just because the strings are equal.
const SUBJECT = /^(CN=|DNS:|URI:)\S/;

function parseMtlsIdentities(text: string): MtlsIdentityConfig[] {
  const seen = new Set<string>();
  const example = '[{"subject":"CN=login-service","name":"login","scopes":["sessions:create"]}]';
  return jsonObjects("SA_MTLS_IDENTITIES", text, example).map(({ where, entry }) => {
    const { subject, name, scopes } = entry;
    if (typeof subject !== "string" || !SUBJECT.test(subject)) {
      throw new ConfigError(where, 'subject must be "CN=<common name>", "DNS:<name>" or "URI:<uri>" of the client certificate');
    }
    if (seen.has(subject)) throw new ConfigError(where, `subject ${subject} is listed twice`);
    seen.add(subject);
    if (typeof name !== "string" || !name) throw new ConfigError(where, "needs a name");
    return { subject, name, scopes: scopeList(where, scopes) };
  });
}
