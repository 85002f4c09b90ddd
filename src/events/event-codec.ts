import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  RevocationEventSchema, SecurityEventSchema, SecurityEventType, SigningKeyEventSchema,
} from "../gen/sessionauthority/v1/events_pb.js";
import type { OutboxEvent } from "../store/session-store.js";
import type { RevocationEntry } from "../verifier/revocation-feed.js";
import type { SessionEndNotice } from "./session-end-feed.js";
import { securityEventDetail, type SecurityEventFacts, type SecurityEventType as SecurityType } from "./security-event-detail.js";
import { SUBJECTS } from "./subjects.js";

export interface EncodedEvent {
  subject: string;
  data: Uint8Array;
  /** The message id JetStream deduplicates on. */
  id: string;
}

const SECURITY_TYPE: Record<SecurityType, SecurityEventType> = {
  refresh_reuse: SecurityEventType.REFRESH_REUSE,
  new_device_login: SecurityEventType.NEW_DEVICE_LOGIN,
  refresh_rate_exceeded: SecurityEventType.REFRESH_RATE_EXCEEDED,
  mass_logout: SecurityEventType.MASS_LOGOUT,
  store_errors: SecurityEventType.STORE_ERRORS,
};

/** A security event as published on `sa.v1.security.<type>`. */
export function encodeSecurityEvent(id: string, e: SecurityEventFacts): EncodedEvent {
  const message = create(SecurityEventSchema, {
    id, type: SECURITY_TYPE[e.type], userId: e.userId, sessionId: e.sid ?? "", at: timestampFromMs(e.at),
    detail: securityEventDetail(e), count: e.count ?? 0, deviceId: e.deviceId ?? "", ipAddress: e.ip ?? "",
  });
  return { subject: SUBJECTS.security(e.type), data: toBinary(SecurityEventSchema, message), id };
}

/** Turns an outbox entry into the message published for it. */
export function encodeOutboxEvent(e: OutboxEvent): EncodedEvent {
  if (e.type === "refresh_reuse" || e.type === "refresh_rate_exceeded" || e.type === "new_device_login") {
    return encodeSecurityEvent(e.id, { ...e, type: e.type });
  }
  const common = { id: e.id, userId: e.userId, reason: e.reason, revokedAt: timestampFromMs(e.at), expiresAt: timestampFromMs(e.expiresAt) };
  const [subject, target] =
    e.type === "token_revoked" ? [SUBJECTS.revokedToken, { case: "token" as const, value: { tokenId: e.jti ?? "", sessionId: e.sid ?? "" } }]
    : e.type === "session_revoked" ? [SUBJECTS.revokedSession, { case: "session" as const, value: { sessionId: e.sid ?? "" } }]
    : [SUBJECTS.revokedUser, { case: "user" as const, value: { notBefore: BigInt(e.notBefore ?? 0) } }];
  return { subject, data: toBinary(RevocationEventSchema, create(RevocationEventSchema, { ...common, target })), id: e.id };
}

export function encodeKeyEvent(id: string, kid: string, retired: boolean, at: number): EncodedEvent {
  return { subject: SUBJECTS.keys, data: toBinary(SigningKeyEventSchema, create(SigningKeyEventSchema, { id, kid, retired, at: timestampFromMs(at) })), id };
}

export type DecodedMessage = { type: "revocation"; entry: RevocationEntry } | { type: "keys" } | { type: "ignored" };

/** Reads a message of the revocation stream; unknown subjects are ignored (forward compatibility). */
export function decodeStreamMessage(subject: string, data: Uint8Array): DecodedMessage {
  if (subject === SUBJECTS.keys) return { type: "keys" };
  if (!subject.startsWith("sa.v1.revocation.")) return { type: "ignored" };
  const e = fromBinary(RevocationEventSchema, data);
  const expiresAt = e.expiresAt ? timestampDate(e.expiresAt).getTime() : 0;
  const base = { reason: e.reason, expiresAt, userId: e.userId, ...(e.revokedAt ? { revokedAt: timestampDate(e.revokedAt).getTime() } : {}) };
  switch (e.target.case) {
    case "token":
      return { type: "revocation", entry: { ...base, kind: "token", jti: e.target.value.tokenId, sid: e.target.value.sessionId } };
    case "session":
      return { type: "revocation", entry: { ...base, kind: "session", sid: e.target.value.sessionId } };
    case "user":
      return { type: "revocation", entry: { ...base, kind: "user", notBefore: Number(e.target.value.notBefore) } };
    default:
      return { type: "ignored" };
  }
}

/** A session or user revocation as WatchSession needs it; undefined for other events. */
export function decodeSessionEnd(subject: string, data: Uint8Array): SessionEndNotice | undefined {
  if (subject !== SUBJECTS.revokedSession && subject !== SUBJECTS.revokedUser) return undefined;
  const e = fromBinary(RevocationEventSchema, data);
  const at = e.revokedAt ? timestampDate(e.revokedAt).getTime() : 0;
  if (e.target.case === "session") return { kind: "session", userId: e.userId, sid: e.target.value.sessionId, reason: e.reason, at };
  if (e.target.case === "user") return { kind: "user", userId: e.userId, reason: e.reason, at };
  return undefined;
}
