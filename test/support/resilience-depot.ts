/**
 * The callee of the caller-recovery conformance tests (resilience-conformance.ts,
 * retry-budget-conformance.ts): the `depot` contract, whose operations fail, hang or answer as
 * each call asks, and the ledger that counts its runs per key, so that a retry is proven by a
 * run count.
 */
import { z } from 'zod';
import { KeelError, KeelErrorCode, defineContract, defineError, defineModule, isKeelError, operation } from 'keel';

const Failing = z.object({
  key: z.string(),
  /** Runs that fail before one succeeds. */
  failures: z.number().int(),
  code: z.enum(['UNAVAILABLE', 'NO_RESPONDERS', 'RESOURCE_EXHAUSTED', 'INTERRUPTED', 'INTERNAL']),
});
const Runs = z.object({ runs: z.number().int(), attempt: z.number().int().nullable() });
const Keyed = z.object({ key: z.string() });

export const Refused = defineError({ code: 'REFUSED_FOR_GOOD', kind: 'conflict', data: z.object({ key: z.string() }) });

export const depot = defineContract({
  name: 'depot',
  version: '1.0.0',
  operations: {
    /** Not idempotent: only failures that prove nothing ran are retried. */
    flaky: operation({ input: Failing, output: Runs }),
    flakyIdempotent: operation({ input: Failing, output: Runs, idempotent: true }),
    refuse: operation({ input: Keyed, output: Runs, errors: [Refused], idempotent: true }),
    // The attempt timeouts below are a second: a later attempt that reached its callee after its
    // deadline (a stalled event loop on a loaded machine) would never run, and change the run counts.
    /** Its first run per key hangs past its attempt's deadline; later runs answer at once. */
    hangsOnce: operation({
      input: Keyed,
      output: Runs.extend({ attemptBudgetMs: z.number() }),
      idempotent: true,
      retry: { attemptTimeoutMs: 1_000, maxAttempts: 3 },
    }),
    hangsOnceNotIdempotent: operation({ input: Keyed, output: Runs, retry: { attemptTimeoutMs: 1_000, maxAttempts: 3 } }),
    /** Its first run per key hangs past its attempt's deadline; later runs fail UNAVAILABLE. */
    hangsThenUnavailable: operation({ input: Keyed, output: Runs, idempotent: true, retry: { attemptTimeoutMs: 1_000, maxAttempts: 3, backoffMs: 1 } }),
    /** Its first run per key hangs past its attempt's deadline; later runs fail INVALID_CONFIG, which is never retried. */
    hangsThenMisconfigured: operation({ input: Keyed, output: Runs, idempotent: true, retry: { attemptTimeoutMs: 1_000, maxAttempts: 3, backoffMs: 1 } }),
    /** Not idempotent, never retried on TIMEOUT: every run hangs until its deadline. */
    hangs: operation({ input: Keyed, output: Runs }),
    /** Hedged: its first run per key hangs until its deadline; the hedge answers. */
    hedged: operation({ input: Keyed, output: Runs, idempotent: true, hedge: { delayMs: 50, maxAttempts: 3 } }),
    /** Hedged: its first run per key hangs until its deadline, its second is refused RESOURCE_EXHAUSTED (`retryAfterMs` in its details), its third answers. */
    hedgedOverloaded: operation({ input: Keyed, output: Runs, idempotent: true, hedge: { delayMs: 50, maxAttempts: 3 } }),
    /** Hedged at the median of the latencies seen: answers after `paceMs`; with `hang`, its first run per key hangs until its deadline. */
    paced: operation({
      input: Keyed.extend({ paceMs: z.number().int(), hang: z.boolean() }),
      output: Runs,
      idempotent: true,
      hedge: { percentile: 50, delayMs: 1, maxAttempts: 2 },
    }),
  },
});

/** The wait `hedgedOverloaded`'s refusal asks for. */
export const OVERLOADED_RETRY_AFTER_MS = 300;

/** The callee's memory: runs per key, and what the hanging runs saw. */
export class Ledger {
  readonly runs = new Map<string, number>();
  /** When each run of a key started (Date.now()). */
  readonly startedAt = new Map<string, number[]>();
  readonly sleepers = new Set<NodeJS.Timeout>();

