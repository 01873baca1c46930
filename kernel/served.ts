/**
 * The callee's side of a module: one dispatcher per served module (input validation, version
 * check, call context, output validation, error envelopes) and one wrapper per event
 * subscription. Transports only move bytes to and from these.
 */
import { majorOf, type AnyContract, type AnyEvent, type AnyOperation } from './contract.js';
import { runWithContext, type CallContext } from './context.js';
import { toRemoteFailure } from './envelope.js';
import { KeelError, KeelErrorCode, validationError, type ValidationIssue } from './errors.js';
import type { Logger } from './logger.js';
import { OK_OUTCOME, outcomeOf, type KernelObserver } from './observer.js';
import type { EventContext, EventHandlerFunction, OperationHandler } from './module.js';
import {
  PendingAnswer,
  RemoteFailure,
  type EventMetadata,
  type EventSubscription,
  type Fanout,
  type OperationAddress,
  type ServedModule,
  unknownOperationFailure,
  versionMismatchFailure,
} from './transport.js';

interface OperationEntry {
  readonly name: string;
  readonly definition: AnyOperation;
  readonly handler: OperationHandler<AnyOperation>;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Builds the {@link ServedModule} of a module from its contract and handlers. */
export function createServedModule(
  contract: AnyContract,
  handlers: Readonly<Record<string, OperationHandler<AnyOperation>>>,
  logger: Logger,
): ServedModule {
  const entries = new Map<string, OperationEntry>();
  for (const [name, definition] of Object.entries(contract.operations)) {
    const handler = handlers[name];
    if (typeof handler !== 'function') {
      throw new KeelError(KeelErrorCode.INVALID_MODULE, `Module "${contract.name}" has no handler for operation ${name}.`);
    }
    entries.set(name, { name, definition, handler });
  }
  const major = majorOf(contract.version);
  const operationNames = [...entries.keys()];

  const failInput = (entry: OperationEntry, address: OperationAddress, issues: readonly ValidationIssue[], context: CallContext) =>
    toRemoteFailure(
      validationError(KeelErrorCode.INVALID_INPUT, 'input', contract.name, entry.name, issues, context.correlationId),
      address,
      entry.definition,
      context.correlationId,
      logger,
    );

  const checkOutput = (entry: OperationEntry, result: unknown, context: CallContext): unknown => {
    const output = entry.definition.output.safeParse(result);
    if (output.success) return output.data;
    logger.error(
      { correlationId: context.correlationId, operation: `${contract.name}.${entry.name}`, issues: output.error.issues },
      'handler returned output that breaks its contract',
    );
    throw new RemoteFailure({
      type: 'keel',
      code: KeelErrorCode.INVALID_OUTPUT,
      message:
        `${contract.name}.${entry.name} returned output that breaks its contract (correlation id ${context.correlationId}); ` +
        `this is a bug in the "${contract.name}" module.`,
      correlationId: context.correlationId,
      details: { issues: output.error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message })) },
    });
  };

  const lookup = (address: OperationAddress, context: CallContext): OperationEntry => {
    // The version first: a caller on another major is told so even when it asks for an
    // operation this major lacks, as over NATS, where the caller learns it from $SRV.INFO.
    if (address.version !== contract.version && majorOf(address.version) !== major) {
      throw versionMismatchFailure(address, context, [contract.version]);
    }
    const entry = entries.get(address.operation);
    if (entry === undefined) throw unknownOperationFailure(address, context, contract.version, operationNames);
    return entry;
  };

  const invoke = (address: OperationAddress, input: unknown, context: CallContext, trusted: boolean): unknown => {
    const entry = lookup(address, context);
    let value = input;
    if (!trusted) {
      const parsed = entry.definition.input.safeParse(input);
      if (!parsed.success) throw failInput(entry, address, parsed.error.issues, context);
      value = parsed.data;
    }
    let result: unknown;
    try {
      result = runWithContext(context, () => entry.handler(value, context));
    } catch (error) {
      throw toRemoteFailure(error, address, entry.definition, context.correlationId, logger);
    }
    if (isPromiseLike(result)) {
      return new PendingAnswer(
        result,
        (resolved: unknown) => checkOutput(entry, resolved, context),
        (error: unknown) => toRemoteFailure(error, address, entry.definition, context.correlationId, logger),
      );
    }
    return checkOutput(entry, result, context);
  };

  const dispatch = (address: OperationAddress, input: unknown, context: CallContext, trusted: boolean): Promise<unknown> => {
    let answer: unknown;
    try {
      answer = invoke(address, input, context, trusted);
    } catch (error) {
      return Promise.reject(error);
    }
    if (answer instanceof PendingAnswer) {
      const pending = answer;
      return Promise.resolve(pending.promise).then(pending.finish, (error: unknown) => {
        throw pending.fail(error);
      });
    }
    return Promise.resolve(answer);
  };

  return { contract, dispatch, invoke };
}

