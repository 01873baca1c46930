/**
 * The subscriber's side of a module: one wrapper per event subscription (payload validation, a
 * fresh copy per subscriber, the principal checked, the handler's context, observation, dead
 * letters). Transports deliver to these; the callee's side of calls is served.ts.
 */
import { performance } from 'node:perf_hooks';
import type { AnyContract, AnyEvent } from './contract.js';
import { CallSchema } from './compiled-schema.js';
import type { Span } from '@opentelemetry/api';
import { ROOT_CONTEXT, trace } from './otel-api.js';
import { handlerEntry, withCall } from './otel-context.js';
import { endGivenBackSpan, endSpan, keelTracer, startConsumerSpan } from './tracing.js';
import { KeelError, KeelErrorCode, validationError } from './errors.js';
import type { Logger } from './logger.js';
import { GIVEN_BACK_OUTCOME, OK_OUTCOME, outcomeOf, type KernelObserver } from './observer.js';
import type { EventContext, EventHandlerFunction } from './module-handlers.js';
import { validPrincipal, type PrincipalSchema } from './principal.js';
import { isDatabaseUnreachable, isGivenBack } from './transport-failures.js';
import type { EventMetadata, EventSubscription, Fanout } from './transport.js';
import { callLogFields } from './log-fields.js';
import { LogThrottle } from './log-throttle.js';

/** What the kernel needs to build one {@link EventSubscription}. */
export interface SubscriptionSource {
  readonly subscriber: string;
  readonly source: AnyContract;
  readonly event: string;
  readonly definition: AnyEvent;
  readonly handler: EventHandlerFunction<AnyEvent>;
  readonly fanout: Fanout;
  readonly maxAttempts: number;
  /** How long the handler gets from each event's delivery: its own `timeoutMs`, else the kernel's `eventTimeoutMs`. */
  readonly timeoutMs: number;
  readonly logger: Logger;
  readonly onDeadLetter: ((failure: DeadLetter) => void) | undefined;
  readonly observers?: readonly KernelObserver[];
  /** The application's principal schema: an event's principal is checked against it (a fresh copy per subscriber). */
  readonly principal?: PrincipalSchema | undefined;
}

/**
 * A durable event given up on after its last attempt.
 *
 * @example
 * ```ts
 * const kernel = createKernel({
 *   modules,
 *   onDeadLetter: ({ subscriber, contract, event, metadata, error }) =>
 *     console.error(`${subscriber} gave up on ${contract}.${event} (${metadata.id}) after ${metadata.attempt} attempts`, error),
 * });
 * ```
 */
export interface DeadLetter {
  readonly subscriber: string;
  readonly contract: string;
  readonly event: string;
  readonly payload: unknown;
  readonly metadata: EventMetadata;
  readonly error: unknown;
}

