/**
 * The storage contract of the authority. Two implementations keep it:
 * `RedisSessionStore` (production, Redis or Redis Cluster) and
 * `MemorySessionStore` (the embedded single-process default). One contract test
 * suite runs against both.
 *
 * Every method is atomic. Times are milliseconds since the epoch and are passed
 * in (never read from a clock here), so an injected clock drives expiry in
 * tests exactly as real time does in production. Time is expected to move
 * forward: what has expired by one call's `now` may be pruned, so a later call
 * with an earlier `now` need not see it again.
 *
 * Calls that name a session and a user (rotate, reuse, check) act only on a
 * session of that user; for anyone else's session they behave as if it did not
 * exist.
 *
 * Refresh secrets never reach the store: only a 16-byte hash of each, and the
 * successor pair sealed under a key derived from the secret that preceded it.
 */

/** What a session is, as a device the user can see and end. */
export interface StoredSession {
  sid: string;
  userId: string;
  username: string;
  roles: string[];
  permissions: string[];
  clientId: string;
  deviceId: string;
  deviceName: string;
  userAgent: string;
  ip: string;
  createdAt: number;
  lastActivityAt: number;
  /** Slides with activity; never past absoluteExpiresAt. */
  idleExpiresAt: number;
  absoluteExpiresAt: number;
}

/** The refresh side of a session. */
export interface RefreshState {
  /** Hash of the live refresh secret. */
  current: Buffer;
  /** Hashes of earlier secrets, newest first, bounded; presenting one is reuse. */
  history: Buffer[];
  /** When `current` was issued. */
  rotatedAt: number;
  /** The sealed successor pair, present only during the grace window after a rotation: while now < rotatedAt + graceMs. */
  sealedSuccessor: Buffer | undefined;
}

export interface SessionSnapshot {
  session: StoredSession;
  refresh: RefreshState;
  /** The user's "not before", in whole seconds, if a global logout is in force. */
  userNotBefore: number | undefined;
}

/**
 * Revocation reasons as stored: the proto enum's numbers, so a new reason needs
 * no store change.
 */
export type ReasonCode = number;

export interface RevocationRecord {
  reason: ReasonCode;
}

export type SessionTarget =
  | { kind: "one"; sid: string }
  | { kind: "all" }
  | { kind: "allExcept"; sid: string };

export interface EndSessionsInput {
  userId: string;
  target: SessionTarget;
  reason: ReasonCode;
  now: number;
  /**
   * Revocation entries live until then: the longest life of an access token they cover.
   * (The memory store compares it with `now`; the Redis store turns it into a real-time TTL of
   * coverUntil - now, so there an entry's end does not follow an injected clock.)
   */
  coverUntil: number;
  /** With kind "one": end it only if it belongs to userId, else report not found. */
  requireOwnership: boolean;
}

export interface EndSessionsResult {
  /** Sessions that were live and are now ended. */
  ended: string[];
  /** The absolute expiry of each ended session, in the order of `ended` (for session-length metrics). */
  absoluteExpiresAt: number[];
  /** With kind "one" and requireOwnership: false when the session is not the user's (nothing changed). */
  found: boolean;
}

export interface CheckInput {
  userId: string;
  sid: string;
  jti: string;
  /** The token's iat, seconds. */
  issuedAt: number;
  now: number;
  /** Slide the idle deadline if the last touch is older than this. */
  touchIntervalMs: number;
  idleTimeoutMs: number;
}

export type CheckResult = { revoked: false } | { revoked: true; reason: ReasonCode };

export interface RotateInput {
  sid: string;
  userId: string;
  /** The hash the caller presented; the rotation happens only if it is still current. */
  expected: Buffer;
  next: Buffer;
  sealedSuccessor: Buffer;
  /** iat (seconds) of the access token in the successor: a user not-before above it makes this a conflict. */
  issuedAt: number;
  now: number;
  graceMs: number;
  idleTimeoutMs: number;
  historySize: number;
  /** Count this session's rotations; absent: no counting. */
  refreshRate?: RefreshRateLimit;
}