  run(key: string): number {
    const runs = (this.runs.get(key) ?? 0) + 1;
    this.runs.set(key, runs);
    this.startedAt.set(key, [...(this.startedAt.get(key) ?? []), Date.now()]);
    return runs;
  }

  sleep(ms: number): Promise<void> {
    return this.sleepPast(Date.now() + ms - 20);
  }

  /** Waits until `deadline` has passed (a frozen callee, as its caller sees it). */
  sleepPast(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleepers.delete(timer);
        resolve();
      }, Math.max(0, deadline - Date.now()) + 20);
      this.sleepers.add(timer);
    });
  }
}

export function depotModule(ledger: Ledger) {
  return defineModule({
    contract: depot,
    create: () => {
      const fail = ({ key, failures, code }: z.infer<typeof Failing>, attempt: number | undefined) => {
        const runs = ledger.run(key);
        if (runs <= failures) throw new KeelError(KeelErrorCode[code], `${code} on run ${runs} (as the test asked)`);
        return { runs, attempt: attempt ?? null };
      };
      return {
        handlers: {
          flaky: (input, context) => fail(input, context.callAttempt),
          flakyIdempotent: (input, context) => fail(input, context.callAttempt),
          refuse: ({ key }) => {
            ledger.run(key);
            throw new Refused({ key });
          },
          hangsOnce: async ({ key }, context) => {
            const runs = ledger.run(key);
            const attemptBudgetMs = context.deadline - Date.now();
            if (runs === 1) await ledger.sleepPast(context.deadline);
            return { runs, attempt: context.callAttempt ?? null, attemptBudgetMs };
          },
          hangsOnceNotIdempotent: async ({ key }, context) => {
            const runs = ledger.run(key);
            if (runs === 1) await ledger.sleepPast(context.deadline);
            return { runs, attempt: context.callAttempt ?? null };
          },
          hangsThenUnavailable: async ({ key }, context) => {
            const runs = ledger.run(key);
            if (runs > 1) throw new KeelError(KeelErrorCode.UNAVAILABLE, `UNAVAILABLE on run ${runs} (as the test asked)`);
            await ledger.sleepPast(context.deadline);
            return { runs, attempt: context.callAttempt ?? null };
          },
          hangsThenMisconfigured: async ({ key }, context) => {
            const runs = ledger.run(key);
            if (runs > 1) throw new KeelError(KeelErrorCode.INVALID_CONFIG, `INVALID_CONFIG on run ${runs} (as the test asked)`);
            await ledger.sleepPast(context.deadline);
            return { runs, attempt: context.callAttempt ?? null };
          },
          hangs: async ({ key }, context) => {
            const runs = ledger.run(key);
            await ledger.sleepPast(context.deadline);
            return { runs, attempt: context.callAttempt ?? null };
          },
          hedged: async ({ key }, context) => {
            const runs = ledger.run(key);
            if (runs === 1) await ledger.sleepPast(context.deadline);
            return { runs, attempt: context.callAttempt ?? null };
          },
          hedgedOverloaded: async ({ key }, context) => {
            const runs = ledger.run(key);
            if (runs === 2) {
              throw new KeelError(KeelErrorCode.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED on run 2 (as the test asked)', {
                details: { retryAfterMs: OVERLOADED_RETRY_AFTER_MS },
              });
            }
            if (runs === 1) await ledger.sleepPast(context.deadline);
            return { runs, attempt: context.callAttempt ?? null };
          },
          paced: async ({ key, paceMs, hang }, context) => {
            const runs = ledger.run(key);
            await (hang && runs === 1 ? ledger.sleepPast(context.deadline) : ledger.sleep(paceMs));
            return { runs, attempt: context.callAttempt ?? null };
          },
        },
      };
    },
  });
}

export async function rejection(promise: Promise<unknown>): Promise<KeelError> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (error: unknown) => {
      if (!isKeelError(error)) throw error;
      return error;
    },
  );
}

let keys = 0;
export const newKey = (label: string): string => `${label}-${process.pid}-${++keys}`;
