import { randomBytes } from "node:crypto";
import { ConfigError, SCOPES, type Config } from "../config/config.js";
import { hashApiKey } from "../authority/caller-auth.js";
import { keyRingSettings, SigningKeyRing } from "../authority/signing-keys.js";
import { systemClock } from "../shared/clock.js";
import { createLogger } from "../shared/logger.js";
import { createStore } from "../store/create-store.js";

/** `keys rotate`: start a signing-key rotation on the shared store. */
export async function rotateKeys(config: Config): Promise<void> {
  if (!config.redisUrl && !config.redisCluster) {
    throw new ConfigError("REDIS_URL", "keys rotate needs the shared store (REDIS_URL or REDIS_CLUSTER_NODES); the in-memory store lives inside one process");
  }
  const logger = createLogger(config.logLevel);
  const store = await createStore(config, logger);
  const ring = new SigningKeyRing({ ...keyRingSettings(config), store, keyEncryptionKey: config.keyEncryptionKey!, clock: systemClock, logger });
  const key = await ring.rotate();
  process.stdout.write(`new signing key ${key.kid} (${key.alg}) signs from ${new Date(key.activatesAt).toISOString()}\n`);
  await store.close();
}

/** `keys new-api-key NAME`: a fresh key and the configuration entry holding only its hash. */
export function newApiKey(name: string): void {
  const key = `sak_${randomBytes(32).toString("base64url")}`;
  const entry = { name, sha256: hashApiKey(key).toString("hex"), scopes: SCOPES };
  process.stdout.write(`API key (give it to the service; it is not stored anywhere):\n  ${key}\nSA_API_KEYS entry (trim the scopes to what the service needs):\n  ${JSON.stringify(entry)}\n`);
}
