/**
 * The failures every transport raises alike, with the same code and wording in process and over
 * the wire: a deadline passed ({@link timeoutError}), nothing serves the module
 * ({@link noRespondersError}), the caller cancelled ({@link cancelledError}), and what a served
 * module answers for an operation it lacks ({@link unknownOperationFailure}) or a caller on
 * another major version ({@link versionMismatchFailure}). The Transport port they serve is
 * transport.ts.
 */
import type { CallContext } from './context.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { RemoteFailure, type OperationAddress } from './transport.js';

/**
 * The error a transport raises when a call's deadline passes.
 *
 * @example
 * ```ts
 * const timer = setTimeout(() => reject(timeoutError(address, context, context.deadline - sentAt)), context.deadline - Date.now());
 * ```
 */
export function timeoutError(address: OperationAddress, context: CallContext, budgetMs?: number): KeelError {
  const rounded = budgetMs === undefined ? undefined : Math.round(budgetMs);
  // A call sent with less than a millisecond left: "within 0 ms" would read as a bug.
  const budget = rounded === undefined ? '' : rounded >= 1 ? ` within ${rounded} ms` : ' before its deadline (under 1 ms of it was left when it was sent)';
  return new KeelError(
    KeelErrorCode.TIMEOUT,
    `${address.contract}.${address.operation} did not answer${budget}; its outcome is unknown. ` +
      'Retry only if the operation is idempotent, or raise the timeout.',
    { correlationId: context.correlationId },
  );
}

/**
 * The error a transport raises when nothing serves the target module.
 *
 * @example
 * ```ts
 * if (!servers.has(address.contract)) throw noRespondersError(address, context, 'in this process');
 * ```
 */
export function noRespondersError(address: OperationAddress, context: CallContext, where: string): KeelError {
  return new KeelError(
    KeelErrorCode.NO_RESPONDERS,
    `No instance of module "${address.contract}" is serving ${address.operation} ${where}. ` +
      'The call was not delivered and is safe to retry; start the module, check the topology, or ' +
      'check that the running version of the module has this operation.',
    { correlationId: context.correlationId },
  );
}

/**
 * What a module answers when asked for an operation its contract does not have: the same
 * failure in process and over NATS (where the caller learns what runs from `$SRV.INFO`).
 *
 * @example
 * ```ts
 * if (!entries.has(address.operation)) throw unknownOperationFailure(address, context, contract.version, Object.keys(contract.operations));
 * ```
 */
export function unknownOperationFailure(
  address: OperationAddress,
  context: CallContext,
  servedVersion: string,
  operations: readonly string[],
): RemoteFailure {
  return new RemoteFailure({
    type: 'keel',
    code: KeelErrorCode.UNKNOWN_OPERATION,
    message:
      `Module "${address.contract}" ${servedVersion} has no operation "${address.operation}" (it has: ${operations.join(', ')}). ` +
      'The caller was probably built against another contract version.',
    correlationId: context.correlationId,
  });
}

/**
 * What a module answers to a caller whose contract major version differs from the one it
 * serves (`servedVersions`: the version of this instance, or of every running instance).
 *
 * @example
 * ```ts
 * if (majorOf(address.version) !== majorOf(contract.version)) throw versionMismatchFailure(address, context, [contract.version]);
 * ```
 */
export function versionMismatchFailure(address: OperationAddress, context: CallContext, servedVersions: readonly string[]): RemoteFailure {
  const served =
    servedVersions.length === 1 ? `this instance serves ${servedVersions[0]}` : `the running instances serve ${servedVersions.join(', ')}`;
  return new RemoteFailure({
    type: 'keel',
    code: KeelErrorCode.VERSION_MISMATCH,
    message:
      `Caller uses contract ${address.contract} ${address.version}, but ${served}: ` +
      'the major versions differ. Deploy a caller and callee that share the major version.',
    correlationId: context.correlationId,
  });
}

