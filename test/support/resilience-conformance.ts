/**
 * The conformance suite's part on how callers recover, the same on every transport: retries of
 * what was not processed (and, for idempotent operations, of what timed out), inside the call's
 * one deadline; hedging, where the first answer wins; the circuit breaker of a dependency; the
 * retry budget (retry-budget-conformance.ts). The callee (resilience-depot.ts) runs in a kernel
 * of its own and each caller in another, so every attempt crosses the transport under test.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKernel, silentLogger, type Kernel, type KernelOptions, type Transport } from 'keel';
import type { RetryRecord } from 'keel/transport';
import type { ConformanceTarget } from './conformance.js';
import { Ledger, OVERLOADED_RETRY_AFTER_MS, Refused, depot, depotModule, newKey, rejection } from './resilience-depot.js';
import { describeBreakerFairnessConformance } from './breaker-fairness-conformance.js';
import { describeRetryBudgetConformance } from './retry-budget-conformance.js';

/** Registers the caller-recovery conformance tests for `target`, inside its suite. */
export function describeResilienceConformance(target: ConformanceTarget): void {
  describe('caller recovery (retry, hedging, circuit breaker, retry budget)', () => {
    const ledger = new Ledger();
    const kernels: Kernel[] = [];
    const transports: Transport[] = [];
    const retried: RetryRecord[] = [];
    let caller: Kernel | undefined;
    let guarded: Kernel | undefined;
    const namespace = `resilience${process.pid}`;

    const start = async (host: string[], options: Partial<KernelOptions> = {}): Promise<Kernel> => {
      const transport = await target.createTransport(namespace);
      transports.push(transport);
      const kernel = createKernel({ modules: [depotModule(ledger)], topology: { host, transport }, logger: silentLogger, ...options });
      kernels.push(kernel);
      await kernel.start();
      return kernel;
    };

    beforeAll(async () => {
      await start(['depot']);
      // Breakers off here: the failures these tests ask for must not open one for the others.
      caller = await start([], { circuitBreaker: false });
      caller.observe({ callRetried: (record) => retried.push(record) });
      // openMs: the call right after the breaker opens must find it still open on a stalled machine.
      guarded = await start([], { circuitBreaker: { failureRatio: 0.5, minimumAttempts: 4, openMs: 1_000 }, retry: false });
    }, 60_000);
    afterAll(async () => {
      for (const kernel of [...kernels].reverse()) await kernel.stop();
      for (const transport of transports) await target.closeTransport(transport);
      for (const timer of ledger.sleepers) clearTimeout(timer);
    });

    const client = () => (caller as Kernel).client(depot);

    it('retries a failure that proves nothing ran (UNAVAILABLE, NO_RESPONDERS, RESOURCE_EXHAUSTED) on a non-idempotent operation; the callee sees the attempt number', async () => {
      for (const code of ['UNAVAILABLE', 'NO_RESPONDERS', 'RESOURCE_EXHAUSTED'] as const) {
        const key = newKey(code);
        expect(await client().flaky({ key, failures: 2, code })).toEqual({ runs: 3, attempt: 3 });
      }
      expect(retried.filter((record) => record.operation === 'flaky' && record.reason === 'retry').length).toBeGreaterThanOrEqual(6);
    });

    it('does not retry an outcome that is unknown (INTERRUPTED) on a non-idempotent operation, and retries it on an idempotent one', async () => {
      const once = newKey('interrupted');
      expect((await rejection(client().flaky({ key: once, failures: 1, code: 'INTERRUPTED' }))).code).toBe('INTERRUPTED');
      expect(ledger.runs.get(once)).toBe(1);
      const repeatable = newKey('interrupted-idempotent');
      expect(await client().flakyIdempotent({ key: repeatable, failures: 1, code: 'INTERRUPTED' })).toEqual({ runs: 2, attempt: 2 });
    });

    it('never retries an answer: a declared error or INTERNAL runs once', async () => {
      const declared = newKey('declared');
      const error = await client().refuse({ key: declared }).catch((caught: unknown) => caught);
      expect(Refused.is(error)).toBe(true);
      expect(ledger.runs.get(declared)).toBe(1);
      const internal = newKey('internal');
      expect((await rejection(client().flakyIdempotent({ key: internal, failures: 5, code: 'INTERNAL' }))).code).toBe('INTERNAL');
      expect(ledger.runs.get(internal)).toBe(1);
    });

    it('stops after maxAttempts and says how many attempts were made; retry: false makes one', async () => {
      const key = newKey('exhausted');
      const error = await rejection(client().flakyIdempotent({ key, failures: 10, code: 'UNAVAILABLE' }, { retry: { maxAttempts: 4, backoffMs: 1 } }));
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.details?.['attempts']).toBe(4);
      expect(error.message).toContain('(4 attempts)');
      expect(ledger.runs.get(key)).toBe(4);
      const single = newKey('no-retry');
      expect((await rejection(client().flakyIdempotent({ key: single, failures: 1, code: 'UNAVAILABLE' }, { retry: false }))).code).toBe('UNAVAILABLE');
      expect(ledger.runs.get(single)).toBe(1);
    });

    // Each wait is drawn below 600 s and under 3 s remain, so a wait short enough to retry is a 1 in 200 draw.
    // TIMEOUT is right only when a retry is still in flight at the deadline, which takes a wait ending within
    // an attempt's time of it: about 1 in 10^5 here (with 400 ms and waits below 2 s, a loaded CI machine hit it).
    it('keeps retries inside the call deadline: a backoff that would pass it ends the call with the last failure, not TIMEOUT', async () => {
      const key = newKey('deadline');
      const error = await rejection(
        client().flakyIdempotent({ key, failures: 10, code: 'UNAVAILABLE' }, { timeoutMs: 3_000, retry: { maxAttempts: 10, backoffMs: 600_000, maxBackoffMs: 600_000 } }),
      );
      expect(error.code).toBe('UNAVAILABLE');
      const runs = ledger.runs.get(key) ?? 0;
      expect(runs).toBeGreaterThanOrEqual(1);
      expect(runs).toBeLessThan(10);
    });

    it('retries an idempotent attempt that hangs past its attemptTimeoutMs; the callee was told the attempt deadline, not the call one', async () => {
      const key = newKey('hang');
      const answer = await client().hangsOnce({ key }, { timeoutMs: 5_000 });
      expect(answer.runs).toBe(2);
      expect(answer.attempt).toBe(2);
      expect(answer.attemptBudgetMs).toBeLessThanOrEqual(1_000);
    });

    it('does not retry a hanging attempt of a non-idempotent operation: it fails TIMEOUT after its attempt timeout, run once', async () => {
      const key = newKey('hang-once');
      const error = await rejection(client().hangsOnceNotIdempotent({ key }, { timeoutMs: 5_000 }));
      expect(error.code).toBe('TIMEOUT');
      expect(ledger.runs.get(key)).toBe(1);
    });

    it('retries a hanging attempt of a non-idempotent operation when the call carries an idempotency key: the callee runs it once, and the retry answers with its outcome', async () => {
      const key = newKey('keyed');
      // Attempt 1 hangs past its 1 s; the retries meet the key still in use, then its stored outcome.
      const answer = await client().hangsOnceNotIdempotent({ key }, { timeoutMs: 5_000, idempotencyKey: key, retry: { maxAttempts: 8 } });
      expect(answer).toEqual({ runs: 1, attempt: null });
      expect(ledger.runs.get(key)).toBe(1);
    });

    it('hedges an idempotent operation: while the first attempt hangs, the second answers and wins', async () => {
      const key = newKey('hedge');
      const answer = await client().hedged({ key }, { timeoutMs: 2_000 });
      expect(answer).toEqual({ runs: 2, attempt: 2 });
      expect(retried.some((record) => record.operation === 'hedged' && record.reason === 'hedge' && record.attempt === 2)).toBe(true);
      // hedge: false per call: the hanging first attempt is all there is.
      const single = newKey('no-hedge');
      expect((await rejection(client().hedged({ key: single }, { timeoutMs: 400, hedge: false }))).code).toBe('TIMEOUT');
      expect(ledger.runs.get(single)).toBe(1);
    });

    it('does not hedge into a callee that answered RESOURCE_EXHAUSTED at once: the next attempt waits the retryAfterMs the refusal asked for', async () => {
      const key = newKey('hedge-overloaded');
      expect(await client().hedgedOverloaded({ key }, { timeoutMs: 3_000 })).toEqual({ runs: 3, attempt: 3 });
      const [, refused, next] = ledger.startedAt.get(key) ?? [];
      expect((next as number) - (refused as number)).toBeGreaterThanOrEqual(OVERLOADED_RETRY_AFTER_MS);
    });

    it('hedges at the percentile of the latencies it saw: after 24 answers of 80 ms, a hanging call is hedged 40 ms or more after it started (the median, not its delayMs of 1)', async () => {
      // Fewer than 20 latencies seen: the hedge waits delayMs (1 ms); these answers fill the window.
      await Promise.all(Array.from({ length: 24 }, () => client().paced({ key: newKey('pace'), paceMs: 80, hang: false }, { timeoutMs: 5_000 })));
      const key = newKey('paced-hang');
      expect(await client().paced({ key, paceMs: 0, hang: true }, { timeoutMs: 3_000 })).toEqual({ runs: 2, attempt: 2 });
      const [first, second] = ledger.startedAt.get(key) ?? [];
      // The median of the window is at least 80 ms (each answer took that long, and more over NATS); without it, 1 ms.
      expect((second as number) - (first as number)).toBeGreaterThanOrEqual(40);
    });

    it('ends with the unknown outcome (TIMEOUT) when an attempt that may have run is followed by attempts refused as not processed, never with "nothing was delivered"', async () => {
      const key = newKey('unknown-then-unavailable');
      const error = await rejection(client().hangsThenUnavailable({ key }, { timeoutMs: 5_000 }));
      expect(error.code).toBe('TIMEOUT');
      expect(error.details?.['attempts']).toBe(3);
      expect(ledger.runs.get(key)).toBe(3);
    });

    it('ends with a later attempt\'s own failure (INVALID_CONFIG thrown by its handler, which ran; never retried) after an attempt that may have run: only a failure that proves nothing ran gives way to the unknown outcome', async () => {
      const key = newKey('unknown-then-misconfigured');
      const error = await rejection(client().hangsThenMisconfigured({ key }, { timeoutMs: 5_000 }));
      expect(error.code).toBe('INVALID_CONFIG');
      expect(error.message).toMatch(/^INVALID_CONFIG on run 2 \(as the test asked\)/);
      expect(error.details?.['attempts']).toBe(2);
      expect(ledger.runs.get(key)).toBe(2);
    });

    it('ends a hedged call whose deadline passes while the event loop is blocked with TIMEOUT, not an empty rejection', async () => {
      const key = newKey('hedge-blocked');
      const pending = rejection(client().hedged({ key }, { timeoutMs: 80 }));
      // Block the loop past the hedge delay and the deadline: both timers are due together.
      const until = Date.now() + 150;
      while (Date.now() < until) {
        // busy: a stalled event loop (GC, CPU work) as on a loaded machine
      }
      expect((await pending).code).toBe('TIMEOUT');
    });

    it('refuses a hedge call option on a non-idempotent operation, and a malformed retry option, with INVALID_INPUT naming the field', async () => {
      const hedge = await rejection(client().flaky({ key: newKey('x'), failures: 0, code: 'UNAVAILABLE' }, { hedge: { delayMs: 10 } }));
      expect(hedge.code).toBe('INVALID_INPUT');
      expect(hedge.message).toContain('hedge needs an idempotent operation');
      const retry = await rejection(client().flaky({ key: newKey('x'), failures: 0, code: 'UNAVAILABLE' }, { retry: { maxAttempts: 0 } }));
      expect(retry.code).toBe('INVALID_INPUT');
      expect(retry.message).toContain('retry.maxAttempts');
    });

    describeRetryBudgetConformance({ start, ledger });
    describeBreakerFairnessConformance({ start, ledger });

    it('opens the breaker of a failing dependency: the next call fails at once UNAVAILABLE without running; after openMs a probe that succeeds closes it', async () => {
      const breakerClient = (guarded as Kernel).client(depot);
      const key = newKey('breaker');
      for (let call = 0; call < 4; call++) {
        expect((await rejection(breakerClient.flakyIdempotent({ key, failures: 4, code: 'UNAVAILABLE' }))).code).toBe('UNAVAILABLE');
      }
      expect(ledger.runs.get(key)).toBe(4);
      const refused = await rejection(breakerClient.flakyIdempotent({ key, failures: 4, code: 'UNAVAILABLE' }));
      expect(refused.code).toBe('UNAVAILABLE');
      expect(refused.details?.['circuit']).toBe('open');
      expect(refused.retryable).toBe(true);
      expect(ledger.runs.get(key)).toBe(4);
      expect((guarded as Kernel).status().circuits).toContainEqual(expect.objectContaining({ dependency: 'depot', state: 'open', opened: 1 }));
      // After openMs, one probe goes through; the fifth run succeeds, and the breaker closes.
      await vi.waitFor(
        async () => {
          expect(await breakerClient.flakyIdempotent({ key, failures: 4, code: 'UNAVAILABLE' })).toEqual({ runs: 5, attempt: null });
        },
        { timeout: 5_000, interval: 50 },
      );
      expect((guarded as Kernel).status().circuits).toContainEqual(expect.objectContaining({ dependency: 'depot', state: 'closed' }));
    });
  });
}
