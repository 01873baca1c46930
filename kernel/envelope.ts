/**
 * Errors crossing a boundary: turned into a plain {@link ErrorEnvelope} on the callee's side and
 * rebuilt by code on the caller's side. Both transports use exactly these two functions.
 */
import type { AnyOperation } from './contract.js';
import { ContractError, type AnyErrorClass } from './declared-errors.js';
import { KeelError, KeelErrorCode, isKeelError } from './errors.js';
import type { Logger } from './logger.js';
import { RemoteFailure, type ErrorEnvelope, type OperationAddress } from './transport.js';

const KEEL_CODES: ReadonlySet<string> = new Set(Object.values(KeelErrorCode));

// Errors a client raised for a call this handler made (a nested call). They describe that call,
// not the one being answered: a nested NO_RESPONDERS does not mean the outer call was not
// delivered, and a nested INVALID_INPUT does not mean the outer caller's input was invalid.
const nestedCallErrors = new WeakSet<object>();

/** Marks `error` as raised by a client for the call it made; returns it. */
export function markCallError<E>(error: E): E {
  if (typeof error === 'object' && error !== null) nestedCallErrors.add(error);
  return error;
}

// What a nested call's failure still means for the outer call: its outcome is unknown too. (The
// example shop's order saga repeats this list, modules/orders/order-saga.ts: change both.)
const KEPT_FROM_NESTED_CALLS: ReadonlySet<string> = new Set([
  KeelErrorCode.TIMEOUT,
  KeelErrorCode.CANCELLED,
  KeelErrorCode.INTERRUPTED,
]);

/**
 * Turns whatever a handler threw into an envelope. Declared errors keep code and data;
 * keel errors keep their code; anything else becomes `INTERNAL` with the correlation id,
 * and the original (with its stack) is logged here, on the callee's side, never sent.
 *
 * @example
 * ```ts
 * const envelope = toErrorEnvelope(error, address, inventory.operations.reserve, context.correlationId, logger);
 * envelope.code; // 'OUT_OF_STOCK' for a thrown OutOfStock, 'INTERNAL' for a TypeError
 * ```
 */
export function toErrorEnvelope(
  error: unknown,
  address: OperationAddress,
  operation: AnyOperation | undefined,
  correlationId: string,
  logger: Logger,
  /**
   * The fields the lines logged here carry. Default: `correlation_id`, `module` and `operation`;
   * with a logger that binds `module` already, pass `callLogFields(context, { operation })`, as
   * the kernel does, or pino writes `module` twice.
   */
  fields: Record<string, unknown> = { correlation_id: correlationId, module: address.contract, operation: address.operation },
): ErrorEnvelope {
  if (error instanceof ContractError && operation !== undefined) {
    const declared = operation.errors.find((candidate) => candidate.code === error.code);
    if (declared !== undefined) {
      const data = declared.dataSchema.safeParse(error.data);
      if (data.success) {
        return { type: 'declared', code: error.code, message: error.message, data: data.data, correlationId };
      }
    }
    logger.error(
      { err: error, ...fields, code: error.code },
      `handler threw error ${error.code}, which ${address.contract}.${address.operation} does not declare (or with invalid data); the caller sees INTERNAL. Declare it in the contract's errors.`,
    );
  } else if (isKeelError(error) && nestedCallErrors.has(error) && !KEPT_FROM_NESTED_CALLS.has(error.code)) {
    logger.error(
      { err: error, ...fields, code: error.code },
      `a call made by the handler failed with ${error.code} and the handler let it through; the caller sees INTERNAL. ` +
        'Catch it in the handler, or declare a domain error for it.',
    );
  } else if (isKeelError(error)) {
    return {
      type: 'keel',
      code: error.code,
      message: error.message,
      ...(error.details === undefined ? {} : { details: error.details }),
      correlationId: error.correlationId ?? correlationId,
    };
  } else {
    logger.error(
      { err: error, ...fields },
      `${address.contract}.${address.operation} failed with an undeclared error; the caller sees INTERNAL`,
    );
  }
  return {
    type: 'keel',
    code: KeelErrorCode.INTERNAL,
    message:
      `${address.contract}.${address.operation} failed with an internal error (correlation id ${correlationId}). ` +
      `The "${address.contract}" module's logs have the details.`,
    correlationId,
  };
}

/** A {@link RemoteFailure} for `error`: what the answer pipeline fails a call with. */
export function toRemoteFailure(
  error: unknown,
  address: OperationAddress,
  operation: AnyOperation | undefined,
  correlationId: string,
  logger: Logger,
  fields?: Record<string, unknown>,
): RemoteFailure {
  return new RemoteFailure(toErrorEnvelope(error, address, operation, correlationId, logger, fields));
}

/**
 * Rebuilds the caller-side error from an envelope: a declared error becomes an instance of the
 * class the caller's contract declares; a keel error a {@link KeelError} with the same code.
 *
 * @example
 * ```ts
 * const errorsByCode = new Map<string, AnyErrorClass>(inventory.operations.reserve.errors.map((error) => [error.code, error]));
 * const error = fromErrorEnvelope(envelope, errorsByCode);
 * error instanceof OutOfStock; // true for an OUT_OF_STOCK envelope
 * ```
 */
export function fromErrorEnvelope(envelope: ErrorEnvelope, errorsByCode: ReadonlyMap<string, AnyErrorClass>): Error {
  if (envelope.type === 'declared') {
    const declared = errorsByCode.get(envelope.code);
    if (declared !== undefined) {
      try {
        const rebuilt = new declared(envelope.data as never, { message: envelope.message });
        rebuilt.correlationId = envelope.correlationId;
        return rebuilt;
      } catch (cause) {
        return new KeelError(
          KeelErrorCode.VERSION_MISMATCH,
          `The callee failed with ${envelope.code}, but its data does not match this caller's contract: ` +
            'caller and callee disagree on the contract. Deploy matching versions.',
          { correlationId: envelope.correlationId, cause, details: { code: envelope.code, data: envelope.data } },
        );
      }
    }
    return new KeelError(
      KeelErrorCode.VERSION_MISMATCH,
      `The callee failed with ${envelope.code}, which this caller's contract does not declare: ` +
        `"${envelope.message}". Update the caller to the callee's contract version.`,
      { correlationId: envelope.correlationId, details: { code: envelope.code, data: envelope.data } },
    );
  }
  const code = KEEL_CODES.has(envelope.code) ? (envelope.code as KeelErrorCode) : KeelErrorCode.INTERNAL;
  return new KeelError(code, envelope.message, {
    correlationId: envelope.correlationId,
    details: envelope.details,
  });
}

/**
 * True when `value` has the shape of an {@link ErrorEnvelope}; used to check bytes from a wire.
 *
 * @example
 * ```ts
 * const body: unknown = JSON.parse(replyText);
 * if (isErrorEnvelope(body)) throw new RemoteFailure(body);
 * ```
 */
export function isErrorEnvelope(value: unknown): value is ErrorEnvelope {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return (
    (candidate['type'] === 'declared' || candidate['type'] === 'keel') &&
    typeof candidate['code'] === 'string' &&
    typeof candidate['message'] === 'string'
  );
}
