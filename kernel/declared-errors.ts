/**
 * A contract's declared errors: what {@link defineError} takes and returns, the
 * {@link ContractError} base class every declared error extends, and the transport-independent
 * {@link ErrorKind} adapters map to a status. A declared error crosses every transport as a plain
 * envelope and is rebuilt on the caller as an instance of the very class the contract declares,
 * so `instanceof` works in every topology. The framework's own errors ({@link KeelError}) are in
 * errors.ts.
 */
import type { z } from 'zod';
import { KeelError, KeelErrorCode } from './errors.js';

/**
 * What a declared error means, independent of any transport. Adapters map it with explicit
 * tables (the HTTP adapter maps `not-found` to 404, `conflict` to 409, and so on).
 *
 * @example
 * ```ts
 * import { ErrorKind, defineError } from 'keel';
 *
 * export const OrderNotFound = defineError({
 *   code: 'ORDER_NOT_FOUND',
 *   kind: ErrorKind.NOT_FOUND,
 *   data: z.object({ orderId: z.string() }),
 * });
 * ```
 */
export const ErrorKind = {
  NOT_FOUND: 'not-found',
  CONFLICT: 'conflict',
  INVALID: 'invalid',
  UNPROCESSABLE: 'unprocessable',
  FORBIDDEN: 'forbidden',
  UNAUTHENTICATED: 'unauthenticated',
  RATE_LIMITED: 'rate-limited',
  UNAVAILABLE: 'unavailable',
} as const;

/** An {@link ErrorKind} value. */
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

/**
 * Base class of every declared contract error. Do not subclass it yourself: use
 * {@link defineError}, which gives each error its own class, code and data schema. It is in
 * `'keel/transport'`, for code that handles any declared error alike (a gateway, an adapter);
 * an application catches a declared error by its own class (`error instanceof OutOfStock`,
 * `OutOfStock.is(error)`), which also types its data.
 *
 * @example
 * ```ts
 * import { ContractError, STATUS_BY_ERROR_KIND } from 'keel/transport';
 *
 * const problemOf = (error: unknown) =>
 *   error instanceof ContractError ? { status: STATUS_BY_ERROR_KIND[error.kind], code: error.code, data: error.data } : undefined;
 * ```
 */
export class ContractError<Code extends string = string, Data = unknown> extends Error {
  override readonly name: string = 'ContractError';
  readonly code: Code;
  readonly data: Data;
  readonly kind: ErrorKind;
  /** Correlation id of the call that failed; set when the error is rebuilt on the caller. */
  correlationId: string | undefined;

  constructor(code: Code, data: Data, kind: ErrorKind, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.data = data;
    this.kind = kind;
    this.correlationId = undefined;
  }
}

/**
 * The class {@link defineError} returns: construct it to throw, use it with `instanceof` to catch.
 *
 * @example
 * ```ts
 * import { OutOfStock } from './modules/inventory/contract.js';
 *
 * OutOfStock.code; // 'OUT_OF_STOCK'
 * OutOfStock.kind; // 'conflict'
 * if (OutOfStock.is(error)) console.warn(`${error.data.available} left`);
 * throw new OutOfStock({ sku: 'KB-001', requested: 3, available: 1 });
 * ```
 */
export interface ErrorClass<Code extends string = string, Schema extends z.ZodType = z.ZodType> {
  new (data: z.input<Schema>, options?: { message?: string; cause?: unknown }): ContractError<Code, z.output<Schema>>;
  readonly code: Code;
  readonly dataSchema: Schema;
  readonly kind: ErrorKind;
  readonly description: string | undefined;
  /** Type guard by code; matches instances rebuilt by any copy of this contract. */
  is(error: unknown): error is ContractError<Code, z.output<Schema>>;
  /** Builds the default message from the data. */
  format(data: z.output<Schema>): string;
}

/**
 * Any {@link ErrorClass}.
 *
 * @example
 * ```ts
 * import type { AnyErrorClass } from 'keel';
 *
 * const codesOf = (errors: readonly AnyErrorClass[]): string[] => errors.map((error) => error.code);
 * codesOf(orders.operations.placeOrder.errors); // ['UNKNOWN_PRODUCT', 'OUT_OF_STOCK', 'PAYMENT_DECLINED']
 * ```
 */
export type AnyErrorClass = ErrorClass<string, z.ZodType>;

