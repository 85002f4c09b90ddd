import type { ValidateTokenRequest } from "../gen/sessionauthority/v1/authority_pb.js";
import { AuthorityError, invalidArgument } from "../shared/errors.js";
import type { UnaryHandler } from "../transport/call-context.js";
import { validateTokenResponse, type TokenVerdict } from "../transport/validate-token-response.js";
import type { Verifier } from "../verifier/verifier.js";

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
      if (!result.ok && result.reason === "unavailable") throw new AuthorityError("unavailable", result.message);
      return validateTokenResponse(result as TokenVerdict);
    },
  };
  for (const name of AUTHORITY_ONLY) {
    handlers[name] = async () => {
      throw new AuthorityError("unimplemented", "this is a verifier sidecar: call the session authority for this");
    };
  }
  return handlers;
}
