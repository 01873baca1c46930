/**
 * What a failed attempt of a client call says to the resilience around it (resilient-call.ts and
 * the client's fast path): whether the dependency looked unwell to its circuit breaker, whether
 * the call may be sent again, and the errors made of a call's last failure (breaker open, retry
 * budget spent, several attempts made).
 */
import type { CircuitBreaker } from './circuit-breaker.js';
import type { CallContext } from './context.js';
import { markCallError } from './envelope.js';
import { KeelError, KeelErrorCode, isKeelError } from './errors.js';
import type { CallPlan } from './resilient-call.js';

/** Failures after which a dependency looks unwell to its circuit breaker. */
const UNHEALTHY: ReadonlySet<string> = new Set([
  KeelErrorCode.TIMEOUT,
  KeelErrorCode.UNAVAILABLE,
  KeelErrorCode.INTERRUPTED,
  KeelErrorCode.RESOURCE_EXHAUSTED,
]);

/** Failures after which the request may have been processed. */
export const UNKNOWN_OUTCOME: ReadonlySet<string> = new Set([KeelErrorCode.TIMEOUT, KeelErrorCode.INTERRUPTED]);

/** Failures that prove the request was not processed. */
export const NOT_PROCESSED: ReadonlySet<string> = new Set([KeelErrorCode.NO_RESPONDERS, KeelErrorCode.UNAVAILABLE, KeelErrorCode.RESOURCE_EXHAUSTED]);

/**
 * True when a transport refused to send the attempt (`details.sent === false`: a NATS permission
 * refused, `INVALID_CONFIG`, never retried). Nothing ran for that attempt, as with
 * {@link NOT_PROCESSED}; unlike those, it also says what to fix.
 */
export function refusedUnsent(error: KeelError): boolean {
  return error.details?.['sent'] === false;
}

/**
 * What a call whose attempt `unknown` may have run ends with when `last` is its last failure:
 * the unknown outcome, if `last` proves nothing ran (not processed, or not sent; the latter's
 * message joins it, since it says what to fix); otherwise `last`, which a handler gave.
 */
export function finalFailure(unknown: KeelError | undefined, last: unknown): unknown {
  if (unknown === undefined || !isKeelError(last)) return last;
  if (NOT_PROCESSED.has(last.code)) return unknown;
  if (!refusedUnsent(last)) return last;
  return markCallError(
    new KeelError(unknown.code, `${sentence(unknown.message)} A later attempt was not sent: ${last.message}`, {
      correlationId: unknown.correlationId,
      details: unknown.details,
      cause: unknown.cause,
    }),
  );
}

/** True when `error` says the dependency answered or was reachable: anything but an unwell failure. */
export function healthyOutcome(error: unknown): boolean {
  return !(isKeelError(error) && UNHEALTHY.has(error.code) && error.details?.['circuit'] !== 'open');
}

/**
 * The share of its operation's time an attempt must be given for its `TIMEOUT` to count against
 * the dependency's breaker. A caller that cuts a call short (a `timeoutMs` below the operation's,
 * a parent's deadline nearly spent, a gateway client's timeout header) learns only that the
 * callee was slower than it asked; that must not open the breaker for every other caller.
 */
export const FAIR_TIME_SHARE = 0.5;

/**
 * True when `error` ends an attempt that had less than a fair time (`givenMs` below `fairMs`)
 * with `TIMEOUT`: the breaker holds it neither for nor against the dependency.
 */
export function cutShort(error: unknown, givenMs: number, fairMs: number): boolean {
  return givenMs < fairMs && isKeelError(error, KeelErrorCode.TIMEOUT);
}

/**
 * How long a call whose attempt was refused `RESOURCE_EXHAUSTED` waits before its next attempt:
 * a full-jitter draw below `maxBackoffMs` (the callee is overloaded: its retries spread over the
 * longest backoff, not the first), and never less than the refusal's `details.retryAfterMs`, when
 * it gives one.
 */
export function overloadedWaitMs(error: KeelError, maxBackoffMs: number): number {
  const hint = error.details?.['retryAfterMs'];
  const drawn = Math.random() * maxBackoffMs;
  return typeof hint === 'number' && Number.isFinite(hint) && hint > drawn ? hint : drawn;
}

/**
 * True when a call that failed with `error` may be sent again: the request was certainly not
 * processed, or its outcome is unknown and repeating it is safe (`repeatable`: an idempotent
 * operation; `keyed`: a call with an idempotency key).
 */
export function worthRetrying(error: unknown, repeatable: boolean, keyed: boolean): boolean {
  if (!isKeelError(error)) return false;
  switch (error.code) {
    case KeelErrorCode.NO_RESPONDERS:
    case KeelErrorCode.RESOURCE_EXHAUSTED:
      return true;
    case KeelErrorCode.UNAVAILABLE:
      return error.details?.['circuit'] !== 'open';
    case KeelErrorCode.TIMEOUT:
    case KeelErrorCode.INTERRUPTED:
      // The callee stores a keyed call's outcome: sent again, it answers with it rather than running twice.
      return repeatable || keyed;
    case KeelErrorCode.IDEMPOTENCY_KEY_IN_USE:
      // Our own earlier attempt still runs under this key: its outcome is what a retry answers.
      return keyed;
    default:
      return false;
  }
}

/**
 * The error a call gets at once while its dependency's breaker is open: `UNAVAILABLE`, not
 * sent, with `details.circuit` `'open'` and `details.retryAfterMs`.
 */
export function circuitOpenError(plan: CallPlan, breaker: CircuitBreaker, context: CallContext, now: number): KeelError {
  const retryAfterMs = breaker.retryAfterMs(now);
  return markCallError(
    new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `${plan.label} was not sent: the circuit breaker for "${breaker.dependency}" is open, because most recent calls to it failed ` +
        `(timeouts or unavailable). It lets one call through in ${retryAfterMs} ms. Nothing was delivered: retry later, ` +
        'and check the health of that module (keel status).',
      { correlationId: context.correlationId, details: { circuit: 'open', dependency: breaker.dependency, retryAfterMs } },
    ),
  );
}

/**
 * The last failure of a call whose retry the dependency's retry budget refused: the same error,
 * saying so in its message and `details.retryBudget` (`'spent'`).
 */
export function overBudgetError(last: unknown, breaker: CircuitBreaker, plan: CallPlan): unknown {
  const budget = breaker.budget;
  if (!(last instanceof KeelError) || budget === undefined) return last;
  return markCallError(
    new KeelError(
      last.code,
      `${sentence(last.message)} Not sent again: the retries to "${breaker.dependency}" are over its retry budget ` +
        `(${Math.round(budget.ratio * 1000) / 10} % of its attempts, plus ${budget.minRetries}, in ${budget.windowMs} ms), ` +
        `because many calls to it fail: check its health (keel status), then call ${plan.label} again.`,
      { correlationId: last.correlationId, details: { ...last.details, retryBudget: 'spent' }, cause: last.cause },
    ),
  );
}

/** `message` ended as a sentence, so that another can follow it: a handler's own message may lack the stop. */
function sentence(message: string): string {
  return /[.!?]$/.test(message) ? message : `${message}.`;
}

/** A framework error of a call that made several attempts says how many, in its message and `details.attempts`. */
export function withAttempts(error: unknown, attempts: number): unknown {
  if (attempts < 2 || !(error instanceof KeelError) || error.details?.['circuit'] === 'open') return error;
  return markCallError(
    new KeelError(error.code, `${error.message} (${attempts} attempts)`, {
      correlationId: error.correlationId,
      details: { ...error.details, attempts },
      cause: error.cause,
    }),
  );
}
