import type { AccessTokenClaims, InvalidReason as TokenInvalidReason } from "./verify-access-token.js";

/**
 * Why the verifier refused a token: every reason `verifyAccessToken` gives,
 * plus `unavailable` when the verifier cannot decide (not ready yet, closed, or
 * its revocation feed is stale and it fails closed). Answer `unavailable` with
 * 503, the others with 401.
 *
 * @example
 * ```ts
 * const result = await verifier.verify(token);
 * if (!result.ok) res.statusCode = result.reason === "unavailable" ? 503 : 401;
 * ```
 */
export type InvalidReason = TokenInvalidReason | "unavailable";

/**
 * The outcome of a verification. On success `claims` is frozen: the same
 * object is handed out for every verification of the same token.
 *
 * @example
 * ```ts
 * const result = verifier.verifySync(token);
 * if (result.ok) console.log(result.claims.sub, result.claims.roles);
 * else if (result.reason === "revoked") console.log("revoked, reason", result.revocationReason);
 * ```
 */
export type VerifyResult =
  | { ok: true; claims: AccessTokenClaims }
  | {
      ok: false;
      reason: InvalidReason;
      message: string;
      /** With reason `revoked`: the RevocationReason the revocation recorded. */
      revocationReason?: number;
    };
