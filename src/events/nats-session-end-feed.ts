import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "../shared/logger.js";
import { decodeSessionEnd } from "./event-codec.js";
import { LocalSessionEndFeed } from "./local-session-end-feed.js";
import { connectNats } from "./nats-connection.js";
import type { SessionEndFeed, SessionEndListener } from "./session-end-feed.js";
import { SUBJECTS } from "./subjects.js";

export interface NatsSessionEndFeedOptions {
  /** NATS server URL(s). */
  servers: string | string[];
  logger: Logger;
}

/**
 * Session ends as every replica's outbox relay publishes them: a core NATS
 * subscription on the session and user revocation subjects, so a revoke on one
 * replica reaches watchers on all of them within milliseconds. Live pushes need
 * no replay: a watcher checks its session in the store when it starts. Connects
 * in the background; nats.js resubscribes after a reconnect.
 */
export class NatsSessionEndFeed implements SessionEndFeed {
  private readonly local = new LocalSessionEndFeed();
  private nc: NatsConnection | undefined;
  private closed = false;
  private readonly started: Promise<void>;

  constructor(private readonly o: NatsSessionEndFeedOptions) {
    this.started = this.start();
    this.started.catch(() => undefined);
  }

  subscribe(userId: string, listener: SessionEndListener): () => void {
    return this.local.subscribe(userId, listener);
  }

  ready(): Promise<void> {
    return this.started;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.local.close();
    await this.nc?.drain().catch(() => undefined);
  }

  private async start(): Promise<void> {
    while (!this.closed) {
      try {
        this.nc = await connectNats(this.o.servers, "session-authority session watch");
        break;
      } catch (e) {
        this.o.logger.warn({ err: (e as Error).message }, "NATS unreachable; live logout waits for it");
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    const nc = this.nc;
    if (!nc) return;
    if (this.closed) return void (await nc.close());
    for (const subject of [SUBJECTS.revokedSession, SUBJECTS.revokedUser]) void this.listen(nc.subscribe(subject));
    // The subscriptions are in place on the server once a round trip returns.
    await nc.flush();
  }

  private async listen(sub: Subscription): Promise<void> {
    for await (const m of sub) {
      try {
        const notice = decodeSessionEnd(m.subject, m.data);
        if (notice) this.local.publish(notice);
      } catch (e) {
        this.o.logger.warn({ subject: m.subject, err: (e as Error).message }, "undecodable revocation event skipped");
      }
    }
  }
}
