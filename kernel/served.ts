/**
 * The callee's side of a module: the answer pipeline of each served module (version check,
 * input validation, call context, output validation, error envelopes, observation). Its events'
 * side is subscription.ts. Transports only move bytes to and from these. A call with an
 * idempotency key runs through served-keyed.ts; a handler that asked for its signal ends through
 * served-signal.ts.
 */
import { AsyncResource } from 'node:async_hooks';
import type { CircuitStatus } from './circuit-breaker.js';
import { majorOf, type AnyContract, type AnyOperation } from './contract.js';
import type { CallContext } from './context.js';
import { KEEL_ROOT_CONTEXT, handlerEntry, withCall, type HandlerScope } from './otel-context.js';
import { keelTracer, startServerSpan, tracesCalls } from './tracing.js';
import { ObservedAnswer, TracedAnswer, expiredFailure } from './served-answers.js';
import { openTransactions } from './module-data.js';
import { ROOT_CONTEXT, trace } from './otel-api.js';
import { toRemoteFailure } from './envelope.js';
import { callLogFields } from './log-fields.js';
import { CallSchema } from './compiled-schema.js';
import { exhaustedFailure, stoppedFailure, withdrawnFailure, type Bulkhead, type WaitingCall } from './bulkhead.js';
import type { IdempotencyStore } from './idempotency.js';
import { keyedRun } from './served-keyed.js';
import { signalledEnds } from './served-signal.js';
import { KeelError, KeelErrorCode, validationError } from './errors.js';
import type { Logger } from './logger.js';
import type { KernelObserver } from './observer.js';
import type { OperationHandler } from './module-handlers.js';
import { forbidden, unauthenticated, validPrincipal, type Principal, type PrincipalSchema } from './principal.js';
import { RemoteFailure, type Answer, type OperationAddress, type ServedModule } from './transport.js';
import { unknownOperationFailure, versionMismatchFailure } from './transport-failures.js';

interface OperationEntry {
  readonly name: string;
  readonly definition: AnyOperation;
  /** The definition's input and output schemas, compiled (compiled-schema.ts). */
  readonly input: CallSchema<AnyOperation['input']>;
  readonly output: CallSchema<AnyOperation['output']>;
  readonly handler: OperationHandler<AnyOperation>;
  /** What its handler runs for, on the context (log lines carry it). */
  readonly scope: HandlerScope;
}

