/**
 * How WatchSession learns that sessions ended, wherever the revocation happened.
 * With NATS every replica hears every revocation (NatsSessionEndFeed, fed by the
 * events the outbox relay publishes); the embedded single-process setup uses an
 * in-process bus (LocalSessionEndFeed) that the session service publishes to.
 */

/** One or every session of a user ended. Times in ms since the epoch. */
export type SessionEndNotice =
  | { kind: "session"; userId: string; sid: string; reason: number; at: number }
  /** Every session of the user created before `at` ended (global logout). */
  | { kind: "user"; userId: string; reason: number; at: number };

export type SessionEndListener = (notice: SessionEndNotice) => void;

export interface SessionEndFeed {
  /** Calls `listener` with every later notice about `userId`'s sessions; returns the unsubscribe function. */
  subscribe(userId: string, listener: SessionEndListener): () => void;
  /** Resolves once notices flow (the NATS subscription is in place). */
  ready(): Promise<void>;
  close(): Promise<void>;
}
