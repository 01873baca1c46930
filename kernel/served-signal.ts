/**
 * How a served call is answered when its handler asked for its signal (call-signal.ts) and
 * ends: after the signal aborted at the deadline, TIMEOUT (what its caller sees anyway), with
 * what the handler reached kept for an idempotency key (served-keyed.ts); after its caller gave
 * up, the signal's CANCELLED. served.ts's pipeline comes here only for such handlers.
 */
import type { AnyOperation } from './contract.js';
import type { CallContext } from './context.js';
import type { CallSchema } from './compiled-schema.js';
import { ContractError } from './declared-errors.js';
import type { StoredOutcome } from './idempotency.js';
import type { CallNode } from './otel-context.js';
import { overranFailure } from './served-answers.js';
import type { RemoteFailure, Answer, OperationAddress } from './transport.js';

/** What a served call's handler entry holds that its signal's ends read (served.ts's Entry). */
export interface SignalledEntry {
  readonly name: string;
  readonly definition: AnyOperation;
  readonly output: CallSchema<AnyOperation['output']>;
}

/** What the ends of a handler that asked for its signal need of their served module's pipeline (served.ts). */
export interface SignalledPipeline<Entry extends SignalledEntry> {
  /** The contract's name, for messages. */
  readonly contract: string;
  /** Checks a handler's result against the output schema and settles `answer`. */
  readonly finish: (entry: Entry, result: unknown, context: CallContext, answer: Answer) => void;
  /** The failure an error becomes on the wire. */
  readonly failure: (error: unknown, address: OperationAddress, entry: Entry, context: CallContext) => RemoteFailure;
}

/**
 * The ends of the handlers of a served module that asked for their signal: `returned` and
 * `stopped`, with the `lateOutcomes` that an idempotency key records (see `keyedRun`).
 *
 * @example
 * ```ts
 * const { lateOutcomes, returned, stopped } = signalledEnds({ contract: 'orders', finish, failure });
 * if (store.cancellation !== undefined) returned(store.cancellation, result, entry, context, answer);
 * ```
 */
export function signalledEnds<Entry extends SignalledEntry>(pipeline: SignalledPipeline<Entry>) {
  const { contract, finish, failure } = pipeline;

  /**
   * A call answered TIMEOUT because its handler's signal aborted at the deadline (see
   * {@link stopped}), and what its handler reached after all (its output, or a declared error):
   * its caller sees TIMEOUT, but an idempotency key records that outcome (served.ts's `once`), so
   * that the same key replays it rather than running the operation again.
   */
  const lateOutcomes = new WeakMap<RemoteFailure, StoredOutcome>();

  const overran = (entry: Entry, context: CallContext, answer: Answer, outcome: StoredOutcome | undefined): void => {
    const remote = overranFailure(contract, entry.name, context);
    if (outcome !== undefined) lateOutcomes.set(remote, outcome);
    answer.fail(remote);
  };

  /**
   * A handler that asked for its signal has returned `result`: its deadline's timer goes, and
   * when the signal aborted at the deadline, the call is answered TIMEOUT (what the caller sees
   * anyway), its output kept for an idempotency key.
   */
  const returned = (cancellation: NonNullable<CallNode['cancellation']>, result: unknown, entry: Entry, context: CallContext, answer: Answer): void => {
    cancellation.release();
    if (!cancellation.timedOut) return finish(entry, result, context, answer);
    const output = entry.output.safeParse(result);
    overran(entry, context, answer, output.success ? { output: output.data } : undefined);
  };

  /**
   * A handler that asked for its signal has failed with `error`: its deadline's timer goes, and
   * when the signal had aborted, the call is answered for that (true): TIMEOUT when the deadline
   * passed (a declared error kept for an idempotency key), or the signal's CANCELLED when its
   * caller gave up; never the INTERNAL (logged) an `AbortError` would read as. A declared error
   * after the caller gave up stands: nobody reads it, and it is the request's final outcome.
   */
  const stopped = (
    cancellation: NonNullable<CallNode['cancellation']>,
    error: unknown,
    address: OperationAddress,
    entry: Entry,
    context: CallContext,
    answer: Answer,
  ): boolean => {
    cancellation.release();
    if (!cancellation.signal.aborted) return false;
    const declared = error instanceof ContractError && entry.definition.errors.some((candidate) => candidate.code === error.code);
    if (cancellation.timedOut) {
      const envelope = declared ? failure(error, address, entry, context).envelope : undefined;
      overran(entry, context, answer, envelope?.type === 'declared' ? { failure: envelope } : undefined);
      return true;
    }
    if (declared) return false;
    answer.fail(failure(cancellation.signal.reason, address, entry, context));
    return true;
  };

  return { lateOutcomes, returned, stopped };
}
