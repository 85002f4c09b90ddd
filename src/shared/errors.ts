/**
 * Every failure the authority reports to a caller. Callers `switch` on `code`;
 * the gRPC status for each code lives in one table (transport/status-table.ts).
 */
export type ErrorCode =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "resource_exhausted"
  | "refresh_token_invalid"
  | "refresh_token_reused"
  | "session_ended"
  | "store_unavailable"
  | "unavailable"
  | "unimplemented"
  | "deadline_exceeded"
  | "internal";

export class AuthorityError extends Error {
  override readonly name = "AuthorityError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Kept for logs only; never sent to the caller. */
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

export const invalidArgument = (message: string) => new AuthorityError("invalid_argument", message);