/**
 * Rotations of one session are counted in fixed windows of `windowMs`, each
 * starting at the whole second of the first rotation after the previous one
 * ended. The rotation that makes the count `limit + 1` reports `rateExceeded`
 * and records a `refresh_rate_exceeded` outbox event, so each window alerts
 * once. The counter lives in the session record (about 6 bytes): no extra key,
 * no extra round trip.
 */
export interface RefreshRateLimit {
  limit: number;
  windowMs: number;
}

/** `conflict`: someone rotated first; re-read and take the grace path. */
export type RotateResult =
  | { outcome: "rotated"; idleExpiresAt: number; rateExceeded?: true }
  | { outcome: "conflict" }
  | { outcome: "gone" };

export interface ReuseInput {
  sid: string;
  userId: string;
  presented: Buffer;
  now: number;
  graceMs: number;
  coverUntil: number;
  reason: ReasonCode;
}

/** `grace`: a rotation happened in between and the presented token is the fresh predecessor after all. */
export type ReuseResult = "revoked" | "grace" | "unknown";

/**
 * A browser handoff waiting to be taken: the session's first token pair, sealed
 * under a key only the handoff code yields, named by a hash of the code.
 */
export interface HandoffInput {
  /** The session it hands off; its user's slot holds the entry. */
  sid: string;
  /** Hash of the code's secret; the code itself never reaches the store. */
  codeHash: Buffer;
  sealed: Buffer;
  now: number;
  /** Invisible from then on (the Redis store also drops it then, by TTL). */
  expiresAt: number;
}

/**
 * A login to compare with the devices and IP addresses recently seen for the
 * user. Up to `keep` of each are remembered (the most recent), each forgotten
 * `forgetAfterMs` after it was last seen. An empty deviceId or ip is not compared.
 */
export interface LoginSighting {
  userId: string;
  sid: string;
  deviceId: string;
  ip: string;
  now: number;
  keep: number;
  forgetAfterMs: number;
}

/**
 * Which of the two was new. A dimension with nothing remembered yet (the user's
 * first login on record) is never new. When either is new, a `new_device_login`
 * outbox event is recorded in the same step.
 */
export interface LoginNovelty {
  newDevice: boolean;
  newIp: boolean;
}

/** A signing key as persisted: the private half only encrypted. */
export interface StoredSigningKey {
  kid: string;
  alg: string;
  /** Public JWK, JSON. */
  publicJwk: string;
  /** AES-256-GCM of the PKCS#8 private key under the key-encryption key: iv | tag | ciphertext, base64. */
  encryptedPrivateKey: string;
  createdAt: number;
  /** Not used to sign before this, so verifiers can fetch it first. */
  activatesAt: number;
  /** Dropped from the key set after this (0: not scheduled). */
  retiresAt: number;
}

/**
 * A revocation or security fact, written to the outbox in the same atomic step
 * as the change itself (only when the store was built with `outbox: true`), and
 * published from there until acknowledged.
 */
export interface OutboxEvent {
  /** Unique id: the message id for idempotent publishing. */
  id: string;
  type: "token_revoked" | "session_revoked" | "user_revoked" | "refresh_reuse" | "refresh_rate_exceeded" | "new_device_login";
  /** Empty when a session was revoked by id alone after it had ended. */
  userId: string;
  sid?: string;
  jti?: string;
  reason: ReasonCode;
  at: number;
  /** The user's "not before" (seconds), for user_revoked. */
  notBefore?: number;
  /** Until when the revocation matters (security events: `at`). */
  expiresAt: number;
  /** refresh_rate_exceeded: the rotations counted, and the window they were counted in. */
  count?: number;
  windowMs?: number;
  /** new_device_login: the device id and the address that were new (absent if not). */
  deviceId?: string;
  ip?: string;
}

