import type { StoredSession } from "../store/session-store.js";
import type { SigningAlgorithm } from "../config/config.js";
import type { SigningKeyRing } from "./signing-keys.js";
import type { SigningWorker } from "./signing-worker.js";
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
  /** Where signatures are made: off the event loop (see SigningWorker). */
  signer: SigningWorker;
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
 * jose.jwtVerify). Signatures are made off the event loop, which limits the
 * authority: signing on it measured Refresh@64 at 0.47-1.02× the throughput of
 * signing on another thread (four interleaved pairs), and an RSA signature
 * (~260 µs) would stall it outright.
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
    const { keys, signer, issuer, audience, ttlMs } = this.options;
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
    const signature = await signer.sign(key.kid, key.alg, key.privateKey, input);
    return { token: `${input}.${signature}`, jti, expiresAt: exp * 1000, issuedAt: iat * 1000 };
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
