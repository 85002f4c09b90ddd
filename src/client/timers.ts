import type { Clock } from "../shared/clock.js";

/**
 * Where the client schedules its work. Injected so tests drive time by hand; the
 * default is the platform's `setTimeout`/`clearTimeout`.
 *
 * @example
 * ```ts
 * const timers: Timers = { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as number) };
 * ```
 */
export interface Timers {
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The platform's timers, looked up when called (nothing touched at import time). */
export const systemTimers: Timers = {
  setTimeout: (callback, delayMs) => globalThis.setTimeout(callback, delayMs),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

// setTimeout fires at once for delays above 2^31-1 ms (~24.8 days); sessions live longer.
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * One pending action at a point in time, re-armable. Long waits are split so a
 * 30-day deadline does not fire immediately.
 */
export class Alarm {
  private handle: unknown;
  private armed = false;

  constructor(
    private readonly clock: Clock,
    private readonly timers: Timers,
  ) {}

  /** Runs `action` at `at` (local epoch ms), replacing whatever was set before. */
  set(at: number, action: () => void): void {
    this.cancel();
    this.armed = true;
    const wait = () => {
      const delay = Math.max(0, at - this.clock.now());
      this.handle = this.timers.setTimeout(() => {
        // A split wait (or a timer that fired a hair early against the clock) waits on.
        if (at > this.clock.now()) return wait();
        this.armed = false;
        this.handle = undefined;
        action();
      }, Math.min(delay, MAX_DELAY_MS));
    };
    wait();
  }

  cancel(): void {
    if (this.handle !== undefined) this.timers.clearTimeout(this.handle);
    this.handle = undefined;
    this.armed = false;
  }

  get pending(): boolean {
    return this.armed;
  }
}

/** Resolves after `ms` on the injected timers, or rejects with the signal's reason when it aborts first. */
export function sleep(timers: Timers, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      timers.clearTimeout(handle);
      reject(signal!.reason);
    };
    const handle = timers.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
