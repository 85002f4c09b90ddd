import { DeliverPolicy, jetstream, jetstreamManager, type Consumer, type ConsumerMessages, type JetStreamManager, type StreamInfo } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { systemClock, type Clock } from "../shared/clock.js";
import { silentLogger, type Logger } from "../shared/logger.js";
import type { FeedSink, RevocationFeed } from "../verifier/revocation-feed.js";
import { decodeStreamMessage } from "./event-codec.js";
import { connectNats } from "./nats-connection.js";
import { applySnapshotEntries, readSnapshotPosition, type SnapshotPosition } from "./revocation-snapshot.js";
import { snapshotBucket } from "./snapshot-bucket.js";
import { SNAPSHOTS, STREAMS } from "./subjects.js";

export interface NatsRevocationFeedOptions {
  /** NATS server URL(s); several for a cluster. */
  servers: string | string[];
  logger?: Logger;
  clock?: Clock;
  /** How often the feed proves JetStream answers while no event arrives (default 2 s). */
  probeIntervalMs?: number;
  /** Start from the stream's compacted snapshot when one matches the stream (default true); false replays every message. */
  snapshots?: boolean;
}

/**
 * The snapshot a feed started from (`feed.snapshot`; undefined when it replayed
 * the whole stream).
 *
 * @example
 * ```ts
 * await verifier.ready();
 * if (feed.snapshot) logger.info(feed.snapshot, "started from the revocation snapshot");
 * ```
 */
export interface LoadedSnapshot {
  streamSequence: number;
  entries: number;
  /** Fetching and applying it took this long. */
  ms: number;
}

/**
 * Reads the revocation stream with an ordered consumer from its first message:
 * the stream holds exactly the live revocations, so replaying it rebuilds the
 * whole set, and the consumer then follows new events. When the authority has
 * stored a snapshot of the set for this stream, the feed applies it and reads
 * only the messages after it: one object instead of every message, which is
 * what keeps a cold start with 100k revocations well under two seconds. The ordered consumer
 * resumes after the last sequence it delivered when NATS comes back.
 *
 * Health is what lets a verifier fail closed: the feed is "connected" only
 * while the NATS connection is up and a periodic round trip to JetStream finds
 * the consumer, so a silent stream is told apart from a dead one. An ordered
 * consumer is a single-replica consumer on one server of a NATS cluster: when
 * that server dies, nats.js neither notices nor replaces it (it waits for the
 * server to come back), so a failed probe starts a new consumer after the last
 * sequence delivered, which the cluster places on a live server.
 *
 * @example
 * ```ts
 * const feed = new NatsRevocationFeed({ servers: "nats://127.0.0.1:4222" });
 * const verifier = createVerifier({ jwksUrl, issuer, audience, feed });
 * await verifier.ready();
 * ```
 */
export class NatsRevocationFeed implements RevocationFeed {
  private nc: NatsConnection | undefined;
  private jsm: JetStreamManager | undefined;
  private consumer: Consumer | undefined;
  private messages: ConsumerMessages | undefined;
  private sink: FeedSink | undefined;
  /** Stream sequence of the last message delivered to the sink. */
  private lastSeq = 0;
  /** Resolves the replay of start() once a message reaches the stream's end at start. */
  private onDelivered: (m: { seq: number; pending: number }) => void = () => {};
  private probing = false;
  private resubscribing = false;
  /** The NATS connection is up (a consumer can only be replaced then). */
  private natsUp = true;
  private connected = false;
  private since: number;
  private probe: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** The stream's creation time (ms) as read at start: identifies the stream a position belongs to. */
  private streamCreated = 0;
  /** Messages delivered since start (for status and tests). */
  delivered = 0;
  /** The snapshot this feed started from, if one was usable. */
  snapshot: LoadedSnapshot | undefined;

  constructor(private readonly options: NatsRevocationFeedOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.since = this.clock.now();
  }

