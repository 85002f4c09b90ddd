import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Every failure the client SDK reports. Callers `switch` on `code`
 * (e.g. `if (error.code === "unavailable") retryLater()`).
 *
 * - `signed_out`: there is no session; sign in first.
 * - `session_ended`, `refresh_token_reused`, `refresh_token_invalid`, `unauthenticated`:
 *   the authority refused the refresh credential; the session is over (see {@link SessionClientError.endsSession}).
 * - `permission_denied`, `invalid_argument`, `not_found`: the authority refused the request as asked.
 * - `unavailable`: network failure, timeout, or the authority (or its store) is down; retrying later can work.
 * - `bad_response`: the authority answered something outside the contract.
 * - `unsupported`: the operation needs another refresher (e.g. a handoff code with the RPC refresher).
 * - `closed`: the client was closed.
 */
export type SessionClientErrorCode =
  | "signed_out"
  | "session_ended"
  | "refresh_token_reused"
  | "refresh_token_invalid"
  | "unauthenticated"
  | "permission_denied"
  | "invalid_argument"
  | "not_found"
  | "unavailable"
  | "bad_response"
  | "unsupported"
  | "closed";

const SESSION_ENDING: ReadonlySet<SessionClientErrorCode> = new Set([
  "session_ended",
  "refresh_token_reused",
  "refresh_token_invalid",
  "unauthenticated",
]);

/**
 * The one error class of the client SDK. Messages never contain tokens.
 *
 * @example
 * ```ts
 * try {
 *   await client.listDevices();
 * } catch (error) {
 *   if (error instanceof SessionClientError && error.code === "unavailable") showOfflineBanner();
 *   else throw error;
 * }
 * ```
 */
export class SessionClientError extends Error {
  override readonly name = "SessionClientError";
  constructor(
    readonly code: SessionClientErrorCode,
    message: string,
    /** The HTTP status, when the error came from an HTTP answer. */
    readonly status?: number,
    override readonly cause?: unknown,
  ) {
    super(message);
  }

  /** True when a refresh failing this way means the session is over (no retry can help). */
  get endsSession(): boolean {
    return SESSION_ENDING.has(this.code);
  }
}

/** Domain codes of the authority's error bodies and `sa-error-code` metadata, as client codes. */
const DOMAIN_CODES: Record<string, SessionClientErrorCode> = {
  session_ended: "session_ended",
  refresh_token_reused: "refresh_token_reused",
  refresh_token_invalid: "refresh_token_invalid",
  unauthenticated: "unauthenticated",
  permission_denied: "permission_denied",
  invalid_argument: "invalid_argument",
  not_found: "not_found",
  store_unavailable: "unavailable",
  unavailable: "unavailable",
  deadline_exceeded: "unavailable",
  internal: "unavailable",
};

/** The client error for a failed Connect call, using the authority's `sa-error-code` when present. */
export function fromConnectError(error: unknown, what: string): SessionClientError {
  if (error instanceof SessionClientError) return error;
  const ce = ConnectError.from(error);
  const domain = DOMAIN_CODES[ce.metadata.get("sa-error-code") ?? ""];
  return new SessionClientError(domain ?? codeOfStatus(ce.code), `${what} failed: ${ce.rawMessage || Code[ce.code]}`, undefined, error);
}

function codeOfStatus(code: Code): SessionClientErrorCode {
  switch (code) {
    case Code.Unauthenticated:
      return "unauthenticated";
    case Code.PermissionDenied:
      return "permission_denied";
    case Code.InvalidArgument:
      return "invalid_argument";
    case Code.NotFound:
      return "not_found";
    case Code.Unimplemented:
      return "unsupported";
    default:
      // Unavailable, DeadlineExceeded, Canceled (our timeout), Internal, Unknown…: worth another try later.
      return "unavailable";
  }
}

/** The client error for a non-2xx answer of an `/auth/v1/*` endpoint (`{"code","message"}` body). */
export function fromHttpError(status: number, body: string, what: string): SessionClientError {
  let code: SessionClientErrorCode | undefined;
  let message = "";
  try {
    const parsed = JSON.parse(body) as { code?: unknown; message?: unknown };
    if (typeof parsed.code === "string") code = DOMAIN_CODES[parsed.code];
    if (typeof parsed.message === "string") message = parsed.message;
  } catch {
    // Not our JSON (a proxy's error page, say): the status decides.
  }
  code ??=
    status === 401 ? "unauthenticated"
    : status === 403 ? "permission_denied"
    : status === 400 ? "invalid_argument"
    : status === 404 ? "not_found"
    : status === 429 || status >= 500 ? "unavailable"
    : "bad_response";
  return new SessionClientError(code, `${what} failed: HTTP ${status}${message ? ` ${message}` : ""}`, status);
}
