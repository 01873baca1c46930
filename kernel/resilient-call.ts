/**
 * Retries and hedging of one client call, inside its one deadline. The kernel's client sends a
 * call's first attempt itself and comes here only when that attempt failed in a way worth
 * another (so a call that succeeds pays nothing), or when the call hedges, has a per-attempt
 * timeout, or its dependency's breaker is not closed. Every attempt goes through the same
 * transport call, so both transports retry and hedge identically.
 */
import { performance } from 'node:perf_hooks';
import type { ResolvedHedge, ResolvedRetry } from './call-policy.js';
import { Admission, type CircuitBreaker } from './circuit-breaker.js';
import { AsyncResource } from 'node:async_hooks';
import { getEventListeners } from 'node:events';
import type { CallContext } from './context.js';
import { DeadlineScheduler, type DeadlineEntry } from './deadline.js';
import { markCallError } from './envelope.js';
import { KeelError, KeelErrorCode, isKeelError } from './errors.js';
import type { KernelObserver, RetryRecord } from './observer.js';
import {
  FAIR_TIME_SHARE,
  UNKNOWN_OUTCOME,
  circuitOpenError,
  cutShort,
  finalFailure,
  healthyOutcome,
  overBudgetError,
  overloadedWaitMs,
  withAttempts,
  worthRetrying,
} from './resilient-failures.js';
import { noteAttempt } from './tracing.js';
import type { OperationAddress } from './transport.js';
import { cancelledError, timeoutError } from './transport-failures.js';

/** One attempt: resolves with the checked output, rejects with the caller-side error; never retries. */
export type SendAttempt = (input: unknown, context: CallContext, signal: AbortSignal | undefined) => Promise<unknown>;

/** The latencies of an operation's recent successful attempts (and of the attempts a hedged call cancelled once settled: the hedge delay they outlasted), for hedging at a percentile. */
export class LatencyWindow {
  readonly #samples = new Float64Array(256);
  #count = 0;
  #next = 0;
  #sinceComputed = 0;
  #cached: number | undefined;

  record(ms: number): void {
    this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % this.#samples.length;
    if (this.#count < this.#samples.length) this.#count++;
    this.#sinceComputed++;
  }

  /** The `percentile` of what was recorded, or undefined before 20 samples; recomputed every 32 samples. */
  value(percentile: number): number | undefined {
    if (this.#count < 20) return undefined;
    if (this.#cached === undefined || this.#sinceComputed >= 32) {
      const sorted = this.#samples.slice(0, this.#count).sort();
      this.#cached = sorted[Math.min(this.#count - 1, Math.floor((percentile / 100) * this.#count))];
      this.#sinceComputed = 0;
    }
    return this.#cached;
  }
}

/** What a {@link ResilientCall} needs of its operation: made once per operation by the client. */
export interface CallPlan {
  readonly address: OperationAddress;
  readonly label: string;
  readonly caller: string;
  readonly transport: string;
  readonly idempotent: boolean;
  readonly send: SendAttempt;
  readonly breaker: CircuitBreaker | undefined;
  /** The time the operation grants a call (its `timeoutMs`, else the caller's default): what a fair attempt has at least half of. */
  readonly ownTimeoutMs: number;
  readonly latencies: LatencyWindow;
  readonly observers: readonly KernelObserver[] | undefined;
}

/**
 * When the calls of this process send their next attempt (a hedge, or a retry after its backoff):
 * one timer for all of them. A `setTimeout` per hedged call cost more than the call itself.
 */
const nextAttempts = new DeadlineScheduler();

/**
 * The `AbortController`s of hedged calls that settled with no attempt out and never aborted: the
 * next hedged call takes one rather than making its own (making one cost more than the call on
 * Node 20; docs/performance.md, "Sixteenth round"). Nothing listens to such a signal any more but
 * its watch (signal-watch.ts), which its attempts left as they settled.
 */
const spareAbandons: AbortController[] = [];
const MAX_SPARE_ABANDONS = 64;

/**
 * One call's attempts after the first, or all of them when the call hedges or times out its
 * attempts: sends, waits, backs off with full jitter, and settles once, with the first answer
 * (hedging) or the last failure.
 */
export class ResilientCall implements DeadlineEntry {
  /** When the next attempt is due, while one is scheduled (see {@link nextAttempts}). */
  deadline = 0;
  deadlineSlot = -1;
  #attempt: number;
  #pending = 0;
  #settled = false;
  #lastError: unknown;
  /** The last attempt failure whose outcome is unknown (it may have run, or its key's earlier request still runs), if any. */
  #unknown: KeelError | undefined;
  /**
   * The async context the next attempt is sent from: the caller's (every AsyncLocalStorage's
   * store), as a timer made there would run it. An `AsyncResource`: `AsyncLocalStorage.snapshot()`
   * cost several times more per call on Node 24.
   */
  #resume: AsyncResource | undefined;
  #onAbort: (() => void) | undefined;
  /**
   * A hedged call's: aborted when the call settles, so that the attempts still out (the losers)
   * are cancelled, down to their handlers' signals (`callSignal()`). Undefined for other calls.
   */
  readonly #abandon: AbortController | undefined;
  /** The signal each attempt is sent with: the caller's, or {@link #abandon}'s when hedging (which follows the caller's). */
  readonly #attemptSignal: AbortSignal | undefined;
  /** A hedged call's listener on its caller's signal, which aborts {@link #abandon} with the caller's reason. */
  #followCaller: (() => void) | undefined;
  /** The call settled with attempts still out and cancelled them (not its caller): their latencies are still recorded. */
  #cancelledLosers = false;
  /** The wait before the last hedge this call sent (ms): what a losing attempt it cancelled is recorded as, at most. */
  #hedgeDelay = Number.POSITIVE_INFINITY;
  #resolve: (value: unknown) => void = () => {};
  #reject: (error: unknown) => void = () => {};
  readonly #keyed: boolean;
  readonly #maxAttempts: number;

