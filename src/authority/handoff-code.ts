import { hash } from "node:crypto";
import { parseRefreshToken, formatRefreshToken, newRefreshSecret } from "./refresh-token.js";

/**
 * Browser handoff codes are `<session id>.<secret>`, shaped like a refresh token
 * (the id names the session's Redis slot; the secret is 256 random bits) but
 * hashed under a different label, so neither can stand in for the other. The
 * store keeps only the hash; the token pair waiting for the browser is sealed
 * under a key derived from the secret, so the stored handoff is useless without
 * the code.
 */
export interface HandoffCode {
  code: string;
  sid: string;
  secret: string;
}

export function newHandoffCode(sid: string): HandoffCode {
  const secret = newRefreshSecret();
  return { code: formatRefreshToken(sid, secret), sid, secret };
}

/** Undefined for anything not shaped like a handoff code. */
export function parseHandoffCode(code: string): HandoffCode | undefined {
  const parsed = parseRefreshToken(code);
  return parsed && { code, ...parsed };
}

export function hashHandoffSecret(secret: string): Buffer {
  return hash("sha256", `handoff:${secret}`, "buffer").subarray(0, 16);
}
