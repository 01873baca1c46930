/**
 * `newCorrelationId` writes its counter in base 36 from a table of digit pairs (kernel/context.ts):
 * the ids must be exactly the random prefix and the counter's `toString(36)`, one apart, across
 * the points where the table's upper part changes.
 */
import { describe, expect, it } from 'vitest';
import { newCorrelationId } from '../kernel/context.js';

describe('newCorrelationId', () => {
  it('is the prefix and the next counter value in base 36, as toString(36) writes it', () => {
    const first = newCorrelationId();
    const prefix = first.slice(0, first.indexOf('-') + 1);
    expect(prefix).toMatch(/^[0-9a-f]{16}-$/);
    let counter = Number.parseInt(first.slice(prefix.length), 36);
    for (let index = 0; index < 50_000; index += 1) {
      const id = newCorrelationId();
      counter += 1;
      expect(id).toBe(`${prefix}${counter.toString(36)}`);
    }
  });
});