/** What the kernel needs to build one {@link EventSubscription}. */
export interface SubscriptionSource {
  readonly subscriber: string;
  readonly source: AnyContract;
  readonly event: string;
  readonly definition: AnyEvent;
  readonly handler: EventHandlerFunction<AnyEvent>;
  readonly fanout: Fanout;
  readonly maxAttempts: number;
  readonly eventTimeoutMs: number;
  readonly logger: Logger;
  readonly onDeadLetter: ((failure: DeadLetter) => void) | undefined;
  readonly observers?: readonly KernelObserver[];
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

/** Wraps an event handler: validation (a fresh copy per subscriber), context, error reporting. */
export function createEventSubscription(source: SubscriptionSource): EventSubscription {
  const { subscriber, event, definition, handler, logger } = source;
  const contractName = source.source.name;
  const label = `${contractName}.${event}`;
  const report = (observers: readonly KernelObserver[], attempt: number, started: number, outcome: string): void => {
    const record = { contract: contractName, event, subscriber, attempt, durationMs: performance.now() - started, outcome };
    for (const observer of observers) observer.eventHandled?.(record);
  };
  return {
    subscriber,
    contract: contractName,
    version: source.source.version,
    event,
    delivery: definition.delivery,
    fanout: source.fanout,
    maxAttempts: source.maxAttempts,
    async handle(payload: unknown, metadata: EventMetadata): Promise<void> {
      const parsed = definition.payload.safeParse(payload);
      if (!parsed.success) {
        const error = validationError(
          KeelErrorCode.INVALID_EVENT,
          'payload',
          contractName,
          event,
          parsed.error.issues,
          metadata.correlationId,
        );
        logger.error({ event: label, eventId: metadata.id, err: error }, 'dropped an event whose payload breaks its contract');
        throw error;
      }
      const context: EventContext = {
        ...metadata,
        caller: metadata.publisher,
        deadline: Date.now() + source.eventTimeoutMs,
      };
      const observers = source.observers;
      const started = observers?.length ? performance.now() : 0;
      try {
        await runWithContext(context, () => handler(parsed.data, context));
        if (observers?.length) report(observers, metadata.attempt, started, OK_OUTCOME);
      } catch (error) {
        if (observers?.length) report(observers, metadata.attempt, started, outcomeOf(error));
        logger.warn(
          { err: error, event: label, eventId: metadata.id, attempt: metadata.attempt, correlationId: metadata.correlationId },
          `event handler of module "${subscriber}" failed`,
        );
        throw error;
      }
    },
    deadLetter(payload: unknown, metadata: EventMetadata, error: unknown): void {
      logger.error(
        { err: error, event: label, eventId: metadata.id, attempts: metadata.attempt, correlationId: metadata.correlationId },
        `gave up on a durable event after ${metadata.attempt} attempts; it was dead-lettered`,
      );
      source.onDeadLetter?.({ subscriber, contract: contractName, event, payload, metadata, error });
    },
  };
}

/**
 * The same served module, reporting every dispatched call to `observers` under `transport`'s
 * name. Costs one length check per call while nobody observes. While observed, a synchronous
 * handler's answer stays synchronous (no promise, so the local transport keeps its fast path),
 * and an asynchronous one is reported when it settles, whether or not its caller still waits.
 */
export function observeServed(served: ServedModule, transport: string, observers: readonly KernelObserver[]): ServedModule {
  const contract = served.contract.name;
  const report = (address: OperationAddress, context: CallContext, started: number, outcome: string): void => {
    const record = {
      contract,
      operation: address.operation,
      transport,
      caller: context.caller,
      durationMs: performance.now() - started,
      outcome,
    };
    for (const observer of observers) observer.callServed?.(record);
  };
  const observedInvoke = (address: OperationAddress, input: unknown, context: CallContext, trusted: boolean): unknown => {
    const started = performance.now();
    let answer: unknown;
    try {
      answer = served.invoke(address, input, context, trusted);
    } catch (error) {
      report(address, context, started, outcomeOf(error));
      throw error;
    }
    if (!(answer instanceof PendingAnswer)) {
      report(address, context, started, OK_OUTCOME);
      return answer;
    }
    const pending = answer;
    const settled = Promise.resolve(pending.promise).then(
      (value) => {
        let output: unknown;
        try {
          output = pending.finish(value);
        } catch (error) {
          report(address, context, started, outcomeOf(error));
          throw error;
        }
        report(address, context, started, OK_OUTCOME);
        return output;
      },
      (error: unknown) => {
        const failure = pending.fail(error);
        report(address, context, started, outcomeOf(failure));
        throw failure;
      },
    );
    return new PendingAnswer(settled, passThrough, asRemoteFailure);
  };
  const invoke = (address: OperationAddress, input: unknown, context: CallContext, trusted: boolean): unknown =>
    observers.length === 0 ? served.invoke(address, input, context, trusted) : observedInvoke(address, input, context, trusted);
  return {
    contract: served.contract,
    invoke,
    dispatch: (address, input, context, trusted) => {
      if (observers.length === 0) return served.dispatch(address, input, context, trusted);
      let answer: unknown;
      try {
        answer = observedInvoke(address, input, context, trusted);
      } catch (error) {
        return Promise.reject(error);
      }
      // observedInvoke's pending answers are already finished: their promise settles with the output or the failure.
      return answer instanceof PendingAnswer ? Promise.resolve(answer.promise) : Promise.resolve(answer);
    },
  };
}

function passThrough(value: unknown): unknown {
  return value;
}

/** A failure of an observed pending answer: already a RemoteFailure (finish and fail produce one). */
function asRemoteFailure(error: unknown): RemoteFailure {
  return error instanceof RemoteFailure
    ? error
    : new RemoteFailure({ type: 'keel', code: KeelErrorCode.INTERNAL, message: `call failed: ${String(error)}` });
}