/**
 * What {@link defineError} takes.
 *
 * @example
 * ```ts
 * export const UnknownPayment = defineError({
 *   code: 'UNKNOWN_PAYMENT',
 *   kind: 'not-found',
 *   data: z.object({ paymentId: z.string() }),
 *   description: 'No payment has this id.',
 *   message: (data) => `No payment has id "${data.paymentId}". Use the paymentId that charge returned.`,
 * });
 * ```
 */
export interface ErrorSpec<Code extends string, Schema extends z.ZodType> {
  /** Stable, SCREAMING_SNAKE_CASE code that callers and other languages match on. */
  readonly code: Code;
  /** Schema of the data the error carries to the caller. */
  readonly data: Schema;
  /** What the error means (drives HTTP status and retry advice). Default: `unprocessable`. */
  readonly kind?: ErrorKind;
  /** Human explanation, shown in OpenAPI and docs. */
  readonly description?: string;
  /** Builds the error message from its data. */
  readonly message?: (data: z.output<Schema>) => string;
}

const CODE_PATTERN = /^[A-Z][A-Z0-9_]*$/;

/**
 * Declares a domain error that an operation may fail with. Returns a class: handlers throw
 * `new OutOfStock(data)`, callers test `error instanceof OutOfStock` — in every topology, since
 * the error is rebuilt on the caller from its code and validated data.
 *
 * @example
 * ```ts
 * export const OutOfStock = defineError({
 *   code: 'OUT_OF_STOCK',
 *   kind: 'conflict',
 *   data: z.object({ sku: z.string(), requested: z.number(), available: z.number() }),
 *   message: (d) => `Only ${d.available} of ${d.sku} left, ${d.requested} requested`,
 * });
 *
 * // in a handler
 * throw new OutOfStock({ sku, requested: 3, available: 1 });
 *
 * // in a caller
 * if (error instanceof OutOfStock) console.log(error.data.available);
 * ```
 */
export function defineError<const Code extends string, Schema extends z.ZodType>(
  spec: ErrorSpec<Code, Schema>,
): ErrorClass<Code, Schema> {
  if (typeof spec !== 'object' || spec === null) {
    throw new KeelError(KeelErrorCode.INVALID_CONTRACT, `defineError({ code, data }) takes an object such as { code, data }, got ${String(spec)}.`);
  }
  if (!CODE_PATTERN.test(spec.code)) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONTRACT,
      `Error code "${spec.code}" is not valid: use SCREAMING_SNAKE_CASE such as "OUT_OF_STOCK".`,
    );
  }
  const kind = spec.kind ?? ErrorKind.UNPROCESSABLE;
  // An unknown kind has no status on any wire (STATUS_BY_ERROR_KIND): refused here, not when first thrown.
  if (!(Object.values(ErrorKind) as unknown[]).includes(kind)) {
    const got = typeof kind === 'string' ? JSON.stringify(kind) : typeof kind === 'object' && kind !== null ? 'an object' : String(kind);
    throw new KeelError(
      KeelErrorCode.INVALID_CONTRACT,
      `Error ${spec.code}: kind must be one of ${Object.values(ErrorKind).join(', ')}, got ${got}.`,
    );
  }
  const format = (data: z.output<Schema>): string =>
    spec.message ? spec.message(data) : `${spec.code}${spec.description ? `: ${spec.description}` : ''}`;

  class DeclaredError extends ContractError<Code, z.output<Schema>> {
    static readonly code = spec.code;
    static readonly dataSchema = spec.data;
    static readonly kind = kind;
    static readonly description = spec.description;
    static format = format;
    override readonly name = spec.code;

    constructor(data: z.input<Schema>, options: { message?: string; cause?: unknown } = {}) {
      const parsed = spec.data.safeParse(data);
      if (!parsed.success) {
        throw new KeelError(
          KeelErrorCode.INVALID_OUTPUT,
          `Data for error ${spec.code} does not match its schema: ${parsed.error.message}`,
          { details: { issues: parsed.error.issues } },
        );
      }
      const value = parsed.data as z.output<Schema>;
      super(spec.code, value, kind, options.message ?? format(value), options.cause);
    }

    static is(error: unknown): error is ContractError<Code, z.output<Schema>> {
      return error instanceof ContractError && error.code === spec.code;
    }
  }
  return DeclaredError as unknown as ErrorClass<Code, Schema>;
}