/** A call to serve with its server span active (see `handle`): `run`'s arguments, in one object. */
interface TracedRun {
  readonly address: OperationAddress;
  readonly input: unknown;
  readonly context: CallContext;
  readonly trusted: boolean;
  readonly answer: Answer;
  readonly fresh: boolean;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** What the kernel needs to build the {@link ServedModule} of one module on one transport. */
export interface ServedSource {
  readonly contract: AnyContract;
  readonly handlers: Readonly<Record<string, OperationHandler<AnyOperation>>>;
  readonly logger: Logger;
  /** The transport's name, as observers see it (`local`, `nats`). */
  readonly transport: string;
  /** The kernel's observers: read on each call, so one added later sees later calls. */
  readonly observers: readonly KernelObserver[];
  /** Where the module keeps idempotency keys; without one, keys are ignored. */
  readonly idempotency?: IdempotencyStore | undefined;
  /** The application's principal schema: a principal from a wire is checked against it. */
  readonly principal?: PrincipalSchema | undefined;
  /**
   * The module's bulkhead, shared by its served modules on every transport (the kernel's
   * `bulkhead` option); without one, handler runs are not limited.
   */
  readonly bulkhead?: Bulkhead | undefined;
  /** The serving process's circuit breakers (its calls to its dependencies), for discovery tools. */
  readonly circuits?: (() => readonly CircuitStatus[]) | undefined;
  /** The state of the module's own database (database-health.ts), for discovery tools; absent when it owns none. */
  readonly database?: (() => 'up' | 'down' | undefined) | undefined;
}

/**
 * Builds the {@link ServedModule} of a module: the answer pipeline, the one place a served call
 * is settled on every transport.
 *
 * ```text
 * transport ─▶ handle(address, input, context, trusted, answer)
 *                │ version, operation ──────────────▶ answer.fail(VERSION_MISMATCH | UNKNOWN_OPERATION)
 *                │ principal schema (unless trusted) ▶ answer.fail(UNAUTHENTICATED)
 *                │ auth: a principal ───────────────▶ answer.fail(UNAUTHENTICATED)
 *                │ input schema (unless trusted) ───▶ answer.fail(INVALID_INPUT)
 *                │ auth predicate ──────────────────▶ answer.fail(FORBIDDEN)
 *                │ idempotency key (non-idempotent) ▶ replay the first outcome | fail(KEY_REUSED | KEY_IN_USE)
 *                │ deadline already passed ─────────▶ answer.fail(TIMEOUT), the handler never starts
 *                │ bulkhead: a slot free ───────────▶ run now (the hot path: one comparison)
 *                │   none: queued (FIFO) ───────────▶ run when a slot frees | deadline passes: fail(TIMEOUT)
 *                │                                    | module stopped: fail(UNAVAILABLE); never started
 *                │   queue full ────────────────────▶ answer.fail(RESOURCE_EXHAUSTED), nothing ran
 *                │ handler, in the call context ────▶ throws: answer.fail(declared | INTERNAL)
 *                │   synchronous value: now; promise: when it settles
 *                │ output schema ───────────────────▶ answer.fail(INVALID_OUTPUT)
 *                └──────────────────────────────────▶ answer.ok(output)
 *   observers (metrics, tracing) wrap `answer` when there are any: one length check otherwise.
 * ```
 */
export function createServedModule(source: ServedSource): ServedModule {
  const { contract, handlers, logger, transport, observers, idempotency, principal: principalSchema, bulkhead, circuits, database } = source;
  const entries = new Map<string, OperationEntry>();
  for (const [name, definition] of Object.entries(contract.operations)) {
    const handler = handlers[name];
    if (typeof handler !== 'function') {
      throw new KeelError(KeelErrorCode.INVALID_MODULE, `Module "${contract.name}" has no handler for operation ${name}.`);
    }
    entries.set(name, {
      name,
      definition,
      input: new CallSchema(definition.input),
      output: new CallSchema(definition.output),
      handler,
      scope: Object.freeze({ module: contract.name, operation: name }),
    });
  }
  const major = majorOf(contract.version);
  // The handlers' way in: keel's call context on an otherwise empty async context, with the
  // caller's open transactions carried (module-data.ts): see handlerEntry.
  const enterHandler = handlerEntry(openTransactions);
  const operationNames = [...entries.keys()];

  const lookup = (address: OperationAddress, context: CallContext): OperationEntry | RemoteFailure => {
    // The version first: a caller on another major is told so even when it asks for an
    // operation this major lacks, as over NATS, where the caller learns it from $SRV.INFO.
    if (address.version !== contract.version && majorOf(address.version) !== major) {
      return versionMismatchFailure(address, context, [contract.version]);
    }
    return entries.get(address.operation) ?? unknownOperationFailure(address, context, contract.version, operationNames);
  };

  const failure = (error: unknown, address: OperationAddress, entry: OperationEntry, context: CallContext): RemoteFailure =>
    toRemoteFailure(error, address, entry.definition, context.correlationId, logger, callLogFields(context, { operation: entry.name }));

  const finish = (entry: OperationEntry, result: unknown, context: CallContext, answer: Answer): void => {
    const output = entry.output.safeParse(result);
    if (output.success) {
      answer.ok(output.data);
      return;
    }
    logger.error(
      { ...callLogFields(context, { operation: entry.name }), issues: output.error.issues },
      'handler returned output that breaks its contract',
    );
    answer.fail(
      new RemoteFailure({
        type: 'keel',
        code: KeelErrorCode.INVALID_OUTPUT,
        message:
          `${contract.name}.${entry.name} returned output that breaks its contract (correlation id ${context.correlationId}); ` +
          `this is a bug in the "${contract.name}" module.`,
        correlationId: context.correlationId,
        details: { issues: output.error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message })) },
      }),
    );
  };

  const run = (address: OperationAddress, input: unknown, given: CallContext, trusted: boolean, answer: Answer, fresh: boolean): void => {
    let context = given;
    const entry = lookup(address, context);
    if (entry instanceof RemoteFailure) {
      answer.fail(entry);
      return;
    }
    const auth = entry.definition.auth;
    if (!trusted && context.principal !== undefined) {
      // From a wire: only the application's schema makes it a principal (a client in this process checked it already).
      try {
        context = { ...context, principal: validPrincipal(principalSchema, context.principal, `The call to ${contract.name}.${entry.name}`, context.correlationId) };
      } catch (error) {
        answer.fail(failure(error, address, entry, context));
        return;
      }
    }
    if (auth !== undefined && context.principal === undefined) {
      answer.fail(failure(unauthenticated(contract.name, entry.name, context), address, entry, context));
      return;
    }
    let value = input;
    if (!trusted) {
      const parsed = entry.input.safeParse(input);
      if (!parsed.success) {
        const error = validationError(KeelErrorCode.INVALID_INPUT, 'input', contract.name, entry.name, parsed.error.issues, context.correlationId);
        answer.fail(failure(error, address, entry, context));
        return;
      }
      value = parsed.data;
    }
    if (typeof auth === 'function') {
      let allowed: boolean;
      try {
        allowed = auth(context.principal as Principal, value) === true;
      } catch (error) {
        // A predicate that throws is a bug in the contract: INTERNAL, logged here; the call is refused either way.
        answer.fail(failure(error, address, entry, context));
        return;
      }
      if (!allowed) {
        answer.fail(failure(forbidden(contract.name, entry.name, context), address, entry, context));
        return;
      }
    }
    if (context.idempotencyKey !== undefined && !entry.definition.idempotent && idempotency !== undefined) {
      void once(idempotency, entry, address, value, context, answer);
      return;
    }
    execute(entry, address, value, context, answer, fresh);
  };

  const runTraced = (call: TracedRun): void => run(call.address, call.input, call.context, call.trusted, call.answer, call.fresh);

  const execute = (entry: OperationEntry, address: OperationAddress, value: unknown, context: CallContext, answer: Answer, fresh: boolean): void => {
    // A callee never starts work whose deadline has passed: its caller has stopped waiting, and
    // the outcome would be unknown to it (a restock an hour late must not be applied). `fresh`:
    // the in-process client compared the deadline with the clock just before, in this process,
    // after validating the input.
    if (!fresh) {
      const late = Date.now() - context.deadline;
      if (late >= 0) {
        answer.fail(expiredFailure(contract.name, entry.name, late, context));
        return;
      }
    }
    if (bulkhead === undefined) {
      start(entry, address, value, context, answer);
      return;
    }
    if (bulkhead.enter()) {
      start(entry, address, value, context, answer);
      return;
    }
    // Every slot taken: wait in the queue, or be refused at once when it is full. Off the hot path.
    // A queued call starts from another call's settling, but in the async context it came with
    // (its keel context, the open transactions its handler is given, where a retry starts), not in
    // that of the call whose leaving starts it.
    const resume = new AsyncResource('keel.queued');
    const waiting: WaitingCall = {
      start: () => resume.runInAsyncScope(start, null, entry, address, value, context, answer),
      expired: (lateMs) => answer.fail(expiredFailure(contract.name, entry.name, lateMs, context, bulkhead.module)),
      closed: () => answer.fail(stoppedFailure(contract.name, entry.name, context)),
    };
    const queued = bulkhead.wait(waiting, context.deadline);
    if (queued === undefined) {
      answer.fail(bulkhead.closed ? stoppedFailure(contract.name, entry.name, context) : exhaustedFailure(contract.name, entry.name, bulkhead, context));
      return;
    }
    // A caller that gives up while its call waits takes it out of the queue: it never starts.
    if (answer.watch !== undefined) {
      const gaveUp = new AbortController();
      gaveUp.signal.addEventListener(
        'abort',
        () => {
          if (bulkhead.withdraw(queued)) answer.fail(withdrawnFailure(contract.name, entry.name, context, bulkhead.module));
        },
        { once: true },
      );
      answer.watch(gaveUp);
    }
  };

  // The ends of a handler that asked for its signal: TIMEOUT or CANCELLED once it aborted (served-signal.ts).
  const { lateOutcomes, returned, stopped } = signalledEnds<OperationEntry>({ contract: contract.name, finish, failure });

  /** Runs the handler (holding a bulkhead slot when there is a bulkhead) and settles `answer`. */
  const start = (entry: OperationEntry, address: OperationAddress, value: unknown, context: CallContext, answer: Answer): void => {
    let result: unknown;
    // The slot is freed once, even by a thenable that calls back and then throws from then().
    let left = bulkhead === undefined;
    // With tracing off, nothing of the caller's context is the handler's (as over a wire); with
    // tracing on, the store is the server span's context, or the caller's when in-process spans are off.
    // The answer goes with it: the handler's signal, if it asks for one (call-signal.ts), watches it,
    // until the handler finished (store.answer = undefined below): a signal asked for later by work
    // it left behind must not watch an answer whose call is over, nor stay watched by a NATS
    // callee after the reply.
    const store = withCall(context, entry.scope, keelTracer() === undefined ? ROOT_CONTEXT : undefined, answer);
    try {
      result = enterHandler(store, entry.handler, value, context);
      if (isPromiseLike(result)) {
        result.then(
          (resolved) => {
            try {
              store.answer = undefined;
              if (store.cancellation === undefined) finish(entry, resolved, context, answer);
              else returned(store.cancellation, resolved, entry, context, answer);
            } finally {
              if (!left) {
                left = true;
                bulkhead?.leave();
              }
            }
          },
          (error: unknown) => {
            try {
              store.answer = undefined;
              if (store.cancellation === undefined || !stopped(store.cancellation, error, address, entry, context, answer)) answer.fail(failure(error, address, entry, context));
            } finally {
              if (!left) {
                left = true;
                bulkhead?.leave();
              }
            }
          },
        );
        return;
      }
    } catch (error) {
      // The handler threw, or a thenable's then() did: either way the call failed here.
      try {
        store.answer = undefined;
        if (store.cancellation === undefined || !stopped(store.cancellation, error, address, entry, context, answer)) answer.fail(failure(error, address, entry, context));
      } finally {
        if (!left) {
          left = true;
          bulkhead?.leave();
        }
      }
      return;
    }
    try {
      store.answer = undefined;
      if (store.cancellation === undefined) finish(entry, result, context, answer);
      else returned(store.cancellation, result, entry, context, answer);
    } finally {
      bulkhead?.leave();
    }
  };

  const once = keyedRun<OperationEntry>({ contract: contract.name, logger, lateOutcomes, finish, failure, execute });

  return {
    contract,
    handle(address, input, context, trusted, given, fresh = false): void {
      let answer = given;
      if (observers.length !== 0) answer = new ObservedAnswer(answer, observers, contract.name, address.operation, transport, context.caller);
      const tracer = keelTracer();
      if (tracer === undefined || !tracesCalls(transport)) {
        run(address, input, context, trusted, answer, fresh);
        return;
      }
      const span = startServerSpan(tracer, contract.name, address.operation, transport, context);
      // A handler's context holds nothing of its caller's but what the call carries, in process as
      // over a wire: the served call runs with its server span active, entered as a handler is, on
      // an empty async context (the caller's open transactions carried), not on a copy of the
      // caller's (about 2.5 k instructions on Node 24; docs/performance.md, "Tracing, second round").
      enterHandler(trace.setSpan(KEEL_ROOT_CONTEXT, span), runTraced, { address, input, context, trusted, answer: new TracedAnswer(answer, span), fresh }, undefined);
    },
    dropped(operation, reason): void {
      for (const observer of observers) observer.requestDropped?.({ contract: contract.name, operation, transport, reason });
    },
    circuits: () => circuits?.() ?? [],
    database: () => database?.(),
  };
}
