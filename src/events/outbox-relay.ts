import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { secureRandomBytes } from "../shared/random.js";
import type { OutboxBatch, SessionStore } from "../store/session-store.js";
import { encodeKeyEvent, encodeOutboxEvent, encodeSecurityEvent, type EncodedEvent } from "./event-codec.js";
import { connectNats } from "./nats-connection.js";
import type { SecurityEventFacts } from "./security-event-detail.js";
import { ensureStreams } from "./streams.js";

export interface OutboxRelayOptions {
  store: SessionStore;
  /** NATS server URL(s), comma-separated or a list. */
  servers: string | string[];
  /** The revocation stream's max age: longest access-token life plus skew. */
  revocationMaxAgeMs: number;
  logger: Logger;
  clock: Clock;
  /** How often the outbox is polled when nothing kicked the relay (other replicas' leftovers). */
  pollIntervalMs?: number;
  streamReplicas?: number;
  /** How often to look for outbox entries whose mark was lost (default 30 s). */
  sweepIntervalMs?: number;
}

/**
 * Publishes the store's outbox to JetStream until each event is acknowledged,
 * then removes it from the outbox. Publishing is idempotent by event id, so a
 * crash between publish and removal only causes a duplicate that JetStream
 * drops. While NATS is down events wait in the store; nothing acknowledged to a
 * caller is lost. Every replica runs a relay; they may publish the same event,
 * which deduplication absorbs.
 */
export class OutboxRelay {
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private running = false;
  private wake: (() => void) | undefined;
  private kicked = false;
  private loop: Promise<void> | undefined;
  private streamsReady = false;
  private sweeper: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  /** Immediate publishes not yet acknowledged by JetStream. */
  private readonly inflight = new Set<Promise<void>>();
  /** Ids of the events those are publishing: the loop leaves them alone rather than send each twice. */
  private readonly inflightIds = new Set<string>();
  /** Events published since start, for tests and metrics. */
  published = 0;

  constructor(private readonly o: OutboxRelayOptions) {}

  /** Starts in the background: the authority serves even while NATS is unreachable. */
  start(): void {
    this.running = true;
    this.loop = this.run();
    // The fast path: events this process records are published the moment their
    // script returns; the loop below is for everything else (NATS was down,
    // another replica died, a publish failed).
    this.unwatch = this.o.store.watchOutbox((batch) => {
      const publishing = this.publishNow(batch);
      this.inflight.add(publishing);
      void publishing.finally(() => this.inflight.delete(publishing));
    });
    // The repair scan is slow on a big keyspace, so it runs beside the publishing
    // loop, never in it: at start (a crash may have left entries) and then rarely.
    const sweep = () =>
      void this.o.store.sweepOutbox().then(
        () => this.kick(),
        (e) => this.o.logger.warn({ err: (e as Error).message }, "outbox sweep failed"),
      );
    sweep();
    this.sweeper = setInterval(sweep, this.o.sweepIntervalMs ?? 30_000);
    this.sweeper.unref();
  }

  /**
   * Resolves once the events recorded so far by this process have been
   * acknowledged by JetStream, or after `maxWaitMs`, whichever is first. Awaited
   * before a revocation is acknowledged, so a caller that sees the answer knows
   * verifiers are already being told; the bound keeps NATS from becoming a
   * dependency of Revoke (the outbox still delivers what missed it).
   */
  async settled(maxWaitMs = 200): Promise<void> {
    if (this.inflight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inflight]),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, maxWaitMs))),
    ]);
    clearTimeout(timer);
  }

  /** Publishes pending events now instead of at the next poll. */
  private kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  /** Announces a new signing key; best effort, verifiers also refetch on unknown kids. */
  async publishKeyAdded(kid: string): Promise<void> {
    const js = this.js;
    if (!js) return;
    const event = encodeKeyEvent(secureRandomBytes(12).toString("base64url"), kid, false, this.o.clock.now());
    await this.publish(js, event).catch((e) => this.o.logger.warn({ err: (e as Error).message, kid }, "key change not published"));
  }

  /**
   * Publishes an alert about this replica (mass logout, store errors) directly:
   * it belongs to no user's outbox, and store errors would keep it from one.
   * Best effort: while NATS is away it is only logged and counted.
   */
  async publishSecurityEvent(event: SecurityEventFacts): Promise<void> {
    const js = this.js;
    if (!js) return;
    const encoded = encodeSecurityEvent(secureRandomBytes(12).toString("base64url"), event);
    await this.publish(js, encoded).catch((e) => this.o.logger.warn({ err: (e as Error).message, securityEvent: event.type }, "security event not published"));
  }

  async stop(): Promise<void> {
    this.unwatch?.();
    clearInterval(this.sweeper);
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.nc?.drain().catch(() => undefined);
  }

  private async run(): Promise<void> {
    const { logger } = this.o;
    while (this.running && !this.nc) {
      try {
        this.nc = await connectNats(this.o.servers, "session-authority relay");
        this.js = jetstream(this.nc, { timeout: 2000 });
      } catch (e) {
        logger.warn({ err: (e as Error).message }, "NATS unreachable; revocations wait in the outbox");
        await this.sleep(1000);
      }
    }
    while (this.running) {
      try {
        if (!this.streamsReady) {
          await ensureStreams(this.nc!, this.o.revocationMaxAgeMs, this.o.streamReplicas);
          this.streamsReady = true;
        }
        const sent = await this.drainOnce();
        if (sent > 0) continue;
      } catch (e) {
        logger.warn({ err: (e as Error).message }, "outbox relay: publish failed; retrying");
        await this.sleep(250);
        continue;
      }
      await this.sleep(this.o.pollIntervalMs ?? 500);
    }
  }

  private async drainOnce(): Promise<number> {
    this.kicked = false;
    const batch = await this.o.store.readOutbox(256);
    const events = batch.events.filter((e) => !this.inflightIds.has(e.id));
    if (events.length === 0) return 0;
    return this.publishBatch(this.js!, { events, ack: batch.ack });
  }

  private async publishNow(batch: OutboxBatch): Promise<void> {
    const js = this.js;
    if (!js || !this.streamsReady) return this.kick();
    for (const e of batch.events) this.inflightIds.add(e.id);
    let failed = false;
    try {
      await this.publishBatch(js, batch);
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, "outbox relay: immediate publish failed; the relay retries");
      failed = true;
    } finally {
      for (const e of batch.events) this.inflightIds.delete(e.id);
    }
    // Only now: the loop must see the failed events as its own to retry.
    if (failed) this.kick();
  }

  private async publishBatch(js: JetStreamClient, batch: OutboxBatch): Promise<number> {
    const done: string[] = [];
    try {
      // Published concurrently; an event leaves the outbox only after JetStream acked it.
      await Promise.all(batch.events.map(async (event) => {
        await this.publish(js, encodeOutboxEvent(event));
        done.push(event.id);
      }));
    } finally {
      if (done.length) await batch.ack(done);
      this.published += done.length;
    }
    return done.length;
  }

  private async publish(js: JetStreamClient, event: EncodedEvent): Promise<void> {
    await js.publish(event.subject, event.data, { msgID: event.id, timeout: 2000 });
  }

  private sleep(ms: number): Promise<void> {
    if (this.kicked) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}
