
import { SignJWT } from "jose";
import type { StoredSession } from "../store/session-store.js";
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

/** Signs RFC 9068 access tokens for a session. */
export class AccessTokenIssuer {
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
    const token = await new SignJWT({
      client_id: session.clientId,
      sid: session.sid,
      username: session.username,
      roles: session.roles,
      permissions: session.permissions,
    })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "at+jwt" })
      .setIssuer(issuer)
      .setSubject(session.userId)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(jti)
      .sign(key.privateKey);
    return { token, jti, expiresAt: exp * 1000, issuedAt: iat * 1000 };
  }
}