  constructor(
    readonly plan: CallPlan,
    readonly input: unknown,
    /** The call's context: its deadline is the call's one deadline. */
    readonly context: CallContext,
    readonly signal: AbortSignal | undefined,
    readonly retry: ResolvedRetry,
    readonly hedge: ResolvedHedge | undefined,
    /** Attempts already made (1 when the client's first attempt failed). */
    attemptsMade: number,
  ) {
    this.#attempt = attemptsMade;
    this.#keyed = context.idempotencyKey !== undefined;
    this.#maxAttempts = hedge === undefined ? retry.maxAttempts : Math.max(hedge.maxAttempts, retry.maxAttempts);
    if (hedge === undefined) {
      this.#abandon = undefined;
      this.#attemptSignal = signal;
    } else {
      // Not AbortSignal.any: its composites, once listened to, are kept by a long-lived source
      // (a gateway connection's signal) on several Node lines (nodejs/node#55351, #64476).
      const abandon = spareAbandons.pop() ?? new AbortController();
      this.#abandon = abandon;
      this.#attemptSignal = abandon.signal;
      if (signal !== undefined && !signal.aborted) {
        this.#followCaller = () => abandon.abort(signal.reason);
        signal.addEventListener('abort', this.#followCaller, { once: true });
      }
    }
  }

  /** Sends the first attempt now: `now` is the clock the client read for the call (a clock read costs tens of ns). */
  start(now: number): Promise<unknown> {
    const promise = this.#promise();
    this.#send(now);
    return promise;
  }

  /** Goes on after the client's own first attempt failed with `error`: a retry after a backoff, or that error. */
  continueAfter(error: unknown): Promise<unknown> {
    const promise = this.#promise();
    this.#failed(error);
    return promise;
  }

  #promise(): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** The next attempt is due (called by {@link nextAttempts}). */
  expire(): void {
    const resume = this.#resume;
    this.#resume = undefined;
    if (resume === undefined) this.#send(Date.now());
    else resume.runInAsyncScope(this.#send, this, Date.now());
  }

  #send(now: number): void {
    if (this.#settled) return;
    const { plan, context } = this;
    if (this.signal?.aborted) return this.#fail(cancelledError(plan.address, context, this.signal.reason));
    if (context.deadline - now < 1) {
      // Attempts still out settle by themselves (TIMEOUT at the deadline, at the latest).
      if (this.#pending === 0) this.#fail(this.#lastError ?? timeoutError(plan.address, context));
      return;
    }
    const breaker = plan.breaker;
    // A retry or a hedge spends the dependency's retry budget, if it has one; over it, none is sent.
    if (this.#attempt > 0 && breaker !== undefined && !breaker.spendRetry(now)) {
      // Marked on what #fail would answer (an earlier unknown outcome, rather than a later "not sent").
      if (this.#pending === 0) this.#fail(overBudgetError(this.#final(this.#lastError), breaker, plan));
      return;
    }
    const admission = breaker === undefined ? Admission.CLOSED : breaker.admit(now);
    if (admission === Admission.REFUSED) {
      if (this.#pending === 0) this.#fail(circuitOpenError(plan, breaker as CircuitBreaker, context, now));
      return;
    }
    const attempt = ++this.#attempt;
    if (attempt > 1) noteAttempt(attempt, this.hedge !== undefined && this.#pending > 0 ? 'hedge' : 'retry');
    if (attempt > 1 && plan.observers !== undefined && plan.observers.length > 0) {
      const record: RetryRecord = {
        contract: plan.address.contract,
        operation: plan.address.operation,
        caller: plan.caller,
        transport: plan.transport,
        attempt,
        reason: this.hedge !== undefined && this.#pending > 0 ? 'hedge' : 'retry',
      };
      for (const observer of plan.observers) {
        try {
          observer.callRetried?.(record);
        } catch {
          // An observer's bug must not stop the attempt (nor leave a breaker's probe unsent).
        }
      }
    }
    const timeout = this.retry.attemptTimeoutMs;
    const deadline = timeout !== undefined && this.hedge === undefined ? Math.min(context.deadline, now + timeout) : context.deadline;
    // The time this attempt was given, against the time its operation's policy would give it.
    const givenMs = deadline - now;
    const fairMs = (timeout !== undefined && this.hedge === undefined ? Math.min(plan.ownTimeoutMs, timeout) : plan.ownTimeoutMs) * FAIR_TIME_SHARE;
    const attemptContext: CallContext = attempt > 1 ? { ...context, deadline, callAttempt: attempt } : deadline === context.deadline ? context : { ...context, deadline };
    this.#pending++;
    const hedge = this.hedge;
    // Only a call hedging at a percentile times its attempts: they fill the window its delay is read from.
    const started = hedge?.percentile === undefined ? -1 : performance.now();
    let sent: Promise<unknown>;
    try {
      sent = plan.send(this.input, attemptContext, this.#attemptSignal);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(
      (output) => {
        this.#pending--;
        if (admission === Admission.PROBE) breaker?.probed(true, Date.now());
        if (started >= 0) plan.latencies.record(performance.now() - started);
        if (this.#settled) return;
        this.#settle();
        this.#resolve(output);
      },
      (error: unknown) => {
        this.#pending--;
        // A loser this call cancelled as it settled took longer than the hedge delay: recorded as
        // that delay, or the window would keep only the attempts faster than it, and the delay would
        // sink call after call. Not as the time it ran: under a frozen instance that time is the
        // delay plus the winner's, and each such sample would raise the delay a little more, until
        // hedges came too late for the deadline (the chaos suite's frozen instance).
        if (started >= 0 && this.#cancelledLosers && isKeelError(error, KeelErrorCode.CANCELLED)) {
          plan.latencies.record(Math.min(performance.now() - started, this.#hedgeDelay));
        }
        if (breaker !== undefined) {
          const healthy = healthyOutcome(error);
          // A probe its caller cancelled, or cut short, proves nothing either way: the next call probes again.
          const unjudged = cutShort(error, givenMs, fairMs);
          if (admission === Admission.PROBE) {
            if (unjudged || isKeelError(error, KeelErrorCode.CANCELLED)) breaker.released();
            else breaker.probed(healthy, Date.now());
          } else if (unjudged) breaker.uncounted(now, Date.now());
          else if (!healthy) breaker.failed(Date.now());
        }
        if (!this.#settled) this.#failed(error);
      },
    );
    if (hedge !== undefined && attempt < hedge.maxAttempts) {
      const delay = (hedge.percentile === undefined ? undefined : plan.latencies.value(hedge.percentile)) ?? 0;
      this.#hedgeDelay = Math.max(hedge.delayMs, delay);
      this.#later(this.#hedgeDelay, now);
    }
  }

  /** An attempt failed (the call is not settled yet). */
  #failed(error: unknown): void {
    this.#lastError = error;
    // IDEMPOTENCY_KEY_IN_USE: an earlier request with this key still runs, and may yet do what this call asks: a later
    // attempt refused as not processed must not end the call saying nothing ran.
    if (isKeelError(error) && (UNKNOWN_OUTCOME.has(error.code) || error.code === KeelErrorCode.IDEMPOTENCY_KEY_IN_USE)) this.#unknown = error;
    if (!worthRetrying(error, this.plan.idempotent, this.#keyed) || this.#attempt >= this.#maxAttempts) {
      // A real answer settles the call; a failure worth retrying waits for a hedge still out.
      if (this.#pending === 0 || !worthRetrying(error, this.plan.idempotent, this.#keyed)) this.#fail(error);
      return;
    }
    const overloaded = isKeelError(error, KeelErrorCode.RESOURCE_EXHAUSTED);
    if (this.#pending > 0) {
      // Hedging: another attempt is out; send the next one now rather than at the hedge delay,
      // unless the callee said it is overloaded: then not before a backoff, nor before the hedge it
      // replaces, and not at all if that passes the deadline (the attempts out decide).
      if (overloaded) return this.#backOffHedge(error);
      this.#cancelNext();
      this.#send(Date.now());
      return;
    }
    // A full bulkhead is overloaded: spread its retries over the longest backoff, not the first.
    const delay = overloaded
      ? overloadedWaitMs(error, this.retry.maxBackoffMs)
      : Math.random() * Math.min(this.retry.maxBackoffMs, this.retry.backoffMs * 2 ** Math.max(0, this.#attempt - 1));
    const now = Date.now();
    if (now + delay >= this.context.deadline - 1) return this.#fail(error);
    this.#cancelNext();
    this.#later(delay, now);
  }

  /** A hedged call's attempt was refused `RESOURCE_EXHAUSTED` while another is out: its next attempt backs off. */
  #backOffHedge(error: KeelError): void {
    const now = Date.now();
    const scheduled = this.#resume === undefined ? now : this.deadline;
    const due = Math.max(now + overloadedWaitMs(error, this.retry.maxBackoffMs), scheduled);
    if (due >= this.context.deadline - 1) return this.#cancelNext();
    this.#later(due - now, now);
  }

  #later(delayMs: number, now: number): void {
    nextAttempts.delete(this);
    this.deadline = now + delayMs;
    this.#resume = new AsyncResource('keel.next-attempt');
    nextAttempts.add(this);
    const signal = this.signal;
    if (signal !== undefined && this.#onAbort === undefined) {
      this.#onAbort = () => {
        if (this.#pending === 0) this.#fail(cancelledError(this.plan.address, this.context, signal.reason));
      };
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  #fail(error: unknown): void {
    if (this.#settled) return;
    this.#settle();
    this.#reject(withAttempts(this.#final(error), this.#attempt));
  }

  /** What the call fails with when `error` is its last: an earlier attempt may have run, and a later "not sent" must not tell the caller nothing ran. */
  #final(error: unknown): unknown {
    return finalFailure(this.#unknown, error);
  }

  /** Forgets the attempt scheduled next, if any. */
  #cancelNext(): void {
    nextAttempts.delete(this);
    this.#resume = undefined;
  }

  #settle(): void {
    this.#settled = true;
    this.#cancelNext();
    if (this.#onAbort !== undefined) this.signal?.removeEventListener('abort', this.#onAbort);
    if (this.#followCaller !== undefined) this.signal?.removeEventListener('abort', this.#followCaller);
    const abandon = this.#abandon;
    if (abandon === undefined || abandon.signal.aborted) return;
    if (this.#pending === 0) {
      // No attempt out, never aborted: nothing aborts it now, so the next hedged call may use it;
      // unless a transport left a listener of its own on it (more than the watch's one).
      if (spareAbandons.length < MAX_SPARE_ABANDONS && getEventListeners(abandon.signal, 'abort').length <= 1) spareAbandons.push(abandon);
      return;
    }
    // A hedged call's attempts still out lost: cancelled, their handlers told (an attempt already settled ignores it).
    this.#cancelledLosers = true;
    abandon.abort(
      markCallError(
        new KeelError(KeelErrorCode.CANCELLED, `${this.plan.label}: another attempt of this hedged call settled it first.`, {
          correlationId: this.context.correlationId,
        }),
      ),
    );
  }
}
