import { DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { systemClock, type Clock } from "../shared/clock.js";
import { silentLogger, type Logger } from "../shared/logger.js";
import type { FeedSink, RevocationFeed } from "../verifier/revocation-feed.js";
import { decodeStreamMessage } from "./event-codec.js";
import { connectNats } from "./nats-connection.js";
import { STREAMS } from "./subjects.js";

export interface NatsRevocationFeedOptions {
  /** NATS server URL(s); several for a cluster. */
  servers: string | string[];
  logger?: Logger;
  clock?: Clock;
  /** How often the feed proves JetStream answers while no event arrives (default 2 s). */
  probeIntervalMs?: number;
}

/**
 * Reads the revocation stream with an ordered consumer from its first message:
 * the stream holds exactly the live revocations, so replaying it rebuilds the
 * whole set, and the consumer then follows new events. The ordered consumer
 * resumes after the last sequence it delivered when NATS comes back.
 *
 * Health is what lets a verifier fail closed: the feed is "connected" only
 * while the NATS connection is up and a periodic round trip to JetStream
 * succeeds, so a silent stream is told apart from a dead one.
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
  private messages: ConsumerMessages | undefined;
  private connected = false;
  private since: number;
  private probe: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** Messages delivered since start (for status and tests). */
  delivered = 0;

  constructor(private readonly options: NatsRevocationFeedOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.since = this.clock.now();
  }

  /** Resolves once every event published before the call has been delivered. */
  async start(sink: FeedSink): Promise<void> {
    const nc = await this.connectWithRetry();
    this.nc = nc;
    this.setConnected(true);
    void this.watchConnection(nc);

    let state: { messages: number; last_seq: number };
    try {
      this.jsm = await jetstreamManager(nc, { timeout: 2000 });
      state = await this.streamState();
      const consumer = await jetstream(nc, { timeout: 2000 }).consumers.get(STREAMS.revocations.name, { deliver_policy: DeliverPolicy.All });
      this.messages = await consumer.consume({ max_messages: 1024, idle_heartbeat: 1000 });
    } catch (e) {
      // The verifier calls start() again: this attempt's connection must not
      // stay open (reconnecting forever) beside the next one's.
      this.nc = undefined;
      this.jsm = undefined;
      this.setConnected(false);
      await nc.close().catch(() => undefined);
      throw e;
    }
    void this.watchConsumer(this.messages);

    let replayed!: () => void;
    const done = new Promise<void>((resolve) => (replayed = resolve));
    // Not last_seq === 0: once max_age has removed every message (a quiet period
    // longer than a token's life), last_seq stays where it was and nothing
    // would ever be delivered to reach it.
    if (state.messages === 0) replayed();
    void (async () => {
      for await (const m of this.messages!) {
        this.delivered++;
        try {
          const decoded = decodeStreamMessage(m.subject, m.data);
          if (decoded.type === "revocation") sink.apply(decoded.entry);
          else if (decoded.type === "keys") sink.keysChanged();
        } catch (e) {
          this.logger.warn({ subject: m.subject, seq: m.seq, err: (e as Error).message }, "undecodable event skipped");
        }
        // pending === 0: the last message held was delivered, even if the one at
        // last_seq has been removed (deleted, or aged out during the replay).
        if (m.seq >= state.last_seq || m.info.pending === 0) replayed();
      }
    })();

    this.probe = setInterval(() => void this.checkJetStream(), this.options.probeIntervalMs ?? 2000);
    this.probe.unref();
    return done;
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
      if (s.type === "disconnect" || s.type === "staleConnection") this.setConnected(false);
      else if (s.type === "reconnect") void this.checkJetStream();
    }
  }

  private async watchConsumer(messages: ConsumerMessages): Promise<void> {
    for await (const s of messages.status()) {
      if (s.type === "heartbeats_missed") {
        this.setConnected(false);
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

  /** The stream's state; waits for the authority to create the stream if it has not yet. */
  private async streamState(): Promise<{ messages: number; last_seq: number }> {
    for (;;) {
      try {
        return (await this.jsm!.streams.info(STREAMS.revocations.name)).state;
      } catch (e) {
        if (this.closed) throw e;
        this.logger.warn({ err: (e as Error).message }, "revocation stream not available yet; retrying");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** A round trip to JetStream: the only proof that events could be arriving. */
  private async checkJetStream(): Promise<void> {
    const nc = this.nc;
    if (!nc || nc.isClosed() || !this.jsm) return;
    try {
      await this.jsm.streams.info(STREAMS.revocations.name);
      this.setConnected(true);
    } catch {
      this.setConnected(false);
    }
  }

  private setConnected(connected: boolean): void {
    if (connected === this.connected) return;
    this.connected = connected;
    this.since = this.clock.now();
    this.logger[connected ? "info" : "warn"](connected ? "revocation feed connected" : "revocation feed lost");
  }
}
