/**
 * Typed clients, built at runtime from a contract. Each call validates its input, computes its
 * deadline (never beyond the surrounding call's), carries the call context, and rebuilds
 * errors by code. Everything per operation is computed once, when the client is built.
 */
import { outgoingTraceparent } from './tracing.js';
import type { AnyContract, AnyOperation } from './contract.js';
import type { OperationInput, OperationOutput } from './contract-inference.js';
import { observeCall, traceCall } from './call-wrappers.js';
import { refusedCallOptions, refusedContextOption, refusedIdempotencyKey, refusedPolicyOption } from './call-option-checks.js';
import { DEFAULT_TIMEOUT_MS } from './timeouts.js';
import { EXTERNAL_CALLER, currentContext, newCorrelationId, type CallContext } from './context.js';
import { fromErrorEnvelope, markCallError } from './envelope.js';
import type { AnyErrorClass } from './declared-errors.js';
import { KeelError, KeelErrorCode, issueSummary, plainIssues, validationError } from './errors.js';
import type { KernelObserver } from './observer.js';
import { RemoteFailure, type OperationAddress, type Transport } from './transport.js';
import { directCaller } from './local.js';
import { CallSchema } from './compiled-schema.js';
import { validPrincipal, type Principal, type PrincipalSchema } from './principal.js';
import {
  DEFAULT_CALL_POLICIES,
  resolveHedge,
  resolveRetry,
  type HedgePolicy,
  type ResolvedHedge,
  type ResolvedRetry,
  type RetryPolicy,
} from './call-policy.js';
import type { CircuitBreakers } from './circuit-breaker.js';
import { LatencyWindow, ResilientCall, type CallPlan, type SendAttempt } from './resilient-call.js';
import { FAIR_TIME_SHARE, healthyOutcome, worthRetrying } from './resilient-failures.js';

/**
 * Options of one call. An option not listed here (a misspelt `timeout`, say) is refused with
 * `INVALID_INPUT` naming it before the call is made: TypeScript refuses it at compile time, and
 * this check catches it in plain JavaScript, where it would otherwise be ignored.
 *
 * @example
 * ```ts
 * const controller = new AbortController();
 * const order = await kernel.client(orders).getOrder({ orderId }, { timeoutMs: 2_000, signal: controller.signal });
 * ```
 */
export interface CallOptions {
  /** Deadline for this call in milliseconds; capped by the surrounding call's remaining time. */
  readonly timeoutMs?: number;
  /** Aborts the call with `CANCELLED`. */
  readonly signal?: AbortSignal;
  /**
   * Correlation id to use when the call starts a new context (ignored inside a handler): 1 to
   * 128 visible ASCII characters, so that every transport carries it unchanged; another value
   * is refused with `INVALID_INPUT` before the call is made.
   */
  readonly correlationId?: string;
  /**
   * W3C traceparent to use when the call starts a new context (ignored inside a handler); a
   * malformed one is refused with `INVALID_INPUT` before the call is made.
   */
  readonly traceparent?: string;
  /**
   * Makes a non-idempotent operation run once for this key: a retry with the same key and input
   * answers with the first outcome, without running again (inside a handler too: pass the key
   * your own caller gave, or an id of yours, such as the order id). 1 to 255 visible ASCII
   * characters; another value is refused with `INVALID_INPUT`. Ignored by idempotent operations.
   */
  readonly idempotencyKey?: string;
  /**
   * Who the call is made for, when it starts a new context (ignored inside a handler, whose
   * calls carry the principal of the call or event being handled). Validated against the
   * kernel's `principal` schema; one that does not match is refused with `UNAUTHENTICATED`
   * before the call is made. The HTTP gateway passes what its `authenticate` hook returned.
   */
  readonly principal?: Principal;
  /**
   * This call's retry policy, over the operation's and the kernel's (`false`: one attempt
   * only). Retries stay inside the call's deadline, and only failures that prove the request
   * was not processed are retried, or, for an idempotent operation or a call with an
   * `idempotencyKey`, failures whose outcome is unknown.
   */
  readonly retry?: RetryPolicy | false;
  /** This call's hedging, over the operation's (`false`: none). Only for idempotent operations. */
  readonly hedge?: HedgePolicy | false;
}

