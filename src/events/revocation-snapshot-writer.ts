import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { retryUntilDone } from "../verifier/retry-until-done.js";
import type { FeedSink } from "../verifier/revocation-feed.js";
import { RevocationSet } from "../verifier/revocation-set.js";
import { NatsRevocationFeed } from "./nats-revocation-feed.js";
import { encodeRevocationSnapshot, type SnapshotPosition } from "./revocation-snapshot.js";
import { snapshotBucket, snapshotObject, storedSnapshot } from "./snapshot-bucket.js";

export interface RevocationSnapshotWriterOptions {
  /** NATS server URL(s). */
  servers: string[];
  /** How often to store a new snapshot when the stream has moved on. */
  intervalMs: number;
  /**
   * The clock skew verifiers allow: entries are kept until that long after
   * they expire by this clock, so a verifier whose clock is behind still finds
   * every entry it would hold after a full replay.
   */
  clockSkewMs: number;
  logger: Logger;
  clock: Clock;
}

/**
 * Keeps the stored revocation snapshot current. It follows the revocation
 * stream into a set of its own, as a verifier does, and every interval stores
 * that set with the sequence it reflects, if the stored snapshot is older.
 * Every authority replica runs one. Each first reads what is stored and leaves
 * a snapshot younger than the interval alone, so in each interval the replica
 * whose timer fires first writes and the others skip; a write that races
 * another only stores an equally valid snapshot.
 *
 * A snapshot written while the set is being iterated is still exact for its
 * sequence: entries only arrive from later messages, and the tail replay
 * applies those again.
 */
export class RevocationSnapshotWriter {
  private readonly set = new RevocationSet();
  private readonly feed: NatsRevocationFeed;
  private readonly stopping = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<boolean> | undefined;
  /** Snapshots this process stored (for tests and logs). */
  written = 0;

  constructor(private readonly o: RevocationSnapshotWriterOptions) {
    this.feed = new NatsRevocationFeed({ servers: o.servers, logger: o.logger, clock: o.clock });
  }

  /** Starts following the stream in the background; the first write waits one interval. */
  start(): void {
    const sink: FeedSink = { apply: (entry) => void this.set.apply(entry, this.keepFrom()), keysChanged: () => {} };
    retryUntilDone(() => this.feed.start(sink), {
      signal: this.stopping.signal,
      onFailure: (e) => this.o.logger.warn({ err: (e as Error).message }, "snapshot writer could not read the revocation stream; retrying"),
    }).catch(() => undefined);
    this.timer = setInterval(() => void this.writeIfDue().catch((e: Error) => this.o.logger.warn({ err: e.message }, "revocation snapshot not stored")), this.o.intervalMs);
    this.timer.unref();
  }

  /** Stores a snapshot now if the stored one is behind what this writer has read; resolves to whether it stored one. */
  writeIfBehind(): Promise<boolean> {
    return this.write(false);
  }

  /** What the timer runs: as writeIfBehind, but leaves alone a snapshot stored less than an interval ago (by another replica, most likely). */
  writeIfDue(): Promise<boolean> {
    return this.write(true);
  }

  private write(timed: boolean): Promise<boolean> {
    this.writing ??= this.store(timed).finally(() => (this.writing = undefined));
    return this.writing;
  }

  private async store(timed: boolean): Promise<boolean> {
    const at = this.feed.position();
    if (at.streamSequence === 0) return false;
    // Opened on the feed's current connection each time: a failed feed start replaces it.
    const bucket = await snapshotBucket(this.connection());
    // Asked every time, not remembered: another replica may have stored a newer one.
    const stored = await storedSnapshot(bucket);
    const now = this.o.clock.now();
    if (stored && stored.at.streamCreated === at.streamCreated) {
      if (stored.at.streamSequence >= at.streamSequence) return false;
      // A little under the interval, or timers drifting by a millisecond would skip every other round.
      if (timed && now - stored.writtenAt < this.o.intervalMs * 0.9) return false;
    }
    const startedAt = performance.now();
    // The set only ever grows between snapshots otherwise: nothing else reads it.
    const keepFrom = this.keepFrom();
    this.set.prune(keepFrom);
    const data = await encodeRevocationSnapshot(this.set.entries(keepFrom), at, now);
    await bucket.putBlob(snapshotObject(at, now), data);
    this.written++;
    this.o.logger.debug({ sequence: at.streamSequence, bytes: data.length, ms: Math.round(performance.now() - startedAt) }, "revocation snapshot stored");
    return true;
  }

  /** Entries held (expired ones not yet pruned included). */
  held(): number {
    const { tokens, sessions, users } = this.set.size();
    return tokens + sessions + users;
  }

  /** Entries that expired before this stay out of snapshots. */
  private keepFrom(): number {
    return this.o.clock.now() - this.o.clockSkewMs;
  }

  /** How far this writer has read the stream. */
  position(): SnapshotPosition {
    return this.feed.position();
  }

  private connection() {
    const nc = this.feed.connection();
    if (!nc) throw new Error("not connected to NATS yet");
    return nc;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort();
    await this.writing?.catch(() => undefined);
    await this.feed.close();
  }
}
