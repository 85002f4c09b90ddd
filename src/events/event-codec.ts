import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
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
  const entry = readRevocationEntry(data);
  return entry ? { type: "revocation", entry } : { type: "ignored" };
}

/**
 * RevocationEvent (events.proto) straight off the wire into the entry a verifier
 * keeps. A sidecar's cold start decodes the whole stream (100k events and more)
 * and the reflective fromBinary made most of that replay's garbage; this reads
 * the same fields with the library's wire reader and builds one object. Unknown
 * fields are skipped, as protobuf requires; test/unit/event-codec.test.ts holds
 * it to fromBinary's answers.
 */
export function readRevocationEntry(data: Uint8Array): RevocationEntry | undefined {
  const r = new BinaryReader(data);
  let userId = "";
  let reason = 0;
  let revokedAt: number | undefined;
  let expiresAt = 0;
  let kind: RevocationEntry["kind"] | undefined;
  let jti = "";
  let sid = "";
  let notBefore = 0;
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    // Nested messages are read in place (length, then fields up to its end): a
    // reader per nested message was a tenth of the replay's CPU.
    switch (field) {
      case 2: userId = r.string(); break;
      case 3: {
        kind = "token";
        jti = sid = "";
        for (const end = nestedEnd(r); within(r, end);) {
          const [f, w] = r.tag();
          if (f === 1) jti = r.string();
          else if (f === 2) sid = r.string();
          else r.skip(w);
        }
        break;
      }
      case 4: {
        kind = "session";
        sid = "";
        for (const end = nestedEnd(r); within(r, end);) {
          const [f, w] = r.tag();
          if (f === 1) sid = r.string();
          else r.skip(w);
        }
        break;
      }
      case 5: {
        kind = "user";
        notBefore = 0;
        for (const end = nestedEnd(r); within(r, end);) {
          const [f, w] = r.tag();
          if (f === 1) notBefore = Number(r.int64());
          else r.skip(w);
        }
        break;
      }
      case 6: reason = r.int32(); break;
      case 7: revokedAt = readTimestampMs(r); break;
      case 8: expiresAt = readTimestampMs(r); break;
      default: r.skip(wireType);
    }
  }
  // One object per entry, built whole: a spread of shared fields doubled the garbage.
  let entry: RevocationEntry;
  switch (kind) {
    case "token": entry = { kind, jti, sid, userId, reason, expiresAt }; break;
    case "session": entry = { kind, sid, userId, reason, expiresAt }; break;
    case "user": entry = { kind, userId, notBefore, reason, expiresAt }; break;
    default: return undefined;
  }
  if (revokedAt !== undefined) entry.revokedAt = revokedAt;
  return entry;
}

/** Where the length-delimited field at the reader's position ends; refuses one that runs past the data. */
function nestedEnd(r: BinaryReader): number {
  const end = r.uint32() + r.pos;
  if (end > r.len) throw new RangeError("premature EOF");
  return end;
}

/** Whether the reader is still inside a nested message; a field that ran past its end is malformed. */
function within(r: BinaryReader, end: number): boolean {
  if (r.pos > end) throw new RangeError("invalid nested message length");
  return r.pos < end;
}

/** google.protobuf.Timestamp at the reader's position, in milliseconds, rounded as timestampMs rounds. */
export function readTimestampMs(r: BinaryReader): number {
  let seconds = 0;
  let nanos = 0;
  for (const end = nestedEnd(r); within(r, end);) {
    const [f, w] = r.tag();
    if (f === 1) seconds = Number(r.int64());
    else if (f === 2) nanos = r.int32();
    else r.skip(w);
  }
  return seconds * 1000 + Math.round(nanos / 1_000_000);
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
