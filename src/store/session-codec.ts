import { deflateRawSync, inflateRawSync } from "node:zlib";
import type { StoredSession } from "./session-store.js";

/**
 * The immutable part of a session, compressed for Redis. Most of a session's
 * bytes are its user agent, and user agents repeat the same long fragments, so
 * deflate with a preset dictionary of those fragments shrinks a typical session
 * from about 260 to about 100 bytes (BENCHMARKS.md: Redis memory per session).
 * Changing the dictionary makes existing sessions unreadable: add a new version
 * byte and keep the old dictionary if it ever has to change.
 */
const VERSION = 1;
const DICTIONARY = Buffer.from(
  [
    " Gecko/20100101 Firefox/ Edg/ OPR/ SamsungBrowser/ CriOS/ FxiOS/ Mobile/15E148 Version/17.0 Version/18.0",
    " (iPad; CPU OS 17_0 like Mac OS X) (iPhone; CPU iPhone OS 18_0 like Mac OS X) (X11; Linux x86_64)",
    " (Linux; Android 10; K) (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    " okhttp/4.12.0 Dart/3.5 (dart:io) CFNetwork/1568.100.1 Darwin/24.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    '"],["user","admin"],["read","write"],"web","',
  ].join(""),
  "latin1",
);

type Static = Omit<StoredSession, "sid" | "lastActivityAt" | "idleExpiresAt" | "absoluteExpiresAt">;

export function encodeSessionStatic(s: StoredSession): Buffer {
  const json = JSON.stringify([s.userId, s.username, s.roles, s.permissions, s.clientId, s.deviceId, s.deviceName, s.userAgent, s.ip, s.createdAt]);
  return Buffer.concat([Buffer.of(VERSION), deflateRawSync(json, { dictionary: DICTIONARY, level: 9 })]);
}

export function decodeSessionStatic(blob: Buffer): Static {
  if (blob[0] !== VERSION) throw new Error(`unknown session encoding ${blob[0]}`);
  const json = inflateRawSync(blob.subarray(1), { dictionary: DICTIONARY }).toString("utf8");
  const [userId, username, roles, permissions, clientId, deviceId, deviceName, userAgent, ip, createdAt] = JSON.parse(json);
  return { userId, username, roles, permissions, clientId, deviceId, deviceName, userAgent, ip, createdAt };
}
