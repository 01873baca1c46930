/**
 * A handler's cancellation signal: `callSignal()` gives the handler of a call an `AbortSignal`
 * that aborts when the call's deadline passes, or when its caller gives up on it (its own
 * signal aborted, an HTTP client that went away, a hedge that another attempt beat). Made the
 * first time a handler asks, never before: a call whose handler does not ask pays nothing.
 */
import type { CallContext } from './context.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { CALL_NODE_KEY, contextStorage, type CallNode } from './otel-context.js';
import type { OperationAddress } from './transport.js';
import { MAX_TIMEOUT_MS } from './timeouts.js';

/** The signal outside any call or event: never aborted. */
const NEVER = new AbortController().signal;

/** What a call's handler is running for, as text: `module.operation`, or the event it handles. */
function labelOf(node: CallNode): string {
  const scope = node.handler;
  if (scope === undefined) return 'the call';
  if (scope.operation !== undefined) return `${scope.module}.${scope.operation}`;
  return `${scope.module}'s handler of ${scope.event ?? 'an event'}`;
}

/** One handler's signal, with the timer of its deadline. */
class Cancellation {
  readonly #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  /** The signal aborted because the deadline passed (not because the caller gave up). */
  timedOut = false;

  constructor(node: CallNode) {
    const context = node.call as CallContext;
    const controller = this.#controller;
    const expired = (): void => {
      this.#timer = undefined;
      if (!controller.signal.aborted) this.timedOut = true;
      controller.abort(
        new KeelError(
          KeelErrorCode.TIMEOUT,
          `${labelOf(node)}: the call's deadline passed, and its caller no longer waits for the answer. Stop the work; what it returns is not read.`,
          { correlationId: context.correlationId },
        ),
      );
    };
    // setTimeout fires at once beyond MAX_TIMEOUT_MS: a deadline further away (a wire caller's, or
    // the longest timeout read on a clock a little behind) waits in steps.
    const arm = (): void => {
      const leftMs = context.deadline - Date.now();
      if (!(leftMs > 0)) return expired();
      this.#timer = setTimeout(arm, Math.min(leftMs, MAX_TIMEOUT_MS));
      this.#timer.unref();
    };
    arm();
    // The served call's transport aborts it too when the caller gives up first.
    if (!controller.signal.aborted) node.answer?.watch?.(controller);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The handler finished: its deadline's timer goes. */
  release(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The kernel gave up on the handler (its time ran out): abort now, with `reason`, unless aborted already. */
  abort(reason: KeelError): void {
    this.release();
    if (this.#controller.signal.aborted) return;
    this.timedOut = true;
    this.#controller.abort(reason);
  }
}

/**
 * The cancellation signal of the call (or event) being handled: it aborts when the call's
 * deadline passes (reason: a `KeelError` with code `TIMEOUT`), or when its caller gives up on it
 * first (reason: `CANCELLED`): the caller's own `signal` aborted, the HTTP client went away, or
 * another attempt of a hedged call answered first. In one process and over NATS alike. Pass it to
 * what accepts one (`fetch`, a database query, a timer), or check `signal.aborted` between steps:
 * the caller no longer reads what the handler returns. Outside any handler it never aborts.
 *
 * Made the first time a handler asks for it: a handler that never does costs nothing. Over NATS
 * the caller's cancellation is a message to the module's instances (docs/wire-protocol.md,
 * "Cancelling a call"): it reaches the handler unless the handler finished first.
 *
 * @example
 * ```ts
 * import { callSignal } from 'keel';
 *
 * search: async ({ query }) => {
 *   const response = await fetch(`https://search.example.com/?q=${encodeURIComponent(query)}`, { signal: callSignal() });
 *   return { hits: await response.json() };
 * },
 * ```
 */
export function callSignal(): AbortSignal {
  const node = contextStorage.getStore()?.getValue(CALL_NODE_KEY) as CallNode | undefined;
  return node === undefined ? NEVER : cancellationOf(node).signal;
}

/** The handler's {@link Cancellation}, made the first time it is asked for. */
function cancellationOf(node: CallNode): NonNullable<CallNode['cancellation']> {
  return (node.cancellation ??= new Cancellation(node));
}

/**
 * The reason a transport aborts a running handler's signal with when the handler's caller gave
 * up on the call (`why`: what happened, for the message), for `Answer.watch`.
 *
 * @example
 * ```ts
 * // in a wire transport, on the caller's cancellation of a request being handled
 * controller.abort(callAbandoned(address, context, 'its caller cancelled it'));
 * ```
 */
export function callAbandoned(address: OperationAddress, context: CallContext, why: string, cause?: unknown): KeelError {
  return new KeelError(
    KeelErrorCode.CANCELLED,
    `${address.contract}.${address.operation}: ${why}, so nobody reads its answer. Stop the work; what the handler returns is dropped.`,
    { correlationId: context.correlationId, cause },
  );
}

/**
 * Aborts the signal of the handler running in this async context with `reason` (a `TIMEOUT`),
 * made now if the handler has not asked for it yet, so that it is aborted when it does: for the
 * kernel, when it gives up on a handler still running (kernel/inbox.ts), since the handler's own
 * release after that would otherwise clear the deadline's timer before it fires.
 */
export function abortCallSignal(reason: KeelError): void {
  const node = contextStorage.getStore()?.getValue(CALL_NODE_KEY) as CallNode | undefined;
  if (node !== undefined) cancellationOf(node).abort(reason);
}

/** After a handler finished: the timer of its signal's deadline, if it asked for one, goes. */
export function releaseSignal(node: CallNode): void {
  node.cancellation?.release();
}
