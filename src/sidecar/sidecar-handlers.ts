import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  PrincipalSchema, TokenInvalidReason, ValidateTokenResponseSchema, type ValidateTokenRequest,
} from "../gen/sessionauthority/v1/authority_pb.js";
import { AuthorityError, invalidArgument } from "../shared/errors.js";
import type { UnaryHandler } from "../transport/call-context.js";
import type { InvalidReason } from "../verifier/verifier-result.js";
import type { Verifier } from "../verifier/verifier.js";

const REASON_OF: Record<Exclude<InvalidReason, "unavailable">, TokenInvalidReason> = {
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

const AUTHORITY_ONLY = ["createSession", "refresh", "revoke", "logout", "listSessions", "getJwks"];

/**
 * The sidecar serves the authority's own service, so a service calls
 * ValidateToken the same way on either; the calls that change state are the
 * authority's alone and answer UNIMPLEMENTED here. A verifier that cannot vouch
 * for revocations (not ready, or its feed is stale in fail-closed mode) answers
 * UNAVAILABLE, so gRPC clients retry elsewhere instead of trusting a token.
 */
export function createSidecarHandlers(verifier: Verifier): Record<string, UnaryHandler> {
  const handlers: Record<string, UnaryHandler> = {
    async validateToken(req: ValidateTokenRequest) {
      if (!req.accessToken) throw invalidArgument("access_token is required");
      const result = await verifier.verify(req.accessToken);
      if (!result.ok) {
        if (result.reason === "unavailable") throw new AuthorityError("unavailable", result.message);
        return create(ValidateTokenResponseSchema, {
          valid: false,
          reason: REASON_OF[result.reason],
          revocationReason: result.revocationReason ?? 0,
          message: result.message,
        });
      }
      const c = result.claims;
      return create(ValidateTokenResponseSchema, {
        valid: true,
        principal: create(PrincipalSchema, {
          userId: c.sub, username: c.username, sessionId: c.sid, roles: c.roles, permissions: c.permissions,
          clientId: c.client_id, tokenId: c.jti, issuedAt: timestampFromMs(c.iat * 1000), expiresAt: timestampFromMs(c.exp * 1000),
        }),
      });
    },
  };
  for (const name of AUTHORITY_ONLY) {
    handlers[name] = async () => {
      throw new AuthorityError("unimplemented", "this is a verifier sidecar: call the session authority for this");
    };
  }
  return handlers;
}
