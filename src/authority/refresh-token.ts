import { createCipheriv, createDecipheriv, createHmac, hash } from "node:crypto";
import { isSessionId, SESSION_ID_LENGTH } from "../store/session-id.js";
import { secureRandomBytes } from "../shared/random.js";

/**
 * Refresh tokens are `<session id>.<secret>`: the id names the session (and its
 * Redis slot), the secret is 256 random bits of which the store keeps only a
 * 16-byte SHA-256 prefix. A stolen database therefore yields no usable token.
 *
 * After a rotation the successor pair is kept for the grace window sealed with
 * AES-256-GCM under a key derived from the *previous* secret, so only whoever
 * presents that previous token again can open it and receive the same pair.
 */
const SECRET_BYTES = 32;
const SECRET = /^[A-Za-z0-9_-]{43}$/;
export const REFRESH_HASH_BYTES = 16;

export interface ParsedRefreshToken {
  sid: string;
  secret: string;
}

export function newRefreshSecret(): string {
  return secureRandomBytes(SECRET_BYTES).toString("base64url");
}

export function formatRefreshToken(sid: string, secret: string): string {
  return `${sid}.${secret}`;
}

/** Undefined for anything that is not shaped like one of our refresh tokens. */
export function parseRefreshToken(token: string): ParsedRefreshToken | undefined {
  if (token.length !== SESSION_ID_LENGTH + 44) return undefined;
  const sid = token.slice(0, SESSION_ID_LENGTH);
  const secret = token.slice(SESSION_ID_LENGTH + 1);
  if (token[SESSION_ID_LENGTH] !== "." || !isSessionId(sid) || !SECRET.test(secret)) return undefined;
  return { sid, secret };
}

export function hashRefreshSecret(secret: string): Buffer {
  return hash("sha256", secret, "buffer").subarray(0, REFRESH_HASH_BYTES);
}

/** What a seal is for: keys derived for one purpose never open another's seals. */
export type SealPurpose = "successor v1" | "handoff v1";

// The secret is 256 uniformly random bits, so one HMAC under it is a sound key
// derivation (HKDF-Expand's first block); hkdfSync cost 4x more per refresh.
function sealingKey(secret: string, purpose: SealPurpose): Buffer {
  return createHmac("sha256", secret).update(`session-authority ${purpose}`).digest();
}

/** Encrypts `payload` so that only the holder of `secret` can read it: iv | tag | ciphertext. */
export function sealForSecret(secret: string, payload: unknown, purpose: SealPurpose = "successor v1"): Buffer {
  const iv = secureRandomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", sealingKey(secret, purpose), iv);
  const body = Buffer.concat([cipher.update(JSON.stringify(payload), "utf8"), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

/** Undefined if the seal was not made for this secret or was altered. */
export function openWithSecret<T>(secret: string, sealed: Buffer, purpose: SealPurpose = "successor v1"): T | undefined {
  try {
    const decipher = createDecipheriv("aes-256-gcm", sealingKey(secret, purpose), sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    const plain = Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]);
    return JSON.parse(plain.toString("utf8")) as T;
  } catch {
    return undefined;
  }
}