/** Pending outbox events; `ack` removes the ones that were published. */
export interface OutboxBatch {
  events: OutboxEvent[];
  ack(ids: string[]): Promise<void>;
}

export interface SessionStore {
  /**
   * Stores a new session (fields as given) with its first refresh hash, rotatedAt = now, and indexes it.
   * Returns the user's "not before" (s), if any.
   */
  createSession(session: StoredSession, refreshHash: Buffer, now: number): Promise<number | undefined>;
  /** A live session, or undefined if it never existed, ended or expired by `now`. */
  getSession(sid: string, now: number): Promise<SessionSnapshot | undefined>;
  /** Compare-and-set rotation; slides the idle deadline. */
  rotateRefresh(input: RotateInput): Promise<RotateResult>;
  /**
   * Ends the session if `presented` is one of its earlier refresh hashes outside the grace window.
   * `grace` only for the newest earlier hash while now - rotatedAt <= graceMs and the sealed successor is
   * still present; `unknown` when the hash is not in the history or the session is not live.
   */
  revokeOnReuse(input: ReuseInput): Promise<ReuseResult>;
  /** Ends sessions of one user; "all" also records the user's not-before. */
  endSessions(input: EndSessionsInput): Promise<EndSessionsResult>;
  /** Revokes one access token by jti until it expires. */
  revokeToken(input: { userId: string; sid: string; jti: string; reason: ReasonCode; now: number; coverUntil: number }): Promise<void>;
  /** Is this token revoked (by jti, sid or user not-before)? Touches the session's idle deadline when due. */
  checkToken(input: CheckInput): Promise<CheckResult>;
  /** A user's live sessions, soonest-expiring first (the order of equal expiries is unspecified). */
  listSessions(userId: string, now: number): Promise<StoredSession[]>;
  /** Remembers the login's device and address for the user and says which of them was new (see LoginSighting). */
  recordLogin(input: LoginSighting): Promise<LoginNovelty>;
  /**
   * The number of live sessions in the whole store, for a gauge. Expensive on
   * Redis (a SCAN of every master's keyspace), so replicas share it: a count
   * made by any replica less than `maxAgeMs` ago is returned as is, and only
   * one replica at a time recounts; the others get the last count, or
   * undefined if there is none yet. Never call it on a request path.
   */
  countLiveSessions(now: number, maxAgeMs: number): Promise<number | undefined>;

  /** Keeps a handoff until its expiresAt. */
  putHandoff(input: HandoffInput): Promise<void>;
  /**
   * Removes and returns the sealed pair of the handoff named by (sid, codeHash)
   * in one atomic step, so exactly one caller gets it; undefined if it is
   * unknown, already taken or expired by `now`.
   */
  takeHandoff(input: { sid: string; codeHash: Buffer; now: number }): Promise<Buffer | undefined>;

  /** Up to `limit` unpublished outbox events, oldest first within each user. */
  readOutbox(limit: number): Promise<OutboxBatch>;
  /**
   * Finds outbox entries that readOutbox would miss (a process died between
   * recording an event and marking where it is). Slow; run it now and then,
   * never on the publishing path.
   */
  sweepOutbox(): Promise<void>;
  /**
   * Tells `listener` about events this process records, right after they are
   * stored, so they can be published without waiting to be read back. They stay
   * in the outbox until acknowledged either way. Returns an unsubscribe function.
   */
  watchOutbox(listener: (batch: OutboxBatch) => void): () => void;

  listSigningKeys(): Promise<StoredSigningKey[]>;
  /** Adds a key unless one with its kid exists; returns whether it was added. */
  addSigningKey(key: StoredSigningKey): Promise<boolean>;
  /** Adds a key only if the store holds none; false if another replica got there first. */
  addFirstSigningKey(key: StoredSigningKey): Promise<boolean>;
  updateSigningKey(key: StoredSigningKey): Promise<void>;
  removeSigningKey(kid: string): Promise<void>;

  /** Resolves when the store answers; throws store_unavailable otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