/**
 * The error a transport raises when the caller aborts.
 *
 * @example
 * ```ts
 * // A call waiting for its answer, as an AbortableCall; it leaves the signal's watch once settled.
 * const call = { abort: () => reject(cancelledError(address, context, signal.reason)) };
 * watchSignal(signal, call);
 * // ... when the call settles, however:
 * unwatchSignal(signal, call);
 * ```
 */
export function cancelledError(address: OperationAddress, context: CallContext, reason?: unknown): KeelError {
  return new KeelError(
    KeelErrorCode.CANCELLED,
    `Call to ${address.contract}.${address.operation} was cancelled by the caller; its outcome is unknown.`,
    { correlationId: context.correlationId, cause: reason },
  );
}

/** Brands the errors of {@link givenBackError}: read by {@link isGivenBack}. */
const GIVEN_BACK: unique symbol = Symbol.for('keel.givenBack');

/**
 * The error a subscription's `handle` rejects with when its module stopped before the handler
 * ended and the kernel gave the event back: the handler's work was rolled back, and the event is
 * to be delivered again later (to another instance, or at the next start). It is `UNAVAILABLE`;
 * a transport tells it from a failure with {@link isGivenBack}.
 */
export function givenBackError(message: string, correlationId?: string): KeelError {
  const error = new KeelError(KeelErrorCode.UNAVAILABLE, message, correlationId === undefined ? {} : { correlationId });
  Object.defineProperty(error, GIVEN_BACK, { value: true });
  return error;
}

/** Marks the failure of an event whose module could not reach its database ({@link unreachableDatabaseError}). */
const DATABASE_UNREACHABLE: unique symbol = Symbol.for('keel.databaseUnreachable');

/**
 * The error a subscription's `handle` rejects with when the module's database could not be
 * reached, or the connection to it broke, so that the event's transaction failed as a whole: the
 * fault of neither the event nor its handler, and nothing of its work was kept. It is
 * `UNAVAILABLE`; a transport tells it with {@link isDatabaseUnreachable}.
 */
export function unreachableDatabaseError(module: string, cause: unknown): KeelError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const error = new KeelError(
    KeelErrorCode.UNAVAILABLE,
    `Module "${module}" could not reach its database (${reason}); the event's work was not kept, and it is handled again once the database answers.`,
    { cause },
  );
  Object.defineProperty(error, DATABASE_UNREACHABLE, { value: true });
  return error;
}

/**
 * Whether a subscription's `handle` rejected because the module's database could not be reached
 * ({@link unreachableDatabaseError}). A transport then keeps the event and hands it to the
 * handler again once the database may answer, without counting an attempt and never
 * dead-lettering it for this: a database's restart or failover outlasts a handler's attempts.
 *
 * @example
 * ```ts
 * try {
 *   await subscription.handle(payload, metadata);
 * } catch (error) {
 *   if (isDatabaseUnreachable(error)) return retryLater(); // not an attempt: no dead letter
 *   throw error;
 * }
 * ```
 */
export function isDatabaseUnreachable(error: unknown): error is KeelError {
  return typeof error === 'object' && error !== null && (error as { [DATABASE_UNREACHABLE]?: unknown })[DATABASE_UNREACHABLE] === true;
}

/**
 * Whether a subscription's `handle` rejected because its module stopped and gave the event back
 * ({@link givenBackError}), not because the handler failed. A transport then delivers the event
 * again later, never dead-letters it for this, and does not count the delivery as an attempt
 * where it can (the in-process bus; JetStream counts every delivery, see
 * `Transport.givesBackUncounted`).
 *
 * @example
 * ```ts
 * try {
 *   await subscription.handle(payload, metadata);
 *   msg.ack();
 * } catch (error) {
 *   if (isGivenBack(error)) msg.nak(); // not a failure: no dead letter, delivered again
 *   else if (metadata.attempt >= subscription.maxAttempts) deadLetter(msg, error);
 *   else msg.nak(delayMs);
 * }
 * ```
 */
export function isGivenBack(error: unknown): error is KeelError {
  return typeof error === 'object' && error !== null && (error as { [GIVEN_BACK]?: unknown })[GIVEN_BACK] === true;
}
