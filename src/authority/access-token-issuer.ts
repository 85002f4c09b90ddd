import { sign, type KeyObject } from "node:crypto";
import type { StoredSession } from "../store/session-store.js";
import type { SigningAlgorithm } from "../config/config.js";
import type { SigningKeyRing } from "./signing-keys.js";
import { secureRandomBytes } from "../shared/random.js";

export interface IssuedAccessToken {
  token: string;
  jti: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  /** The iat claim, in milliseconds. */
  issuedAt: number;
}

export interface AccessTokenIssuerOptions {
  keys: SigningKeyRing;
  issuer: string;
  audience: string;
  ttlMs: number;
}

/**
 * Signs RFC 9068 access tokens for a session.
 *
 * Signing is node:crypto's, not jose's: jose signs through WebCrypto, which
 * measured about 125 µs of CPU per ES256 token here against 30 µs for
 * node:crypto, and signing is the largest single cost of a refresh. jose still
 * checks every format we emit (the signing tests verify our tokens with
 * jose.jwtVerify). Every signature is made on the libuv thread pool: the event
 * loop then spends ~10 µs on it instead of ~30 (~50 under load), and it is the
 * event loop that limits the authority (Refresh@64: 3,586 against 3,237/s, the
 * mean of ten interleaved pairs); RSA signatures take milliseconds and would
 * stall it outright.
 */
export class AccessTokenIssuer {
  /** The encoded protected header per kid; it never changes for a key. */
  private readonly headers = new Map<string, string>();

  constructor(private readonly options: AccessTokenIssuerOptions) {}

  /**
   * @param notBefore the user's not-before in seconds: a global logout revokes
   *   tokens with iat below it, so tokens issued after the logout must not fall
   *   in the same second.
   */
  async issue(session: StoredSession, now: number, notBefore = 0): Promise<IssuedAccessToken> {
    const { keys, issuer, audience, ttlMs } = this.options;
    const key = keys.signingKey();
    const iat = Math.max(Math.floor(now / 1000), notBefore);
    const exp = Math.min(iat + Math.floor(ttlMs / 1000), Math.floor(session.absoluteExpiresAt / 1000));
    const jti = secureRandomBytes(16).toString("base64url");
    const claims = {
      iss: issuer,
      sub: session.userId,
      aud: audience,
      exp,
      iat,
      jti,
      client_id: session.clientId,
      sid: session.sid,
      username: session.username,
      roles: session.roles,
      permissions: session.permissions,
    };
    const input = `${this.header(key.kid, key.alg)}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
    const signature = await signWith(key.alg, key.privateKey, Buffer.from(input));
    return { token: `${input}.${signature.toString("base64url")}`, jti, expiresAt: exp * 1000, issuedAt: iat * 1000 };
  }

  private header(kid: string, alg: SigningAlgorithm): string {
    let header = this.headers.get(kid);
    if (!header) {
      header = Buffer.from(JSON.stringify({ alg, kid, typ: "at+jwt" })).toString("base64url");
      this.headers.set(kid, header);
    }
    return header;
  }
}

function signWith(alg: SigningAlgorithm, key: KeyObject, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, signature: Buffer) => (error ? reject(error) : resolve(signature));
    if (alg === "EdDSA") return sign(null, data, key, done);
    // JWS wants r||s (IEEE P1363) for ES256, not DER.
    sign("sha256", data, alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key, done);
  });
}
