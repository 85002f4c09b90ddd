import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  PrincipalSchema, RevocationReason, TokenInvalidReason, ValidateTokenResponseSchema, type ValidateTokenResponse,
} from "../gen/sessionauthority/v1/authority_pb.js";
import type { AccessTokenClaims, InvalidReason } from "../verifier/verify-access-token.js";

const REASON_OF: Record<InvalidReason, TokenInvalidReason> = {
  malformed: TokenInvalidReason.MALFORMED,
  too_large: TokenInvalidReason.TOO_LARGE,
  unsupported_algorithm: TokenInvalidReason.UNSUPPORTED_ALGORITHM,
  unknown_key: TokenInvalidReason.UNKNOWN_KEY,
  bad_signature: TokenInvalidReason.BAD_SIGNATURE,
  wrong_type: TokenInvalidReason.WRONG_TYPE,
  wrong_issuer: TokenInvalidReason.WRONG_ISSUER,
  wrong_audience: TokenInvalidReason.WRONG_AUDIENCE,
  expired: TokenInvalidReason.EXPIRED,
  not_yet_valid: TokenInvalidReason.NOT_YET_VALID,
  revoked: TokenInvalidReason.REVOKED,
};

export type TokenVerdict =
  | { ok: true; claims: AccessTokenClaims }
  | { ok: false; reason: InvalidReason; message: string; revocationReason?: number };

/** The ValidateToken reply, the same from the authority and from a sidecar. */
export function validateTokenResponse(verdict: TokenVerdict): ValidateTokenResponse {
  if (!verdict.ok) {
    return create(ValidateTokenResponseSchema, {
      valid: false,
      reason: REASON_OF[verdict.reason],
      revocationReason: verdict.revocationReason ?? RevocationReason.UNSPECIFIED,
      message: verdict.message,
    });
  }
  const c = verdict.claims;
  return create(ValidateTokenResponseSchema, {
    valid: true,
    principal: create(PrincipalSchema, {
      userId: c.sub, username: c.username, sessionId: c.sid, roles: c.roles, permissions: c.permissions,
      clientId: c.client_id, tokenId: c.jti, issuedAt: timestampFromMs(c.iat * 1000), expiresAt: timestampFromMs(c.exp * 1000),
    }),
  });
}
