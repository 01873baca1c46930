/**
 * The served side's answers: the {@link Answer} wrappers that end a call's server span and report
 * it to the kernel's observers as it settles, and the TIMEOUT a call gets when its deadline passed
 * before its handler could start (served.ts builds the pipeline that uses them).
 */
import { performance } from 'node:perf_hooks';
import type { Span } from '@opentelemetry/api';
import type { CallContext } from './context.js';
import { KeelErrorCode } from './errors.js';
import { OK_OUTCOME, outcomeOf, type KernelObserver } from './observer.js';
import { endCallSpan } from './tracing.js';
import { RemoteFailure, type Answer } from './transport.js';

/**
 * What a call whose deadline passed before its handler could start is answered: `TIMEOUT`,
 * nothing ran. `queuedIn`: the module whose bulkhead queue it waited in, when it did.
 */
export function expiredFailure(contract: string, operation: string, lateMs: number, context: CallContext, queuedIn?: string): RemoteFailure {
  return new RemoteFailure({
    type: 'keel',
    code: KeelErrorCode.TIMEOUT,
    message:
      queuedIn === undefined
        ? `${contract}.${operation} was not run: its deadline had passed ${Math.round(lateMs)} ms before the callee could start it. ` +
          'Nothing was done; retry with a later deadline. If calls with time to spare get this, synchronise the clocks of the hosts.'
        : `${contract}.${operation} was not run: its deadline passed while it waited for a free slot of module "${queuedIn}" ` +
          '(its bulkhead was at its concurrency limit). Nothing was done; retry after a short backoff, or add instances.',
    correlationId: context.correlationId,
  });
}

/**
 * What a call is answered when its handler's signal (`callSignal()`) aborted at the deadline
 * before the handler settled: `TIMEOUT`, as the caller sees it, never what a handler stopped
 * half-way returned or threw (an `AbortError` would read as INTERNAL). An idempotency key still
 * records what it returned, or a declared error (served.ts, `lateOutcomes`).
 */
export function overranFailure(contract: string, operation: string, context: CallContext): RemoteFailure {
  return new RemoteFailure({
    type: 'keel',
    code: KeelErrorCode.TIMEOUT,
    message:
      `${contract}.${operation} ran past its deadline (its handler's signal aborted); its outcome is unknown. ` +
      'Retry only if the operation is idempotent, or give the call more time.',
    correlationId: context.correlationId,
  });
}

/** An {@link Answer} that ends the call's server span as it settles. */
export class TracedAnswer implements Answer {
  /** Ends the span once, even when a thenable answers and then throws (the answer is then failed too). */
  #settled = false;

  constructor(
    readonly answer: Answer,
    readonly span: Span,
  ) {}

  ok(output: unknown): void {
    if (!this.#settled) {
      this.#settled = true;
      endCallSpan(this.span, 'server', OK_OUTCOME);
    }
    this.answer.ok(output);
  }

  fail(failure: RemoteFailure): void {
    if (!this.#settled) {
      this.#settled = true;
      endCallSpan(this.span, 'server', outcomeOf(failure), failure);
    }
    this.answer.fail(failure);
  }

  watch(controller: AbortController): void {
    this.answer.watch?.(controller);
  }
}

/** An {@link Answer} that reports the call to the kernel's observers as it settles. */
export class ObservedAnswer implements Answer {
  // Plain properties set in the constructor, not private fields: V8 defines each private field
  // through a keyed IC per object (about 150 instructions a call each).
  private readonly started: number;
  private reported: boolean;

  constructor(
    readonly answer: Answer,
    readonly observers: readonly KernelObserver[],
    readonly contract: string,
    readonly operation: string,
    readonly transport: string,
    readonly caller: string,
  ) {
    this.started = performance.now();
    this.reported = false;
  }

  ok(output: unknown): void {
    this.#report(OK_OUTCOME);
    this.answer.ok(output);
  }

  fail(failure: RemoteFailure): void {
    this.#report(outcomeOf(failure));
    this.answer.fail(failure);
  }

  watch(controller: AbortController): void {
    this.answer.watch?.(controller);
  }

  #report(outcome: string): void {
    // Once, even when a thenable answers and then throws (the answer is then failed too).
    if (this.reported) return;
    this.reported = true;
    const { contract, operation, transport, caller } = this;
    const record = { contract, operation, transport, caller, durationMs: performance.now() - this.started, outcome };
    for (const observer of this.observers) observer.callServed?.(record);
  }
}
