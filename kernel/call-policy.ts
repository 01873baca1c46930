/**
 * How a caller recovers from a failed call: the retry, hedging and circuit-breaker policies an
 * operation's contract declares, the kernel's defaults, and their checking, done once (a bad
 * value is named with its field). The policies act in the kernel's client, so every transport
 * applies them the same way (resilient-call.ts, circuit-breaker.ts).
 */
import { z } from 'zod';
import { KeelError, KeelErrorCode } from './errors.js';

/**
 * When a failed call is sent again, inside its one deadline. A call is retried when its
 * failure proves the request was not processed (`NO_RESPONDERS`, `UNAVAILABLE`,
 * `RESOURCE_EXHAUSTED`), or, for an idempotent operation or a call with an idempotency key,
 * when its outcome is unknown (`TIMEOUT` of one attempt, `INTERRUPTED`). Nothing else is
 * retried: a declared error or a refusal is an answer.
 *
 * @example
 * ```ts
 * const getProduct = operation({
 *   input, output, idempotent: true,
 *   retry: { maxAttempts: 4, backoffMs: 20, attemptTimeoutMs: 500 },
 * });
 * ```
 */
export interface RetryPolicy {
  /** Attempts in all, the first one included: 1 never retries (kernel default 3). */
  readonly maxAttempts?: number;
  /** The first wait before a retry; it doubles with each attempt, and each wait is drawn at random below it (full jitter). Default 25 ms. */
  readonly backoffMs?: number;
  /** The longest wait before a retry (default 1 000 ms). */
  readonly maxBackoffMs?: number;
  /**
   * How long one attempt may take before the caller stops waiting for it and, when the
   * operation may be repeated, tries again with what is left of the deadline. The callee is
   * told the attempt's deadline, so it drops the attempt if it could only start it later.
   * Default: none, an attempt has the call's whole deadline.
   */
  readonly attemptTimeoutMs?: number;
}

/**
 * Hedging, for idempotent operations only: while no answer has come, another attempt is sent
 * after a delay, and the first answer wins. It routes around a slow or frozen instance at the
 * price of extra work on the callee. A failure proving the request was not processed sends the
 * next attempt at once, except `RESOURCE_EXHAUSTED` (the callee is overloaded): the next attempt
 * then waits a backoff, as a retry would.
 *
 * @example
 * ```ts
 * const getProduct = operation({ input, output, idempotent: true, hedge: { percentile: 95, delayMs: 20, maxAttempts: 3 } });
 * ```
 */
export interface HedgePolicy {
  /**
   * Delay before each further attempt, in milliseconds. With `percentile` it is the least
   * delay, and the delay until enough latencies were seen (default 50 ms).
   */
  readonly delayMs?: number;
  /**
   * Hedge at this percentile (50 to 99.9) of the operation's latencies this caller observed
   * recently, never below `delayMs`: `95` sends another attempt only for the slowest 5 %.
   */
  readonly percentile?: number;
  /** Attempts in all, the first one included (default 3). */
  readonly maxAttempts?: number;
}

/**
 * A circuit breaker per dependency (a contract called from this process). It opens when, in a
 * sliding window, at least `minimumAttempts` attempts were made and at least `failureRatio`
 * of them failed in a way that says the dependency is unwell (`TIMEOUT`, `UNAVAILABLE`,
 * `INTERRUPTED`, `RESOURCE_EXHAUSTED`). While open, calls fail at once with `UNAVAILABLE`
 * (not sent). After `openMs` one probe call goes through: its success closes the breaker,
 * its failure opens it again.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, circuitBreaker: { failureRatio: 0.5, minimumAttempts: 50, openMs: 5_000 } });
 * ```
 */
export interface CircuitBreakerPolicy {
  /** Share of failed attempts that opens the breaker, above 0 and at most 1 (default 0.8). */
  readonly failureRatio?: number;
  /** Attempts in the window before the ratio is judged (default 20). */
  readonly minimumAttempts?: number;
  /** Length of the sliding window (default 10 000 ms). */
  readonly windowMs?: number;
  /** How long the breaker stays open before a probe (default 2 000 ms). */
  readonly openMs?: number;
}