  /** Resolves once every event published before the call has been delivered. */
  async start(sink: FeedSink): Promise<void> {
    const nc = await this.connectWithRetry();
    if (this.closed) {
      // Closed while connecting: nobody would ever close this connection.
      await nc.close().catch(() => undefined);
      throw new Error("revocation feed closed");
    }
    this.nc = nc;
    this.setConnected(true);
    void this.watchConnection(nc);

    this.sink = sink;
    // Every attempt starts afresh: a position kept from a failed attempt may
    // belong to a stream that has since been deleted and created again.
    this.lastSeq = 0;
    this.snapshot = undefined;
    let replayed!: () => void;
    const done = new Promise<void>((resolve) => (replayed = resolve));
    try {
      this.jsm = await jetstreamManager(nc, { timeout: 2000 });
      // Fetched before the stream's state is read, so a usable snapshot never
      // looks newer than the stream.
      const snapshot = this.options.snapshots === false ? undefined : await this.fetchSnapshot();
      const info = await this.streamInfo();
      const { state } = info;
      this.streamCreated = Date.parse(info.created);
      if (snapshot) this.applySnapshot(snapshot, info, sink);
      // Not last_seq === 0: once max_age has removed every message (a quiet period
      // longer than a token's life), last_seq stays where it was and nothing
      // would ever be delivered to reach it.
      if (state.messages === 0 || state.last_seq <= this.lastSeq) replayed();
      // pending === 0: the last message held was delivered, even if the one at
      // last_seq has been removed (deleted, or aged out during the replay).
      this.onDelivered = (m) => {
        if (m.seq >= state.last_seq || m.pending === 0) replayed();
      };
      await this.follow();
    } catch (e) {
      // The verifier calls start() again: this attempt's connection must not
      // stay open (reconnecting forever) beside the next one's.
      this.nc = undefined;
      this.jsm = undefined;
      this.setConnected(false);
      await nc.close().catch(() => undefined);
      throw e;
    }

    this.probe = setInterval(() => void this.checkJetStream(), this.options.probeIntervalMs ?? 2000);
    this.probe.unref();
    return done;
  }

