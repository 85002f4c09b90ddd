import { setTimeout as sleep } from "node:timers/promises";

export interface RetryOptions {
  /** Stops the retries, and stops waiting for an attempt in progress: the returned promise rejects with the signal's reason. */
  signal: AbortSignal;
  /** Called with each failure before waiting to try again. */
  onFailure: (error: unknown, attempt: number) => void;
  firstDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * Runs `task` until it succeeds, waiting twice as long after each failure up to
 * a ceiling. The waits keep the process alive: someone is waiting for this.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * await retryUntilDone(() => jwks.refresh(), { signal: stop.signal, onFailure: (e) => logger.warn({ err: e }, "retrying") });
 * ```
 */
export async function retryUntilDone<T>(task: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { signal, onFailure, firstDelayMs = 250, maxDelayMs = 10_000 } = options;
  // An attempt may never settle (a feed stuck replaying); closing must not wait for it.
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => {});
  for (let attempt = 1; ; attempt++) {
    signal.throwIfAborted();
    try {
      return await Promise.race([task(), aborted]);
    } catch (e) {
      signal.throwIfAborted();
      onFailure(e, attempt);
    }
    await sleep(Math.min(firstDelayMs * 2 ** (attempt - 1), maxDelayMs), undefined, { signal });
  }
}
