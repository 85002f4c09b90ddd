import { hash } from "node:crypto";
import { secureRandomBytes } from "../shared/random.js";

/**
 * Session ids carry the user's hash-slot tag: 16 characters (96 bits) derived
 * from the user id, then 16 random ones (96 bits: unique among a user's
 * sessions, and no secret: the refresh secret is). Knowing only a session id
 * (from a refresh token) the Redis store can therefore name every key of the
 * user, and all of them land in one Redis Cluster slot. 96 bits make two users
 * sharing a tag practically impossible (about 1e-13 at 100 million users).
 */
const TAG_LENGTH = 16;
export const SESSION_ID_LENGTH = TAG_LENGTH + 16;
const SESSION_ID = new RegExp(`^[A-Za-z0-9_-]{${SESSION_ID_LENGTH}}$`);

export function userTag(userId: string): string {
  return hash("sha256", userId, "base64url").slice(0, TAG_LENGTH);
}

export function newSessionId(userId: string): string {
  return userTag(userId) + secureRandomBytes(12).toString("base64url");
}

export function isSessionId(text: string): boolean {
  return SESSION_ID.test(text);
}

export function tagOfSessionId(sid: string): string {
  return sid.slice(0, TAG_LENGTH);
}

/** The random part: all a key needs once the tag is in the key's prefix. */
export function localPartOfSessionId(sid: string): string {
  return sid.slice(TAG_LENGTH);
}

export function belongsTo(sid: string, userId: string): boolean {
  return tagOfSessionId(sid) === userTag(userId);
}
