import { describe, expect, it } from 'vitest';
import { defineContract } from 'keel';

describe('packaging - self reference', () => {
  it('resolves keel to the source entry in development', () => {
    expect(typeof defineContract).toBe('function');
  });
});