/**
 * A retry budget per dependency (a contract called from this process): the attempts sent after a
 * call's first (retries and hedges) may be at most `ratio` of all attempts to it, plus
 * `minRetries`, counted in its circuit breaker's sliding window. A retry over the budget is not
 * sent: the call fails with its last failure, whose `details.retryBudget` is `'spent'`; a hedge
 * over it is not sent, and the attempts out decide. It keeps a failing dependency from getting
 * up to `maxAttempts` times its traffic while it is down, before its breaker opens or when the
 * failures are too few to open it. Off by default (hedging around a frozen instance can need
 * more than a fifth of the attempts); it needs the circuit breaker, whose window it counts in.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, retryBudget: { ratio: 0.2, minRetries: 10 } });
 * ```
 */
export interface RetryBudgetPolicy {
  /** Share of a dependency's attempts in the window that may be retries or hedges, from 0 to 1 (default 0.2). */
  readonly ratio?: number;
  /** Retries and hedges allowed in the window whatever the ratio, so that a quiet caller still retries (default 10). */
  readonly minRetries?: number;
}

/** A {@link RetryBudgetPolicy} with every field decided. */
export type ResolvedRetryBudget = Required<RetryBudgetPolicy>;

/** A {@link RetryPolicy} with every field decided. */
export interface ResolvedRetry {
  readonly maxAttempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly attemptTimeoutMs: number | undefined;
}

/** A {@link HedgePolicy} with every field decided. */
export interface ResolvedHedge {
  readonly delayMs: number;
  readonly percentile: number | undefined;
  readonly maxAttempts: number;
}

/** A {@link CircuitBreakerPolicy} with every field decided. */
export type ResolvedBreaker = Required<CircuitBreakerPolicy>;

/**
 * The kernel's defaults: every call retries what was certainly not processed (3 attempts,
 * 25 ms doubling to at most 1 s), nothing is hedged unless declared, and every dependency has
 * a breaker that opens at 80 % failures over 10 s (20 attempts at least) for 2 s. No retry
 * budget unless given; `retryBudget` holds what one given as `{}` takes.
 *
 * @example
 * ```ts
 * import { DEFAULT_CALL_POLICIES } from 'keel/transport';
 *
 * const kernel = createKernel({ modules, retry: { ...DEFAULT_CALL_POLICIES.retry, maxAttempts: 5 } });
 * ```
 */
export const DEFAULT_CALL_POLICIES = Object.freeze({
  retry: Object.freeze({ maxAttempts: 3, backoffMs: 25, maxBackoffMs: 1_000, attemptTimeoutMs: undefined }) as ResolvedRetry,
  hedge: Object.freeze({ delayMs: 50, percentile: undefined, maxAttempts: 3 }) as ResolvedHedge,
  circuitBreaker: Object.freeze({ failureRatio: 0.8, minimumAttempts: 20, windowMs: 10_000, openMs: 2_000 }) as ResolvedBreaker,
  retryBudget: Object.freeze({ ratio: 0.2, minRetries: 10 }) as ResolvedRetryBudget,
});

const MAX_MS = 2 ** 31 - 1;
const ms = (what: string, min: number) =>
  z
    .number({ error: `must be ${what}` })
    .refine((value) => Number.isFinite(value) && value >= min && value <= MAX_MS, `must be ${what}`);
const attempts = z
  .number({ error: 'must be a whole number of attempts from 1 to 10' })
  .refine((value) => Number.isSafeInteger(value) && value >= 1 && value <= 10, 'must be a whole number of attempts from 1 to 10');

/** Checks a retry policy (or `false`, never retry). */
export const RetryPolicySchema = z.union([
  z.literal(false),
  z
    .object({
      maxAttempts: attempts.optional(),
      backoffMs: ms('a number of milliseconds, 0 or more', 0).optional(),
      maxBackoffMs: ms('a number of milliseconds, 0 or more', 0).optional(),
      attemptTimeoutMs: ms('a number of milliseconds above 0', 1).optional(),
    })
    .strict(),
], { error: 'must be a retry policy { maxAttempts?, backoffMs?, maxBackoffMs?, attemptTimeoutMs? } or false' });

