/** The bound on repeated warning lines: one per interval, with how many were left out; per key, within a bounded number of keys. */
import { describe, expect, it } from 'vitest';
import { KeyedLogThrottle, LogThrottle } from 'keel/transport';

describe('kernel - log throttles', () => {
  it('kernel log throttle - lets the first through, leaves out the rest of the interval, and reports how many with the next line', () => {
    const throttle = new LogThrottle(10_000);
    expect(throttle.take(0)).toBe(0);
    expect([throttle.take(1), throttle.take(9_999)]).toEqual([-1, -1]);
    expect(throttle.take(10_000)).toBe(2);
    expect(throttle.take(10_001)).toBe(-1);
  });

  it('kernel log throttle - one key busy does not hide another key\'s first line', () => {
    const throttle = new KeyedLogThrottle();
    expect(throttle.take('publish a', 0)).toBe(0);
    expect(throttle.take('publish a', 1)).toBe(-1);
    expect(throttle.take('publish b', 2)).toBe(0);
  });

  it('kernel log throttle - 64 keys held: a new one shares the rest\'s throttle; once the 64 have gone quiet past their interval, a new key gets its own again', () => {
    const throttle = new KeyedLogThrottle();
    for (let index = 0; index < 64; index += 1) expect(throttle.take(`reply ${index}`, 0)).toBe(0);
    expect(throttle.take('late one', 1)).toBe(0); // the rest's first line
    expect(throttle.take('late two', 2)).toBe(-1); // the rest's throttle, busy: left out
    // Past the interval, with nothing left out, the 64 are forgotten: a new key is throttled apart again.
    expect(throttle.take('after 1', 10_001)).toBe(0);
    expect(throttle.take('after 2', 10_002)).toBe(0);
    expect(throttle.take('after 1', 10_003)).toBe(-1);
  });

  it('kernel log throttle - 64 keys each refused twice are still forgotten past their interval, and the counts they left out come with the shared line', () => {
    const throttle = new KeyedLogThrottle();
    for (let index = 0; index < 64; index += 1) {
      expect(throttle.take(`a ${index}`, 0)).toBe(0);
      expect(throttle.take(`a ${index}`, 1)).toBe(-1);
    }
    // Past their interval the 64 are forgotten: 64 new keys each get their own first line.
    for (let index = 0; index < 64; index += 1) expect(throttle.take(`b ${index}`, 10_001)).toBe(0);
    // All 64 slots busy: a 65th key shares the rest's throttle, whose first line reports the 64 the a's left out.
    expect(throttle.take('c', 10_002)).toBe(64);
  });
});
