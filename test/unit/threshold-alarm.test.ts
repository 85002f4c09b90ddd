import { describe, expect, it } from 'vitest';
import { ThresholdAlarm } from '../../src/authority/threshold-alarm.js';
import { ManualClock } from '../../src/shared/clock.js';

const SEC = 1000;

function alarm(threshold: number, windowMs: number) {
  const clock = new ManualClock(0);
  const fired: { at: number; count: number }[] = [];
  const a = new ThresholdAlarm({ threshold, windowMs, clock, onAlarm: (count) => fired.push({ at: clock.now(), count }) });
  return { a, clock, fired };
}

describe('ThresholdAlarm', () => {
  it('fires when the count within the window exceeds the threshold, with that count', () => {
    const { a, clock, fired } = alarm(3, 10 * SEC);
    a.add(2);
    clock.advance(9 * SEC);
    a.add();
    expect(fired).toEqual([]); // 3 is not more than 3
    clock.advance(SEC + 500); // the first two are out of the window now
    a.add();
    expect(fired).toEqual([]);
    clock.advance(500);
    a.add(2);
    expect(fired).toEqual([{ at: 11 * SEC, count: 4 }]);
  });

  it('stays quiet for a window after firing, then fires again', () => {
    const { a, clock, fired } = alarm(2, 10 * SEC);
    a.add(3);
    for (let i = 0; i < 9; i++) {
      clock.advance(SEC);
      a.add(5);
    }
    expect(fired).toEqual([{ at: 0, count: 3 }]);
    clock.advance(SEC);
    a.add();
    expect(fired).toEqual([{ at: 0, count: 3 }, { at: 10 * SEC, count: 46 }]);
  });

  it('a threshold of 0 is off', () => {
    const { a, fired } = alarm(0, 10 * SEC);
    a.add(1000);
    expect(fired).toEqual([]);
  });
});