/** Checks a hedging policy (or `false`, never hedge). */
export const HedgePolicySchema = z.union([
  z.literal(false),
  z
    .object({
      delayMs: ms('a number of milliseconds, 0 or more', 0).optional(),
      percentile: z
        .number({ error: 'must be a percentile from 50 to 99.9' })
        .refine((value) => value >= 50 && value <= 99.9, 'must be a percentile from 50 to 99.9')
        .optional(),
      maxAttempts: attempts.optional(),
    })
    .strict(),
], { error: 'must be a hedging policy { delayMs?, percentile?, maxAttempts? } or false' });

/** Checks a circuit-breaker policy (or `false`, no breaker). */
export const CircuitBreakerPolicySchema = z.union([
  z.literal(false),
  z
    .object({
      failureRatio: z
        .number({ error: 'must be a ratio above 0 and at most 1' })
        .refine((value) => value > 0 && value <= 1, 'must be a ratio above 0 and at most 1')
        .optional(),
      minimumAttempts: z
        .number({ error: 'must be a whole number of attempts, 1 or more' })
        .refine((value) => Number.isSafeInteger(value) && value >= 1, 'must be a whole number of attempts, 1 or more')
        .optional(),
      windowMs: ms('a number of milliseconds, 100 or more', 100).optional(),
      openMs: ms('a number of milliseconds above 0', 1).optional(),
    })
    .strict(),
], { error: 'must be a circuit-breaker policy { failureRatio?, minimumAttempts?, windowMs?, openMs? } or false' });

/** Checks a retry budget (or `false`, none). */
export const RetryBudgetPolicySchema = z.union([
  z.literal(false),
  z
    .object({
      ratio: z
        .number({ error: 'must be a ratio from 0 to 1' })
        .refine((value) => value >= 0 && value <= 1, 'must be a ratio from 0 to 1')
        .optional(),
      minRetries: z
        .number({ error: 'must be a whole number of retries, 0 or more' })
        .refine((value) => Number.isSafeInteger(value) && value >= 0, 'must be a whole number of retries, 0 or more')
        .optional(),
    })
    .strict(),
], { error: 'must be a retry budget { ratio?, minRetries? } or false' });

/** `base` with the fields `given` sets; `false` turns retrying off (one attempt). */
export function resolveRetry(base: ResolvedRetry, given: RetryPolicy | false | undefined): ResolvedRetry {
  if (given === undefined) return base;
  if (given === false) return NO_RETRY;
  const resolved = { ...base, ...definedFields(given) };
  return resolved.maxBackoffMs < resolved.backoffMs ? { ...resolved, maxBackoffMs: resolved.backoffMs } : resolved;
}

/** `base` (or the default hedging, when `base` is off) with the fields `given` sets; `false` turns hedging off. */
export function resolveHedge(base: ResolvedHedge | undefined, given: HedgePolicy | false | undefined): ResolvedHedge | undefined {
  if (given === undefined) return base;
  if (given === false) return undefined;
  return { ...(base ?? DEFAULT_CALL_POLICIES.hedge), ...definedFields(given) };
}

/** A retry policy that never retries. */
export const NO_RETRY: ResolvedRetry = Object.freeze({ ...DEFAULT_CALL_POLICIES.retry, maxAttempts: 1 });

/** `given` without its fields set to `undefined`, so that defaults spread under it hold. */
export function definedFields<T extends object>(given: T): Partial<T> {
  return Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/**
 * Checks an operation's `retry` and `hedge` when its contract is defined: the same rules as
 * the kernel's options, and hedging only where repeating is safe.
 */
export function checkOperationPolicies(spec: { retry?: unknown; hedge?: unknown; idempotent?: boolean | undefined }): void {
  const problems: string[] = [];
  for (const [field, schema] of [['retry', RetryPolicySchema], ['hedge', HedgePolicySchema]] as const) {
    const value = spec[field];
    if (value === undefined) continue;
    const checked = schema.safeParse(value);
    if (!checked.success) {
      problems.push(...checked.error.issues.map((issue) => `${[field, ...issue.path].join('.')} ${issue.message}`));
    }
  }
  if (spec.hedge !== undefined && spec.hedge !== false && spec.idempotent !== true) {
    problems.push('hedge needs idempotent: true (hedging sends the same call more than once); declare the operation idempotent or remove hedge');
  }
  if (problems.length > 0) {
    throw new KeelError(KeelErrorCode.INVALID_CONTRACT, `Invalid operation policy: ${problems.join('; ')}.`);
  }
}
