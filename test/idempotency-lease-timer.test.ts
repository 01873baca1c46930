/**
 * A keyed run's lease (served-keyed.ts) first renews its claim half a grace before the claim's
 * expiry, the deadline plus the grace. A deadline as far off as timeoutMs allows (2^31 - 1 ms)
 * put that first renewal past the longest delay a Node timer holds: the timer fired at once
 * (with a TimeoutOverflowWarning), and the renewal cut the claim's expiry from the deadline plus
 * 5 s to now plus 5 s.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { silentLogger } from 'keel';
import type { CallContext } from '../kernel/context.js';
import type { Claim, IdempotencyStore, StoredOutcome } from '../kernel/idempotency.js';
import { MAX_TIMEOUT_MS } from '../kernel/timeouts.js';
import { keyedRun } from '../kernel/served-keyed.js';
import { RemoteFailure } from '../kernel/transport.js';

class RecordingStore implements IdempotencyStore {
  readonly extended: number[] = [];
  async claim(): Promise<Claim> {
    return { kind: 'run', token: '1' };
  }
  async complete(_operation: string, _key: string, _token: string, _outcome: StoredOutcome): Promise<void> {}
  async abandon(): Promise<void> {}
  async extend(_operation: string, _key: string, _token: string, expiresAt: number): Promise<boolean> {
    this.extended.push(expiresAt);
    return true;
  }
  close(): void {}
  readonly closed = false;
}

/** A keyed run of operation `tally.slow` whose handler is `execute`, answered `{}` when it says so. */
function slowRun(execute: (answer: { ok: (output: unknown) => void }) => void) {
  return keyedRun<{ name: string }>({
    contract: 'tally',
    logger: silentLogger,
    lateOutcomes: new WeakMap(),
    finish: () => undefined,
    failure: (error) => new RemoteFailure({ type: 'keel', code: 'INTERNAL', message: String(error), correlationId: 'c' }),
    execute: (_entry, _address, _value, _context, answer) => execute(answer),
  });
}

describe('idempotency - the lease of a keyed run with the longest deadline', () => {
  it('does not renew (and shorten) its claim long before the deadline', async () => {
    const store = new RecordingStore();
    let settle: (() => void) | undefined;
    // A run that goes on until the test ends it.
    const once = slowRun((answer) => {
      settle = () => answer.ok({});
    });
    const context = { correlationId: 'c', deadline: Date.now() + MAX_TIMEOUT_MS, idempotencyKey: 'k' } as unknown as CallContext;
    const answered = new Promise<void>((resolve) => {
      void once(store, { name: 'slow' }, { contract: 'tally', version: '1.0.0', operation: 'slow' }, {}, context, { ok: () => resolve(), fail: () => resolve() });
    });
    await sleep(200);
    expect(store.extended).toEqual([]);
    settle?.();
    await answered;
  });
});

describe('idempotency - the lease of a keyed run whose outcome takes a while to record', () => {
  it('keeps renewing the claim until the outcome is recorded, so that it cannot lapse (and be taken over) meanwhile', async () => {
    let completing = false;
    const renewedWhileCompleting: number[] = [];
    const store = new (class extends RecordingStore {
      override async complete(): Promise<void> {
        completing = true;
        // A slow write: a pool whose connections the module's handlers hold, say.
        await sleep(4_000);
        completing = false;
      }
      override async extend(operation: string, key: string, token: string, expiresAt: number): Promise<boolean> {
        if (completing) renewedWhileCompleting.push(expiresAt);
        return super.extend(operation, key, token, expiresAt);
      }
    })();
    // A run that ends 2.8 s after its start, past its deadline (100 ms) and the claim's first renewal (2.6 s).
    const once = slowRun((answer) => {
      setTimeout(() => answer.ok({}), 2_800);
    });
    const context = { correlationId: 'c', deadline: Date.now() + 100, idempotencyKey: 'k' } as unknown as CallContext;
    await new Promise<void>((resolve) => {
      void once(store, { name: 'slow' }, { contract: 'tally', version: '1.0.0', operation: 'slow' }, {}, context, { ok: () => resolve(), fail: () => resolve() });
    });
    // Renewed every 2.5 s: at least once in the 4 s the outcome took to record.
    expect(renewedWhileCompleting.length).toBeGreaterThan(0);
  }, 30_000);
});
