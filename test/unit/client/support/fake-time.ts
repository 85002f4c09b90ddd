import type { Clock } from "../../../../src/shared/clock.js";
import type { Timers } from "../../../../src/client/timers.js";

/** Lets real I/O and promise chains (BroadcastChannel messages, in-process transports) run. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Polls `predicate` in real time (short), for things that travel over real channels. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A clock and timers that move only when told to; `advance` runs due timers in order, letting async work settle between them. */
export class FakeTime implements Clock, Timers {
  private current: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = Date.UTC(2026, 0, 1, 12)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, delayMs: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.current + Math.max(0, delayMs), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Due times of the pending timers, earliest first. */
  pendingAt(): number[] {
    return [...this.timers.values()].map((t) => t.at).sort((a, b) => a - b);
  }

  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await settle();
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) {
        if (entry[1].at <= target && (!next || entry[1].at < next[1].at)) next = entry;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.current = Math.max(this.current, next[1].at);
      next[1].fn();
    }
    this.current = target;
    await settle();
  }

  /** Moves time without running timers, as a machine waking from sleep sees it. */
  jump(ms: number): void {
    this.current += ms;
  }

  /** Moves to an absolute time. */
  advanceTo(at: number): Promise<void> {
    return this.advance(Math.max(0, at - this.current));
  }
}