  /** Consumes the stream from the message after the last one delivered (from the start, the first time). */
  private async follow(): Promise<void> {
    const consumer = await jetstream(this.nc!, { timeout: 2000 }).consumers.get(
      STREAMS.revocations.name,
      this.lastSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.lastSeq + 1 } : { deliver_policy: DeliverPolicy.All },
    );
    const messages = await consumer.consume({ max_messages: 1024, idle_heartbeat: 1000 });
    this.consumer = consumer;
    this.messages = messages;
    void this.watchConsumer(messages);
    void (async () => {
      for await (const m of messages) {
        // A replacement consumer may overlap the one it replaced by a message.
        if (m.seq <= this.lastSeq) continue;
        this.lastSeq = m.seq;
        this.delivered++;
        try {
          const decoded = decodeStreamMessage(m.subject, m.data);
          if (decoded.type === "revocation") this.sink!.apply(decoded.entry);
          else if (decoded.type === "keys") this.sink!.keysChanged();
        } catch (e) {
          this.logger.warn({ subject: m.subject, seq: m.seq, err: (e as Error).message }, "undecodable event skipped");
        }
        this.onDelivered({ seq: m.seq, pending: m.info.pending });
      }
    })();
  }

  /**
   * Replaces a consumer that JetStream can no longer find or reach, retrying
   * every half second (a cluster needs a few seconds to elect a new stream
   * leader) until it succeeds or the feed is closed.
   */
  private async resubscribe(): Promise<void> {
    if (this.resubscribing) return;
    this.resubscribing = true;
    const old = this.messages;
    try {
      for (let attempt = 0; !this.closed && this.nc && !this.nc.isClosed(); attempt++) {
        if (this.natsUp) {
          try {
            await this.follow();
            old?.stop();
            this.logger.info({ after: this.lastSeq }, "revocation consumer replaced");
            return;
          } catch (e) {
            if (attempt === 0) this.logger.warn({ err: (e as Error).message }, "revocation consumer could not be replaced yet; retrying");
          }
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      this.resubscribing = false;
    }
  }

  /** The last stream message delivered to the sink, and which life of the stream it belongs to. */
  position(): SnapshotPosition {
    return { streamSequence: this.lastSeq, streamCreated: this.streamCreated };
  }

  /** The feed's NATS connection, once connected (a snapshot writer shares it). */
  connection(): NatsConnection | undefined {
    return this.nc;
  }

  /** The stored snapshot, or undefined when there is none or it cannot be read (the whole stream is replayed then). */
  private async fetchSnapshot(): Promise<{ data: Uint8Array; startedAt: number } | undefined> {
    const startedAt = performance.now();
    try {
      const store = await snapshotBucket(this.nc!);
      const data = await store.getBlob(SNAPSHOTS.object);
      return data ? { data, startedAt } : undefined;
    } catch (e) {
      this.logger.info({ err: (e as Error).message }, "no revocation snapshot; replaying the whole stream");
      return undefined;
    }
  }

  private applySnapshot(snapshot: { data: Uint8Array; startedAt: number }, stream: StreamInfo, sink: FeedSink): void {
    try {
      const at = readSnapshotPosition(snapshot.data);
      // Another life of the stream (deleted and created again) numbers its
      // messages afresh: that snapshot's sequence says nothing about this one.
      if (at.streamCreated !== this.streamCreated || at.streamSequence > stream.state.last_seq) {
        this.logger.warn({ snapshotSequence: at.streamSequence, lastSequence: stream.state.last_seq }, "revocation snapshot belongs to another stream; replaying the whole stream");
        return;
      }
      const entries = applySnapshotEntries(snapshot.data, (entry) => sink.apply(entry));
      // Messages between the snapshot and the stream's first message aged out:
      // they covered tokens that have expired, so nothing is missed.
      this.lastSeq = at.streamSequence;
      this.snapshot = { streamSequence: at.streamSequence, entries, ms: Math.round(performance.now() - snapshot.startedAt) };
      this.logger.info(this.snapshot, "revocation snapshot loaded");
    } catch (e) {
      // What was applied are real revocations; the replay applies them again.
      this.logger.warn({ err: (e as Error).message }, "revocation snapshot unreadable; replaying the whole stream");
    }
  }

  health(): { connected: boolean; since: number } {
    return { connected: this.connected, since: this.since };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.probe);
    this.messages?.stop();
    await this.nc?.close().catch(() => undefined);
  }

  private async connectWithRetry(): Promise<NatsConnection> {
    for (;;) {
      try {
        return await connectNats(this.options.servers, "session-authority verifier");
      } catch (e) {
        if (this.closed) throw e;
        this.logger.warn({ err: (e as Error).message }, "NATS unreachable; retrying");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private async watchConnection(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "staleConnection") {
        this.natsUp = false;
        this.setConnected(false);
      } else if (s.type === "reconnect") {
        this.natsUp = true;
        void this.checkJetStream();
      }
    }
  }

  private async watchConsumer(messages: ConsumerMessages): Promise<void> {
    for await (const s of messages.status()) {
      if (s.type === "heartbeats_missed") {
        this.setConnected(false);
        // The consumer's server may be gone: find out now, not at the next probe.
        void this.checkJetStream();
      } else if (s.type === "ordered_consumer_recreated") {
        // After recreating the consumer (e.g. when NATS restarted) nats.js
        // 3.4 pulls with the outstanding count of the old one: a batch of 0,
        // which the server serves as 1. One event gets through, the next ones
        // only after two missed heartbeats re-pull. Resetting the pull asks
        // for a full batch at once.
        (messages as Partial<{ resetPending(): Promise<boolean> }>).resetPending?.().catch(() => undefined);
        void this.checkJetStream();
      }
    }
  }

  /** The stream's info; waits for the authority to create the stream if it has not yet. */
  private async streamInfo(): Promise<StreamInfo> {
    for (;;) {
      try {
        return await this.jsm!.streams.info(STREAMS.revocations.name);
      } catch (e) {
        if (this.closed) throw e;
        this.logger.warn({ err: (e as Error).message }, "revocation stream not available yet; retrying");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /**
   * A round trip to the server holding the consumer: the only proof that
   * events could be arriving. Asked through the manager, not the consumer,
   * because the consumer's own info() replaces the state its pulls use.
   */
  private async checkJetStream(): Promise<void> {
    const nc = this.nc;
    if (!nc || nc.isClosed() || !this.jsm || !this.consumer || this.probing) return;
    this.probing = true;
    try {
      const { name } = await this.consumer.info(true);
      await this.jsm.consumers.info(STREAMS.revocations.name, name);
      this.setConnected(true);
    } catch {
      this.setConnected(false);
      await this.resubscribe();
    } finally {
      this.probing = false;
    }
  }

  private setConnected(connected: boolean): void {
    if (connected === this.connected) return;
    this.connected = connected;
    this.since = this.clock.now();
    this.logger[connected ? "info" : "warn"](connected ? "revocation feed connected" : "revocation feed lost");
  }
}
