/**
 * The conformance suite's part on the retry budget (kernel option `retryBudget`), the same on
 * every transport: retries and hedges to a dependency over their share of its attempts are not
 * sent, the failure says so, and a breaker that is open decides before the budget.
 */
import { expect, it } from 'vitest';
import type { Kernel, KernelOptions } from 'keel';
import { depot, newKey, rejection, type Ledger } from './resilience-depot.js';

/** What the budget tests need of the caller-recovery suite: a caller kernel with options, and the callee's ledger. */
export interface RetryBudgetFixture {
  readonly start: (host: string[], options?: Partial<KernelOptions>) => Promise<Kernel>;
  readonly ledger: Ledger;
}

/** Registers the retry-budget tests, inside the caller-recovery suite of a transport. */
export function describeRetryBudgetConformance({ start, ledger }: RetryBudgetFixture): void {
  // A breaker that never opens (its window long enough for a loaded machine), so that only the budget refuses.
  const budgeted = (retryBudget: KernelOptions['retryBudget']) =>
    start([], { circuitBreaker: { failureRatio: 1, minimumAttempts: 1_000_000, windowMs: 600_000 }, retry: { maxAttempts: 3, backoffMs: 1 }, retryBudget });

  it('sends no retry over the retry budget: the call fails with its last failure, details.retryBudget spent, and the callee ran it once', async () => {
    const kernel = await budgeted({ ratio: 0, minRetries: 2 });
    const budgetClient = kernel.client(depot);
    const first = newKey('budget-first');
    const spent = await rejection(budgetClient.flakyIdempotent({ key: first, failures: 10, code: 'UNAVAILABLE' }));
    expect(spent.details?.['attempts']).toBe(3);
    expect(ledger.runs.get(first)).toBe(3);
    const second = newKey('budget-second');
    const refused = await rejection(budgetClient.flakyIdempotent({ key: second, failures: 10, code: 'UNAVAILABLE' }));
    expect(refused.code).toBe('UNAVAILABLE');
    expect(refused.details?.['retryBudget']).toBe('spent');
    expect(refused.message).toContain('over its retry budget');
    // The handler's message has no full stop: one is added before the sentence that follows it.
    expect(refused.message).toContain('UNAVAILABLE on run 1 (as the test asked). Not sent again: the retries');
    expect(ledger.runs.get(second)).toBe(1);
    expect(kernel.status().circuits).toContainEqual(expect.objectContaining({ dependency: 'depot', state: 'closed', retries: 2, retriesRefused: 1 }));
    // A call that needs no retry is not refused.
    const fine = newKey('budget-fine');
    expect(await budgetClient.flakyIdempotent({ key: fine, failures: 0, code: 'UNAVAILABLE' })).toEqual({ runs: 1, attempt: null });
  });

  it('counts retries against the budget\'s ratio of all attempts: after 8 answered calls, at a quarter, two failing calls retry twice each and the third is refused', async () => {
    const kernel = await budgeted({ ratio: 0.25, minRetries: 0 });
    const budgetClient = kernel.client(depot);
    for (let call = 0; call < 8; call++) await budgetClient.flakyIdempotent({ key: newKey('budget-ok'), failures: 0, code: 'UNAVAILABLE' });
    // Attempts 9 to 11: retries 0 < 2.25 and 1 < 2.5 are allowed.
    const first = newKey('budget-ratio-1');
    await rejection(budgetClient.flakyIdempotent({ key: first, failures: 10, code: 'UNAVAILABLE' }));
    expect(ledger.runs.get(first)).toBe(3);
    // Attempts 12 to 14: retries 2 < 3 and 3 < 3.25 are allowed; then attempt 15, and 4 retries reach 3.75: refused.
    const second = newKey('budget-ratio-2');
    const refused = await rejection(budgetClient.flakyIdempotent({ key: second, failures: 10, code: 'UNAVAILABLE' }));
    expect(ledger.runs.get(second)).toBe(3);
    expect(refused.details?.['retryBudget']).toBeUndefined();
    const third = newKey('budget-ratio-3');
    const spent = await rejection(budgetClient.flakyIdempotent({ key: third, failures: 10, code: 'UNAVAILABLE' }));
    expect(spent.details?.['retryBudget']).toBe('spent');
    expect(ledger.runs.get(third)).toBe(1);
  });

  it('sends no hedge over the retry budget: the hanging first attempt is the only run, and the call ends TIMEOUT', async () => {
    const kernel = await budgeted({ ratio: 0, minRetries: 0 });
    const key = newKey('budget-hedge');
    const error = await rejection(kernel.client(depot).hedged({ key }, { timeoutMs: 600 }));
    expect(error.code).toBe('TIMEOUT');
    expect(ledger.runs.get(key)).toBe(1);
    expect(kernel.status().circuits).toContainEqual(expect.objectContaining({ dependency: 'depot', retries: 0, retriesRefused: 1 }));
  });

  it('marks the failure a refused retry ends with even when an earlier attempt timed out: TIMEOUT (it may have run), details.retryBudget spent', async () => {
    const kernel = await budgeted({ ratio: 0, minRetries: 1 });
    const key = newKey('budget-unknown');
    // Attempt 1 hangs past its attempt timeout (TIMEOUT); the retry fails UNAVAILABLE; the next is over the budget.
    const error = await rejection(kernel.client(depot).hangsThenUnavailable({ key }, { timeoutMs: 5_000 }));
    expect(error.code).toBe('TIMEOUT');
    expect(error.details?.['retryBudget']).toBe('spent');
    expect(ledger.runs.get(key)).toBe(2);
  });

  it('leaves a retry that finds the breaker open to the breaker: the call fails with details.circuit open, and the budget neither counts nor refuses it', async () => {
    // The first failure opens the breaker; the budget, spent from the start, would refuse any retry.
    const kernel = await start([], { circuitBreaker: { failureRatio: 0.5, minimumAttempts: 1, openMs: 600_000 }, retry: { maxAttempts: 3, backoffMs: 1 }, retryBudget: { ratio: 0, minRetries: 0 } });
    const key = newKey('budget-open');
    const error = await rejection(kernel.client(depot).flakyIdempotent({ key, failures: 10, code: 'UNAVAILABLE' }));
    expect(error.details?.['circuit']).toBe('open');
    expect(error.details?.['retryBudget']).toBeUndefined();
    expect(ledger.runs.get(key)).toBe(1);
    expect(kernel.status().circuits).toContainEqual(expect.objectContaining({ dependency: 'depot', state: 'open', retries: 0, retriesRefused: 0 }));
  });
}