/**
 * A typed client of contract `C`: one async method per operation.
 *
 * @example
 * ```ts
 * import type { Client } from 'keel';
 *
 * const shop: Client<typeof orders> = kernel.client(orders);
 * const order = await shop.getOrder({ orderId: 'o-1' });
 * ```
 */
export type Client<C extends AnyContract> = {
  readonly [K in keyof C['operations']]: (
    input: OperationInput<C['operations'][K]>,
    options?: CallOptions,
  ) => Promise<OperationOutput<C['operations'][K]>>;
};

/**
 * Client defaults.
 *
 * @example
 * ```ts
 * const options: ClientOptions = { caller: 'orders', defaultTimeoutMs: 5_000 };
 * const products = createClient(catalog, transport, options);
 * ```
 */
export interface ClientOptions {
  /** Module name of the caller, or `external`. */
  readonly caller?: string;
  /** Deadline of calls whose operation sets none. */
  readonly defaultTimeoutMs: number;
  /** Observers told about every finished call (a live array: the kernel adds to it). */
  readonly observers?: readonly KernelObserver[];
  /** The application's principal schema, which checks a `principal` call option (the kernel's `principal` option). */
  readonly principal?: PrincipalSchema | undefined;
  /** Retry policy of operations that declare none (default {@link DEFAULT_CALL_POLICIES}`.retry`; `false`: never retry). */
  readonly retry?: RetryPolicy | false;
  /** Hedging of idempotent operations that declare none (default: none). */
  readonly hedge?: HedgePolicy | false;
  /** The circuit breakers of the calling process, one per dependency, shared by its clients (the kernel passes its own). Default: none. */
  readonly circuitBreakers?: CircuitBreakers;
}

/**
 * Builds a client of `contract` that calls through `transport`. The kernel builds these for
 * you (`get(contract)` in a module, `kernel.client(contract)` outside); adapters and tests
 * may build their own.
 *
 * @example
 * ```ts
 * const catalogClient = createClient(catalog, transport, { caller: 'orders', defaultTimeoutMs: 5000 });
 * const product = await catalogClient.getProduct({ sku: 'KB-001' });
 * ```
 */
export function createClient<C extends AnyContract>(
  contract: C,
  transport: Transport,
  options: ClientOptions = { defaultTimeoutMs: DEFAULT_TIMEOUT_MS },
): Client<C> {
  const caller = options.caller ?? EXTERNAL_CALLER;
  const client: Record<string, unknown> = {};
  const retry = resolveRetry(DEFAULT_CALL_POLICIES.retry, options.retry);
  const hedge = resolveHedge(undefined, options.hedge);
  for (const [name, definition] of Object.entries(contract.operations)) {
    const policies: CallPolicies = {
      retry: resolveRetry(retry, definition.retry),
      hedge: definition.idempotent ? resolveHedge(hedge, definition.hedge) : undefined,
      breakers: options.circuitBreakers,
      observers: options.observers,
    };
    const call = makeCall(contract, name, definition, transport, caller, options.defaultTimeoutMs, options.principal, policies);
    const observed = options.observers ? observeCall(call, contract.name, name, transport.name, caller, options.observers) : call;
    client[name] = traceCall(observed, contract.name, name, transport.name, caller);
  }
  return Object.freeze(client) as Client<C>;
}

/** An operation's recovery policies, decided when its client is built. */
interface CallPolicies {
  readonly retry: ResolvedRetry;
  readonly hedge: ResolvedHedge | undefined;
  readonly breakers: CircuitBreakers | undefined;
  readonly observers: readonly KernelObserver[] | undefined;
}

