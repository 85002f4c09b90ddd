import { RevocationReason } from "../gen/sessionauthority/v1/authority_pb.js";

/**
 * What a user is told when a session ends, per revocation reason: `own` for
 * the session they are using, `other` for another of their devices. The one
 * place these words live; clients may show them as they are.
 */
export const SESSION_ENDED_MESSAGES: Record<RevocationReason, { own: string; other: string }> = {
  [RevocationReason.UNSPECIFIED]: {
    own: "Your session has ended. Please sign in again.",
    other: "One of your other sessions has ended.",
  },
  [RevocationReason.USER_REQUEST]: {
    own: "You were signed out, as requested from one of your devices.",
    other: "One of your other sessions was signed out, as requested from one of your devices.",
  },
  [RevocationReason.SECURITY_RISK]: {
    own: "You were signed out to protect your account from a security risk.",
    other: "One of your other sessions was signed out to protect your account from a security risk.",
  },
  [RevocationReason.ADMIN_ACTION]: {
    own: "You were signed out by an administrator.",
    other: "One of your other sessions was signed out by an administrator.",
  },
  [RevocationReason.PASSWORD_CHANGED]: {
    own: "You were signed out because your password was changed.",
    other: "One of your other sessions was signed out because your password was changed.",
  },
  [RevocationReason.ACCOUNT_LOCKED]: {
    own: "You were signed out because your account was locked.",
    other: "One of your other sessions was signed out because your account was locked.",
  },
  [RevocationReason.REFRESH_TOKEN_REUSE]: {
    own: "You were signed out because this session's credentials were used from somewhere else. Please sign in again.",
    other: "One of your other sessions was ended because its credentials were used from somewhere else.",
  },
  [RevocationReason.OTHER]: {
    own: "You were signed out. Please sign in again.",
    other: "One of your other sessions was signed out.",
  },
};

/** The words for `reason`; an unknown reason reads as OTHER. */
export function sessionEndedMessage(reason: number, own: boolean): string {
  const entry = SESSION_ENDED_MESSAGES[reason as RevocationReason] ?? SESSION_ENDED_MESSAGES[RevocationReason.OTHER];
  return own ? entry.own : entry.other;
}
