import { RevocationReason } from "../gen/sessionauthority/v1/authority_pb.js";
import type { LoggedOutReason, RevocationReasonName } from "./session-events.js";

/** The proto enum as the SDK's names; unknown (newer) values count as `other`, as the proto asks. */
export function revocationReasonName(reason: RevocationReason): RevocationReasonName {
  switch (reason) {
    case RevocationReason.UNSPECIFIED:
      return "unspecified";
    case RevocationReason.USER_REQUEST:
      return "user_request";
    case RevocationReason.SECURITY_RISK:
      return "security_risk";
    case RevocationReason.ADMIN_ACTION:
      return "admin_action";
    case RevocationReason.PASSWORD_CHANGED:
      return "password_changed";
    case RevocationReason.ACCOUNT_LOCKED:
      return "account_locked";
    case RevocationReason.REFRESH_TOKEN_REUSE:
      return "refresh_token_reuse";
    default:
      return "other";
  }
}

const BY_REASON: Record<LoggedOutReason, string> = {
  logout: "You signed out.",
  revoked: "You were signed out.",
  session_ended: "Your session has ended. Please sign in again.",
  refresh_token_reused: "You were signed out because your session was used from somewhere else. Please sign in again.",
  refresh_token_invalid: "Your session is no longer valid. Please sign in again.",
  unauthenticated: "You are not signed in.",
  expired: "Your session has expired. Please sign in again.",
};

const BY_REVOCATION: Partial<Record<RevocationReasonName, string>> = {
  user_request: "You were signed out from another device.",
  security_risk: "You were signed out for your security. Please sign in again.",
  admin_action: "An administrator signed you out.",
  password_changed: "You were signed out because your password changed.",
  account_locked: "You were signed out because your account is locked.",
  refresh_token_reuse: BY_REASON.refresh_token_reused,
};

/** A sentence for the user when the authority sent none. */
export function defaultLogoutMessage(reason: LoggedOutReason, revocation?: RevocationReasonName): string {
  return (revocation && BY_REVOCATION[revocation]) || BY_REASON[reason];
}
