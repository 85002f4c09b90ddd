import {
  createCipheriv, createDecipheriv, createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject,
} from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";
import type { Config, SigningAlgorithm } from "../config/config.js";
import type { Clock } from "../shared/clock.js";
import { AuthorityError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { SessionStore, StoredSigningKey } from "../store/session-store.js";
import { importVerificationKey } from "../verifier/import-verification-key.js";
import type { VerificationKey } from "../verifier/verify-access-token.js";

export interface SigningKeyRingOptions {
  store: SessionStore;
  /** 32-byte key-encryption key; private keys never reach the store unencrypted. */
  keyEncryptionKey: Buffer;
  algorithm: SigningAlgorithm;
  clock: Clock;
  logger: Logger;
  /** A rotated-in key is published this long before it signs, so verifiers learn it first. */
  publishDelayMs: number;
  /** A retired key stays published this long after its successor starts signing: the longest access-token life plus skew. */
  retainMs: number;
  /** How often the ring rereads the store to see other replicas' rotations. */
  refreshIntervalMs: number;
  /** Told about every key this replica adds, so verifiers can be told at once. */
  onKeyAdded?: (kid: string) => void;
}

/** The options of a key ring as the configuration sets them, for the authority and `keys rotate` alike. */
export function keyRingSettings(config: Config): Pick<SigningKeyRingOptions, "algorithm" | "publishDelayMs" | "retainMs" | "refreshIntervalMs"> {
  return {
    algorithm: config.signingAlgorithm,
    publishDelayMs: config.keyPublishDelayMs,
    retainMs: config.accessTokenTtlMs + config.clockSkewMs,
    refreshIntervalMs: config.keyRefreshIntervalMs,
  };
}

interface LoadedKey {
  stored: StoredSigningKey;
  privateKey: KeyObject;
  verification: VerificationKey;
  jwk: JWK;
}

/**
 * The signing keys, shared by every replica through the store. Each replica
 * keeps the decrypted keys in memory, signs with the newest active one and
 * verifies with any published one; a rotation on one replica reaches the others
 * at their next refresh (and at once on an unknown kid).
 */
export class SigningKeyRing {
  private keys = new Map<string, LoadedKey>();
  private timer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;
  private lastReloadAt = 0;

  constructor(private readonly options: SigningKeyRingOptions) {}

  /** Loads the keys, creating the first one if the store has none. */
  async start(): Promise<void> {
    await this.reload();
    if (this.keys.size === 0) {
      // Only one of several replicas starting together on an empty store wins; the
      // others load the winner's key.
      await this.add(this.options.clock.now(), true);
      await this.reload();
    }
    this.timer = setInterval(() => void this.reload().catch((e) => this.options.logger.warn({ err: e }, "signing key refresh failed")), this.options.refreshIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The key new tokens are signed with. */
  signingKey(): { kid: string; alg: SigningAlgorithm; privateKey: KeyObject } {
    const active = this.activeKey();
    if (!active) throw new AuthorityError("store_unavailable", "no signing key is available yet");
    return { kid: active.stored.kid, alg: active.stored.alg as SigningAlgorithm, privateKey: active.privateKey };
  }

  /** When the key that signs now began to sign (for the key-age metric); undefined before the first key. */
  activeSince(): number | undefined {
    return this.activeKey()?.stored.activatesAt;
  }

  verificationKey(kid: string): VerificationKey | undefined {
    return this.keys.get(kid)?.verification;
  }

  /** Public keys in JWK form: every key that may have signed a live token or soon will. */
  jwks(): JWK[] {
    return [...this.keys.values()].map((k) => k.jwk);
  }

  /**
   * Rereads the store, at most once per second when asked for an unknown kid;
   * concurrent callers share one read.
   */
  async reloadForUnknownKid(): Promise<void> {
    if (this.options.clock.now() - this.lastReloadAt < 1000) return this.reloading;
    await this.reload();
  }

  async reload(): Promise<void> {
    if (this.reloading) return this.reloading;
    this.reloading = this.load().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  /**
   * Starts a rotation: a new key is published now and signs after the publish
   * delay; older keys are scheduled to leave the key set once no token they
   * signed can still be live.
   */
  async rotate(): Promise<StoredSigningKey> {
    const now = this.options.clock.now();
    const added = await this.add(now + this.options.publishDelayMs);
    for (const key of await this.options.store.listSigningKeys()) {
      if (key.kid !== added.kid && key.retiresAt === 0) {
        await this.options.store.updateSigningKey({ ...key, retiresAt: added.activatesAt + this.options.retainMs });
      }
    }
    await this.reload();
    // Only now does this replica's JWKS serve the new key: tell verifiers after,
    // or their refetch could race ahead of it.
    this.options.onKeyAdded?.(added.kid);
    return added;
  }

  private activeKey(): LoadedKey | undefined {
    const now = this.options.clock.now();
    let best: LoadedKey | undefined;
    for (const k of this.keys.values()) {
      if (k.stored.activatesAt > now) continue;
      if (!best || k.stored.activatesAt > best.stored.activatesAt || (k.stored.activatesAt === best.stored.activatesAt && k.stored.kid > best.stored.kid)) {
        best = k;
      }
    }
    return best;
  }

  private async load(): Promise<void> {
    const now = this.options.clock.now();
    this.lastReloadAt = now;
    let listed = await this.options.store.listSigningKeys();
    // Keys leave the store only through retirement (below). A held key that is
    // missing and not retired means the store lost its data (e.g. Redis restarted
    // without persistence): publish it again instead of forgetting it, so live
    // tokens keep verifying and every replica keeps signing with the same key.
    const present = new Set(listed.map((k) => k.kid));
    const lost = [...this.keys.values()].filter((k) => !present.has(k.stored.kid) && (k.stored.retiresAt === 0 || k.stored.retiresAt > now));
    if (lost.length > 0) {
      for (const k of lost) await this.options.store.addSigningKey(k.stored);
      this.options.logger.warn({ kids: lost.map((k) => k.stored.kid) }, "signing keys missing from the store were published again");
      listed = await this.options.store.listSigningKeys();
    }
    const next = new Map<string, LoadedKey>();
    for (const stored of listed) {
      if (stored.retiresAt !== 0 && stored.retiresAt <= now) {
        await this.options.store.removeSigningKey(stored.kid);
        continue;
      }
      // Keep the stored metadata current (a rotation elsewhere sets retiresAt).
      const held = this.keys.get(stored.kid);
      next.set(stored.kid, held ? { ...held, stored } : await this.decrypt(stored));
    }
    this.keys = next;
  }

  private async decrypt(stored: StoredSigningKey): Promise<LoadedKey> {
    let privateKey: KeyObject;
    try {
      const blob = Buffer.from(stored.encryptedPrivateKey, "base64");
      const decipher = createDecipheriv("aes-256-gcm", this.options.keyEncryptionKey, blob.subarray(0, 12));
      decipher.setAAD(Buffer.from(stored.kid));
      decipher.setAuthTag(blob.subarray(12, 28));
      const der = Buffer.concat([decipher.update(blob.subarray(28)), decipher.final()]);
      privateKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
    } catch (e) {
      throw new AuthorityError("internal", `signing key ${stored.kid} cannot be decrypted: is SA_KEY_ENCRYPTION_KEY the same on every replica?`, e);
    }
    const jwk = JSON.parse(stored.publicJwk) as JWK;
    // The same import (and checks) a verifier applies to the published key set.
    const imported = importVerificationKey(jwk);
    if (!imported.ok) throw new AuthorityError("internal", `signing key ${stored.kid} has an unusable public key: ${imported.problem}`);
    return { stored, privateKey, verification: imported.key, jwk };
  }

  private async add(activatesAt: number, onlyIfFirst = false): Promise<StoredSigningKey> {
    const { algorithm, keyEncryptionKey, store, clock, logger } = this.options;
    const pair = generateKeys(algorithm);
    const publicJwk = pair.publicKey.export({ format: "jwk" }) as JWK;
    const kid = await calculateJwkThumbprint(publicJwk);
    Object.assign(publicJwk, { kid, alg: algorithm, use: "sig" });

    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", keyEncryptionKey, iv);
    cipher.setAAD(Buffer.from(kid));
    const der = pair.privateKey.export({ type: "pkcs8", format: "der" });
    const body = Buffer.concat([cipher.update(der), cipher.final()]);
    const stored: StoredSigningKey = {
      kid,
      alg: algorithm,
      publicJwk: JSON.stringify(publicJwk),
      encryptedPrivateKey: Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64"),
      createdAt: clock.now(),
      activatesAt,
      retiresAt: 0,
    };
    if (onlyIfFirst ? !(await store.addFirstSigningKey(stored)) : !(await store.addSigningKey(stored))) return stored;
    logger.info({ kid, alg: algorithm, activatesAt: new Date(activatesAt).toISOString() }, "signing key added");
    return stored;
  }
}

function generateKeys(algorithm: SigningAlgorithm): { publicKey: KeyObject; privateKey: KeyObject } {
  switch (algorithm) {
    case "ES256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" });
    case "EdDSA":
      return generateKeyPairSync("ed25519");
    case "RS256":
      return generateKeyPairSync("rsa", { modulusLength: 3072 });
  }
}
