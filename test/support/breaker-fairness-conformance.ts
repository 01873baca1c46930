/**
 * The conformance suite's part on what a circuit breaker holds against its dependency: a
 * `TIMEOUT` counts only when the attempt was given a fair time, at least half of what its
 * operation grants, so that a caller's own short deadline never opens the breaker for the
 * others. Registered by resilience-conformance.ts, with its depot callee.
 */
import { expect, it } from 'vitest';
import type { Kernel, KernelOptions } from 'keel';
import { depot, newKey, rejection, type Ledger } from './resilience-depot.js';

interface BreakerFairnessFixture {
  readonly start: (host: string[], options?: Partial<KernelOptions>) => Promise<Kernel>;
  readonly ledger: Ledger;
}

/** Registers the breaker-fairness conformance tests, inside the caller-recovery suite. */
export function describeBreakerFairnessConformance({ start, ledger }: BreakerFairnessFixture): void {
  it('holds a TIMEOUT against the breaker only when the attempt had at least half its operation\'s time: four calls cut to 20 ms by their caller leave it closed and the next call answers, four given the 300 ms the operation grants open it', async () => {
    // The operation sets no timeoutMs: this caller's default deadline (300 ms) is what it grants.
    const caller = await start([], { defaultTimeoutMs: 300, circuitBreaker: { failureRatio: 0.5, minimumAttempts: 4, openMs: 60_000 }, retry: false });
    const client = caller.client(depot);
    const short = await Promise.all(Array.from({ length: 4 }, () => rejection(client.hangs({ key: newKey('cut-short') }, { timeoutMs: 20 }))));
    expect(short.map((error) => error.code)).toEqual(['TIMEOUT', 'TIMEOUT', 'TIMEOUT', 'TIMEOUT']);
    expect(caller.status().circuits).toContainEqual(expect.objectContaining({ dependency: 'depot', state: 'closed', failures: 0 }));
    // Still closed: the next call is sent, and answers.
    expect(await client.flakyIdempotent({ key: newKey('sent-after-short'), failures: 0, code: 'UNAVAILABLE' })).toEqual({ runs: 1, attempt: null });
    // The same timeouts with the operation's own time are the dependency's: they open the breaker.
    const fair = await Promise.all(Array.from({ length: 4 }, () => rejection(client.hangs({ key: newKey('fair') }))));
    expect(fair.map((error) => error.code)).toEqual(['TIMEOUT', 'TIMEOUT', 'TIMEOUT', 'TIMEOUT']);
    const refused = newKey('refused');
    expect((await rejection(client.hangs({ key: refused }))).details?.['circuit']).toBe('open');
    expect(ledger.runs.get(refused)).toBeUndefined();
  });
}