function makeCall(
  contract: AnyContract,
  name: string,
  definition: AnyOperation,
  transport: Transport,
  caller: string,
  defaultTimeoutMs: number,
  principalSchema: PrincipalSchema | undefined,
  policies: CallPolicies,
): (input: unknown, options?: CallOptions) => Promise<unknown> {
  const address: OperationAddress = Object.freeze({ contract: contract.name, version: contract.version, operation: name });
  const errorsByCode = new Map<string, AnyErrorClass>(definition.errors.map((error) => [error.code, error]));
  const operationTimeout = definition.timeoutMs ?? defaultTimeoutMs;
  const inputSchema = new CallSchema(definition.input);
  const outputSchema = new CallSchema(definition.output);
  const validateOutput = !transport.inProcess;
  const label = `${contract.name}.${name}`;

  const rebuild = (error: unknown, context: CallContext): Error => {
    if (error instanceof RemoteFailure) return markCallError(fromErrorEnvelope(error.envelope, errorsByCode));
    if (error instanceof Error) return markCallError(error);
    return markCallError(
      new KeelError(KeelErrorCode.INTERNAL, `${label} failed: ${String(error)}`, { correlationId: context.correlationId }),
    );
  };
  const direct = directCaller(transport);
  const { retry, hedge } = policies;
  const breaker = policies.breakers?.of(contract.name);
  const idempotent = definition.idempotent;
  /** Calls that do not start on the fast path: hedged, or timing out their attempts. */
  const alwaysPlanned = hedge !== undefined || retry.attemptTimeoutMs !== undefined;
  /** A call given less time than this was cut short by its caller: its TIMEOUT is not the breaker's (resilient-call.ts judges it). */
  const fairMs = operationTimeout * FAIR_TIME_SHARE;

  const checkOutput = (output: unknown, context: CallContext): unknown => {
    const checked = outputSchema.safeParse(output);
    if (checked.success) return checked.data;
    throw markCallError(new KeelError(
      KeelErrorCode.VERSION_MISMATCH,
      `${label} answered with output this caller's contract does not accept (${issueSummary(checked.error.issues)}). ` +
        'Caller and callee disagree on the contract; deploy matching versions.',
      { correlationId: context.correlationId, details: { issues: plainIssues(checked.error.issues) } },
    ));
  };

  /** One attempt, no retry: what every attempt a {@link ResilientCall} makes goes through. */
  const send: SendAttempt = direct
    ? (input, context, signal) => direct(address, input, context, signal, rebuild, false)
    : (input, context, signal) => {
        let pending: Promise<unknown>;
        try {
          pending = transport.call(address, input, context, signal ? { signal } : undefined);
        } catch (error) {
          return Promise.reject(rebuild(error, context));
        }
        return pending.then(
          validateOutput ? (output) => checkOutput(output, context) : undefined,
          (error: unknown) => {
            throw rebuild(error, context);
          },
        );
      };
  const plan: CallPlan = {
    address,
    label,
    caller,
    transport: transport.name,
    idempotent,
    send,
    breaker,
    ownTimeoutMs: operationTimeout,
    latencies: new LatencyWindow(),
    observers: policies.observers,
  };
  /**
   * The failure of a call's first attempt made on the fast path: the caller's error, or the
   * retry that it is worth (a promise). Counted by the breaker here, since the fast path has
   * no hook for it.
   */
  const recover = (error: unknown, context: CallContext, input: unknown, signal: AbortSignal | undefined): unknown => {
    const rebuilt = rebuild(error, context);
    if (breaker !== undefined && !healthyOutcome(rebuilt)) breaker.failed(Date.now());
    if (retry.maxAttempts < 2 || !worthRetrying(rebuilt, idempotent, context.idempotencyKey !== undefined)) return rebuilt;
    return new ResilientCall(plan, input, context, signal, retry, undefined, 1).continueAfter(rebuilt);
  };

  // Not an async function: an in-process call to a synchronous handler costs two promises.
  return (input: unknown, options?: CallOptions): Promise<unknown> => {
    const parent = currentContext();
    if (options !== undefined) {
      const refused = refusedCallOptions(options, label);
      if (refused !== undefined) return Promise.reject(markCallError(refused));
    }
    const timeoutMs = options?.timeoutMs;
    const refused = (parent === undefined ? refusedContextOption(options, label) : undefined) ?? refusedIdempotencyKey(options, label);
    if (refused !== undefined) return Promise.reject(markCallError(refused));
    const idempotencyKey = options?.idempotencyKey;
    let principal: Principal | undefined;
    if (parent !== undefined) principal = parent.principal;
    else if (options?.principal !== undefined) {
      try {
        principal = validPrincipal(principalSchema, options.principal, `The call to ${label}`, options.correlationId);
      } catch (error) {
        return Promise.reject(markCallError(error));
      }
    }
    const correlationId = parent === undefined ? (options?.correlationId ?? newCorrelationId()) : parent.correlationId;
    const parsed = inputSchema.safeParse(input);
    if (!parsed.success) {
      return Promise.reject(
        markCallError(validationError(KeelErrorCode.INVALID_INPUT, 'input', contract.name, name, parsed.error.issues, correlationId)),
      );
    }
    // The call's one clock read, after validating the input (which can take milliseconds for a
    // large input, or on a schema's first use): the deadline check below is then of the instant
    // the call is handed on, and the in-process served module trusts it (`fresh`) rather than
    // reading the clock again. A call's own timeout counts from here; a parent's deadline that
    // passed during validation refuses the call, its handler never started.
    const now = Date.now();
    let deadline = now + (timeoutMs ?? operationTimeout);
    if (parent !== undefined && parent.deadline < deadline) deadline = parent.deadline;
    const context: CallContext =
      parent === undefined
        ? { correlationId, traceparent: outgoingTraceparent(options?.traceparent), caller, deadline, idempotencyKey, principal }
        : { correlationId, traceparent: outgoingTraceparent(parent.traceparent), caller, deadline, idempotencyKey, principal };
    if (deadline <= now) {
      return Promise.reject(
        markCallError(
          new KeelError(KeelErrorCode.TIMEOUT, `${label} was not called: the surrounding call's deadline has already passed.`, {
            correlationId,
          }),
        ),
      );
    }
    const signal = options?.signal;
    if (
      alwaysPlanned ||
      options?.retry !== undefined ||
      options?.hedge !== undefined ||
      (breaker !== undefined && (breaker.state !== 'closed' || deadline - now < fairMs))
    ) {
      return planned(parsed.data, context, options, now);
    }
    breaker?.admit(now);
    // The in-process transport settles the call and rebuilds its failure itself: no promise of ours.
    if (direct !== undefined) return direct(address, parsed.data, context, signal, recover, true);
    let pending: Promise<unknown>;
    try {
      pending = transport.call(address, parsed.data, context, signal ? { signal } : undefined);
    } catch (error) {
      return rejectedOrRetried(recover(error, context, parsed.data, signal));
    }
    return pending.then(
      validateOutput ? (output) => checkOutput(output, context) : undefined,
      (error: unknown) => rejectedOrRetried(recover(error, context, parsed.data, signal)),
    );
  };

  /** A call made by a {@link ResilientCall} from its first attempt, with this call's policy overrides. */
  function planned(input: unknown, context: CallContext, options: CallOptions | undefined, now: number): Promise<unknown> {
    let callRetry = retry;
    let callHedge = hedge;
    if (options?.retry !== undefined || options?.hedge !== undefined) {
      const refused = refusedPolicyOption(options, label, idempotent);
      if (refused !== undefined) return Promise.reject(markCallError(refused));
      callRetry = resolveRetry(retry, options.retry);
      callHedge = resolveHedge(hedge, options.hedge);
    }
    return new ResilientCall(plan, input, context, options?.signal, callRetry, callHedge, 0).start(now);
  }
}

/** A failure as a rejected promise, or the retry made of it. */
function rejectedOrRetried(recovered: unknown): Promise<unknown> {
  return recovered instanceof Promise ? recovered : Promise.reject(recovered);
}
