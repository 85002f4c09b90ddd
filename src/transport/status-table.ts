import { Code } from "@connectrpc/connect";
import type { ErrorCode } from "../shared/errors.js";

/**
 * The one mapping from domain error codes to gRPC status codes. Connect's Code
 * enum uses the gRPC numbers, so the same value serves grpc-js and connect-node.
 */
export const STATUS_OF: Record<ErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  resource_exhausted: Code.ResourceExhausted,
  refresh_token_invalid: Code.Unauthenticated,
  refresh_token_reused: Code.Unauthenticated,
  session_ended: Code.Unauthenticated,
  store_unavailable: Code.Unavailable,
  unavailable: Code.Unavailable,
  unimplemented: Code.Unimplemented,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
};

/** Response metadata key that carries the domain code, so clients can tell e.g. reuse from a plain bad token. */
export const ERROR_CODE_HEADER = "sa-error-code";
