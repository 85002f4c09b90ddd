import type { SessionEndFeed, SessionEndListener, SessionEndNotice } from "./session-end-feed.js";

/**
 * The in-process bus: what is published here reaches the listeners of this
 * process only. It is the whole feed without NATS, and the fan-out inside
 * NatsSessionEndFeed.
 */
export class LocalSessionEndFeed implements SessionEndFeed {
  private readonly listeners = new Map<string, Set<SessionEndListener>>();

  publish(notice: SessionEndNotice): void {
    const set = this.listeners.get(notice.userId);
    if (!set) return;
    // A copy: a listener typically unsubscribes itself when its session ended.
    for (const listener of [...set]) listener(notice);
  }

  subscribe(userId: string, listener: SessionEndListener): () => void {
    let set = this.listeners.get(userId);
    if (!set) this.listeners.set(userId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(userId) === set) this.listeners.delete(userId);
    };
  }

  /** Users with at least one listener (for tests of the cleanup). */
  get users(): number {
    return this.listeners.size;
  }

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
