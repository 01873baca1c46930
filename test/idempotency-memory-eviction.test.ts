/**
 * The keys of a module without data are kept in memory, at most `limit` of them, the oldest
 * dropped first: but never a key whose request still runs. Dropped, its key was free, and a retry
 * with it (keel's own, after a TIMEOUT) ran the operation a second time beside the first.
 */
import { describe, expect, it } from 'vitest';
import { MemoryIdempotencyStore } from '../kernel/idempotency.js';

describe('MemoryIdempotencyStore over its limit', () => {
  it('drops the oldest finished key, never one whose request still runs', async () => {
    const store = new MemoryIdempotencyStore(2);
    const later = Date.now() + 60_000;
    const running = await store.claim('charge', 'running', 'h', later);
    expect(running.kind).toBe('run');
    const finished = await store.claim('charge', 'finished', 'h', later);
    if (finished.kind !== 'run') throw new Error(`claimed ${finished.kind}`);
    await store.complete('charge', 'finished', finished.token, { output: { ok: true } });
    // A third key: over the limit, the oldest finished key goes, not the older running one.
    expect((await store.claim('charge', 'third', 'h', later)).kind).toBe('run');
    expect(await store.claim('charge', 'running', 'h', later)).toEqual({ kind: 'in-use' });
    expect((await store.claim('charge', 'finished', 'h', later)).kind).toBe('run');
  });
});
