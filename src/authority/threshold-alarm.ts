import type { Clock } from "../shared/clock.js";

export interface ThresholdAlarmOptions {
  /** More than this many within `windowMs` raises the alarm; 0 turns it off. */
  threshold: number;
  windowMs: number;
  clock: Clock;
  /** Called with the count in the window when it first exceeds the threshold; then quiet for a window. */
  onAlarm(count: number): void;
}

/** Buckets per window: the window slides in steps of a twentieth of itself. */
const BUCKETS = 20;

/**
 * Counts occurrences in a sliding window and raises an alarm when there are
 * more than a threshold, at most once per window. Memory is a fixed ring of
 * buckets whatever the rate, so a flood of occurrences costs nothing more; the
 * price is that the window's edge is exact only to a twentieth of its length.
 * Per process: with several replicas each counts what it saw.
 */
export class ThresholdAlarm {
  private readonly width: number;
  private readonly counts = new Array<number>(BUCKETS).fill(0);
  private readonly ids = new Array<number>(BUCKETS).fill(-1);
  private quietUntil = Number.NEGATIVE_INFINITY;

  constructor(private readonly o: ThresholdAlarmOptions) {
    this.width = Math.max(1, o.windowMs / BUCKETS);
  }

  add(n = 1): void {
    if (this.o.threshold <= 0 || n <= 0) return;
    const now = this.o.clock.now();
    const id = Math.floor(now / this.width);
    const slot = id % BUCKETS;
    if (this.ids[slot] !== id) {
      this.ids[slot] = id;
      this.counts[slot] = 0;
    }
    this.counts[slot]! += n;
    let total = 0;
    for (let i = 0; i < BUCKETS; i++) if (this.ids[i]! > id - BUCKETS) total += this.counts[i]!;
    if (total > this.o.threshold && now >= this.quietUntil) {
      this.quietUntil = now + this.o.windowMs;
      this.o.onAlarm(total);
    }
  }
}
