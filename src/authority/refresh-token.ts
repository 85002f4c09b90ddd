import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import { isSessionId, SESSION_ID_LENGTH } from "../store/session-id.js";

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
  return randomBytes(SECRET_BYTES).toString("base64url");
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
  return createHash("sha256").update(secret).digest().subarray(0, REFRESH_HASH_BYTES);
}

function sealingKey(secret: string): Buffer {
  return Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), "session-authority successor v1", 32));
}

/** Encrypts `payload` so that only the holder of `secret` can read it: iv | tag | ciphertext. */
export function sealForSecret(secret: string, payload: unknown): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", sealingKey(secret), iv);
  const body = Buffer.concat([cipher.update(JSON.stringify(payload), "utf8"), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

/** Undefined if the seal was not made for this secret or was altered. */
export function openWithSecret<T>(secret: string, sealed: Buffer): T | undefined {
  try {
    const decipher = createDecipheriv("aes-256-gcm", sealingKey(secret), sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    const plain = Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]);
    return JSON.parse(plain.toString("utf8")) as T;
  } catch {
    return undefined;
  }
}