const RESOLVED: Promise<void> = Promise.resolve();

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** Wraps an event handler: validation (a fresh copy per subscriber), context, error reporting. */
export function createEventSubscription(source: SubscriptionSource): EventSubscription {
  const { subscriber, event, definition, handler, logger } = source;
  const contractName = source.source.name;
  const label = `${contractName}.${event}`;
  const report = (observers: readonly KernelObserver[], attempt: number, started: number, outcome: string): void => {
    const record = { contract: contractName, event, subscriber, attempt, durationMs: performance.now() - started, outcome };
    for (const observer of observers) observer.eventHandled?.(record);
  };
  const handlerScope = Object.freeze({ module: subscriber, event: label });
  // The handler's way in: keel's context on an otherwise empty async context (see handlerEntry).
  const enterHandler = handlerEntry();
  // Compiled on the first event, as a call's schemas are on its first call (compiled-schema.ts).
  const payloadSchema = new CallSchema(definition.payload);
  // Whoever may publish the event may send payloads that break its contract: one line per 10 s
  // for each kind of drop, with how many were left out (a durable one is dead-lettered each time).
  const droppedLogs = { payload: new LogThrottle(), principal: new LogThrottle() };
  const dropped = (kind: keyof typeof droppedLogs, error: KeelError, metadata: EventMetadata, message: string): void => {
    const suppressed = droppedLogs[kind].take();
    if (suppressed < 0) return;
    logger.error(
      { err: error, ...callLogFields(metadata, { event: label, eventId: metadata.id, suppressed }) },
      `${message} (at most one line per 10 s for each subscription and kind; suppressed: how many since the last line)`,
    );
  };
  // A database that cannot be reached fails every event until it answers, each handed again and again: one line per 10 s.
  const unreachableLog = new LogThrottle();
  const failed = (error: unknown, metadata: EventMetadata, started: number): Promise<void> => {
    const observers = source.observers;
    const givenBack = isGivenBack(error);
    if (observers?.length) report(observers, metadata.attempt, started, givenBack ? GIVEN_BACK_OUTCOME : outcomeOf(error));
    if (!givenBack && isDatabaseUnreachable(error)) {
      const suppressed = unreachableLog.take();
      if (suppressed >= 0) {
        logger.warn(
          { ...callLogFields(metadata, { event: label, eventId: metadata.id, attempt: metadata.attempt }), problem: error.message, suppressed },
          `module "${subscriber}" could not reach its database: its events are handled again once it answers, not counted as attempts (at most one line per 10 s; suppressed: how many since the last line)`,
        );
      }
      return Promise.reject(error);
    }
    const fields = { err: error, ...callLogFields(metadata, { event: label, eventId: metadata.id, attempt: metadata.attempt }) };
    if (givenBack) logger.info(fields, `module "${subscriber}" stopped before this event's handler ended, and gave the event back`);
    else logger.warn(fields, `event handler of module "${subscriber}" failed`);
    return Promise.reject(error);
  };
  // Not `async`: a synchronous handler settles without a promise per layer (docs/performance.md,
  // "Event profile"); every failure is still a rejection (`handleEvent` below), logged and reported as before.
  const deliver = (payload: unknown, metadata: EventMetadata, span: Span | undefined): Promise<void> => {
    const parsed = payloadSchema.safeParse(payload);
    if (!parsed.success) {
      const error = validationError(
        KeelErrorCode.INVALID_EVENT,
        'payload',
        contractName,
        event,
        parsed.error.issues,
        metadata.correlationId,
      );
      dropped('payload', error, metadata, 'dropped an event whose payload breaks its contract');
      return Promise.reject(error);
    }
    let principal: EventContext['principal'];
    if (metadata.principal !== undefined) {
      try {
        principal = validPrincipal(source.principal, metadata.principal, `Event ${label} ${metadata.id}`, metadata.correlationId);
      } catch (refused) {
        // A principal that does not match can never be handled: INVALID_EVENT, not retried.
        const error = new KeelError(KeelErrorCode.INVALID_EVENT, (refused as Error).message, {
          correlationId: metadata.correlationId,
          details: (refused as KeelError).details,
        });
        dropped('principal', error, metadata, 'dropped an event whose principal does not match the principal schema');
        return Promise.reject(error);
      }
    }
    // Field by field rather than `{ ...metadata, ... }`: the same keys in the same order, and on
    // the event path the spread cost more than the rest of this function (docs/performance.md, "Event profile").
    const context: EventContext = {
      id: metadata.id,
      correlationId: metadata.correlationId,
      traceparent: metadata.traceparent,
      publisher: metadata.publisher,
      publishedAt: metadata.publishedAt,
      attempt: metadata.attempt,
      principal,
      caller: metadata.publisher,
      deadline: Date.now() + source.timeoutMs,
    };
    const observers = source.observers;
    const started = observers?.length ? performance.now() : 0;
    let result: unknown;
    // The handler's frame: its signal (callSignal()), if it asks for one, aborts at its timeoutMs; its timer goes when the handler ends.
    const scope = withCall(context, handlerScope, ROOT_CONTEXT);
    try {
      result = enterHandler(span === undefined ? scope : trace.setSpan(scope, span), handler, parsed.data, context);
    } catch (error) {
      scope.cancellation?.release();
      return failed(error, metadata, started);
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        () => {
          scope.cancellation?.release();
          if (observers?.length) report(observers, metadata.attempt, started, OK_OUTCOME);
        },
        (error: unknown) => {
          scope.cancellation?.release();
          return failed(error, metadata, started);
        },
      );
    }
    scope.cancellation?.release();
    if (observers?.length) report(observers, metadata.attempt, started, OK_OUTCOME);
    return RESOLVED;
  };
  const handleEvent = (payload: unknown, metadata: EventMetadata, span: Span | undefined): Promise<void> => {
    try {
      return deliver(payload, metadata, span);
    } catch (error) {
      return Promise.reject(error); // e.g. a schema with an async refinement, which safeParse refuses by throwing
    }
  };

  return {
    subscriber,
    contract: contractName,
    version: source.source.version,
    event,
    delivery: definition.delivery,
    fanout: source.fanout,
    maxAttempts: source.maxAttempts,
    handle(payload: unknown, metadata: EventMetadata): Promise<void> {
      const tracer = keelTracer();
      if (tracer === undefined) return handleEvent(payload, metadata, undefined);
      const span = startConsumerSpan(tracer, {
        contract: contractName,
        event,
        subscriber,
        id: metadata.id,
        correlationId: metadata.correlationId,
        traceparent: metadata.traceparent,
        attempt: metadata.attempt,
      });
      return handleEvent(payload, metadata, span).then(
        () => endSpan(span),
        (error: unknown) => {
          if (isGivenBack(error)) endGivenBackSpan(span);
          else endSpan(span, error);
          throw error;
        },
      );
    },
    deadLetter(payload: unknown, metadata: EventMetadata, error: unknown): void {
      logger.error(
        { err: error, ...callLogFields(metadata, { event: label, eventId: metadata.id, attempts: metadata.attempt }) },
        `gave up on a durable event after ${metadata.attempt} attempts; it was dead-lettered`,
      );
      source.onDeadLetter?.({ subscriber, contract: contractName, event, payload, metadata, error });
    },
  };
}
