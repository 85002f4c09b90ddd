import { createHash, randomBytes } from "node:crypto";

/**
 * Session ids carry the user's hash-slot tag: 11 characters derived from the
 * user id, then 22 random ones (128 bits). Knowing only a session id (from a
 * refresh token) the Redis store can therefore name every key of the user, and
 * all of them land in one Redis Cluster slot.
 */
const TAG_LENGTH = 11;
const SESSION_ID = /^[A-Za-z0-9_-]{33}$/;

export function userTag(userId: string): string {
  return createHash("sha256").update(userId).digest("base64url").slice(0, TAG_LENGTH);
}

export function newSessionId(userId: string): string {
  return userTag(userId) + randomBytes(16).toString("base64url");
}

export function isSessionId(text: string): boolean {
  return SESSION_ID.test(text);
}

export function tagOfSessionId(sid: string): string {
  return sid.slice(0, TAG_LENGTH);
}
