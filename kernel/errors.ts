/**
 * keel's errors.
 *
 * Two families, both carrying a stable `code`:
 * - {@link KeelError}: the framework's own failures, with a closed code map ({@link KeelErrorCode}),
 *   and the one validation error a contract schema's failure becomes. This file.
 * - `ContractError`: a contract's declared domain errors, made with `defineError`
 *   (declared-errors.ts). They cross every transport as a plain envelope and are rebuilt on the
 *   caller as an instance of the very class the contract declares, so `instanceof` works in
 *   every topology.
 */

/**
 * Every code a {@link KeelError} can carry. A closed map: adapters translate codes with explicit
 * tables (see the HTTP adapter's status table and the NATS wire protocol), never by guessing.
 *
 * @example
 * ```ts
 * import { KeelError, KeelErrorCode } from 'keel';
 *
 * const port = Number(process.env['PORT'] ?? 3000);
 * if (!Number.isInteger(port)) {
 *   throw new KeelError(KeelErrorCode.INVALID_CONFIG, 'PORT is not a whole number; set it to a port such as 3000, or unset it.');
 * }
 * ```
 */
export const KeelErrorCode = {
  /** The input of an operation did not match its contract's schema. Not retryable. */
  INVALID_INPUT: 'INVALID_INPUT',
  /** A handler returned a value that does not match the operation's output schema. A bug in the callee. */
  INVALID_OUTPUT: 'INVALID_OUTPUT',
  /** An event payload did not match its contract's schema. */
  INVALID_EVENT: 'INVALID_EVENT',
  /** The deadline passed before an answer arrived. The outcome is unknown: retry only idempotent operations. */
  TIMEOUT: 'TIMEOUT',
  /** Nothing serves the operation right now. The request was not delivered: safe to retry. */
  NO_RESPONDERS: 'NO_RESPONDERS',
  /** The callee is shutting down or not ready. The request was not processed: safe to retry. */
  UNAVAILABLE: 'UNAVAILABLE',
  /**
   * The connection or the transport closed while the call was in flight. The request may have
   * been processed: like a timeout, retry only idempotent operations.
   */
  INTERRUPTED: 'INTERRUPTED',
  /** The caller cancelled the call (AbortSignal). */
  CANCELLED: 'CANCELLED',
  /** An undeclared failure inside the callee; its logs hold the details under the correlation id. */
  INTERNAL: 'INTERNAL',
  /** The module is served but has no such operation (usually a caller built against another contract version). */
  UNKNOWN_OPERATION: 'UNKNOWN_OPERATION',
  /** Caller and callee were built against contracts with different major versions. */
  VERSION_MISMATCH: 'VERSION_MISMATCH',
  /** The encoded message is larger than the transport accepts. Nothing was sent. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** A contract definition is invalid (for example a schema that cannot cross a process boundary). */
  INVALID_CONTRACT: 'INVALID_CONTRACT',
  /** A module definition does not implement its contract correctly. */
  INVALID_MODULE: 'INVALID_MODULE',
  /** The manifest or topology is inconsistent: unknown dependency, duplicate module, cycle, unknown module. */
  INVALID_TOPOLOGY: 'INVALID_TOPOLOGY',
  /** A module asked for a contract client it did not declare in `dependsOn`. */
  UNDECLARED_DEPENDENCY: 'UNDECLARED_DEPENDENCY',
  /** Configuration (environment variables, topology file, adapter options) is invalid. */
  INVALID_CONFIG: 'INVALID_CONFIG',
  /** An object was used in the wrong lifecycle state (a kernel started twice, an event emitted after stop). */
  INVALID_STATE: 'INVALID_STATE',
  /**
   * An idempotency key was used again with a different input. Nothing ran: use a new key for a
   * new request (HTTP 422, as the IETF Idempotency-Key draft says).
   */
  IDEMPOTENCY_KEY_REUSED: 'IDEMPOTENCY_KEY_REUSED',
  /**
   * A request with this idempotency key is still running. Nothing ran: retry later with the same
   * key, which then answers with the first request's outcome (HTTP 409).
   */
  IDEMPOTENCY_KEY_IN_USE: 'IDEMPOTENCY_KEY_IN_USE',
  /**
   * The operation needs a caller identity (a principal) and the call carries none, or carries
   * one that does not match the application's principal schema (HTTP 401). Nothing ran:
   * authenticate and call again.
   */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /**
   * The call's principal is not allowed this operation: its contract's `auth` predicate refused
   * it, or the handler did (HTTP 403). Nothing ran; calling again as the same principal fails again.
   */
  FORBIDDEN: 'FORBIDDEN',
  /**
   * The callee is at its concurrency limit and its queue is full (its module's bulkhead, the
   * kernel's `bulkhead` option); nothing ran: retry after a short backoff, or add instances
   * (HTTP 429 with `Retry-After`). A bulkhead's refusal says how long in `details.retryAfterMs`
   * (its estimate of when the call's turn would come). Retryable: the request was certainly not processed, so
   * sending it again is safe, as `retryable` promises; but not at once: a retry must wait (the
   * gateway's `Retry-After`, a backoff) or it only adds to the overload it was refused for.
   */
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
} as const;

/** A {@link KeelErrorCode} value. */
export type KeelErrorCode = (typeof KeelErrorCode)[keyof typeof KeelErrorCode];

// Certainly not processed, so safe to send again. RESOURCE_EXHAUSTED is, but only after a
// backoff (see its TSDoc): safe is not the same as at once.
const RETRYABLE: ReadonlySet<KeelErrorCode> = new Set<KeelErrorCode>([
  KeelErrorCode.NO_RESPONDERS,
  KeelErrorCode.UNAVAILABLE,
  KeelErrorCode.RESOURCE_EXHAUSTED,
]);

/**
 * Options accepted by {@link KeelError}'s constructor.
 *
 * @example
 * ```ts
 * throw new KeelError(KeelErrorCode.INVALID_CONFIG, 'SHOP_SETTINGS is not valid JSON; fix it or unset it.', {
 *   cause: error,
 *   details: { variable: 'SHOP_SETTINGS' },
 * });
 * ```
 */
export interface KeelErrorOptions {
  /** The underlying error, if any. */
  readonly cause?: unknown;
  /** Correlation id of the call that failed. */
  readonly correlationId?: string | undefined;
  /** Structured details (for example zod issues for `INVALID_INPUT`). Plain JSON data. */
  readonly details?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * The framework's error: a stable {@link KeelErrorCode}, a message that says what to do next,
 * optional structured `details`, and the call's `correlationId`.
 *
 * @example
 * ```ts
 * try {
 *   await kernel.client(orders).placeOrder(input);
 * } catch (error) {
 *   if (isKeelError(error, 'NO_RESPONDERS')) {
 *     // nothing was delivered; safe to retry later
 *   }
 * }
 * ```
 */
export class KeelError extends Error {
  override readonly name = 'KeelError';
  readonly code: KeelErrorCode;
  readonly correlationId: string | undefined;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: KeelErrorCode, message: string, options: KeelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.correlationId = options.correlationId;
    this.details = options.details;
  }

  /** True when the request was certainly not processed, so sending it again is safe. */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

/**
 * Type guard for {@link KeelError}, optionally for one code. Checks the shape rather than the
 * prototype so that errors from another copy of keel (another bundle, another realm) still match.
 *
 * @example
 * ```ts
 * if (isKeelError(error, 'TIMEOUT')) console.warn('outcome unknown', error.correlationId);
 * ```
 */
export function isKeelError(error: unknown, code?: KeelErrorCode): error is KeelError {
  if (!(error instanceof Error) || error.name !== 'KeelError') return false;
  const actual = (error as { code?: unknown }).code;
  return typeof actual === 'string' && (code === undefined || actual === code);
}

/**
 * A zod issue, as carried in `details.issues`. Internal: a caller reads the same shape from
 * the error's details.
 *
 * @example
 * ```ts
 * import { isKeelError } from 'keel';
 *
 * if (isKeelError(error, 'INVALID_INPUT')) {
 *   const issues = (error.details?.['issues'] ?? []) as readonly { path: readonly (string | number)[]; message: string }[];
 *   for (const issue of issues) console.warn(`${issue.path.join('.')}: ${issue.message}`);
 * }
 * ```
 */
export interface ValidationIssue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
}

/**
 * The one validation error for a value that failed a contract schema, the same on the caller's
 * side, on the callee's side and on every transport. Internal: the client and the served
 * module raise it, whatever the transport.
 *
 * @example
 * ```ts
 * const parsed = inventory.operations.reserve.input.safeParse(input);
 * if (!parsed.success) {
 *   throw validationError('INVALID_INPUT', 'input', 'inventory', 'reserve', parsed.error.issues, context.correlationId);
 * }
 * ```
 */
export function validationError(
  code: typeof KeelErrorCode.INVALID_INPUT | typeof KeelErrorCode.INVALID_OUTPUT | typeof KeelErrorCode.INVALID_EVENT,
  what: string,
  contract: string,
  member: string,
  issues: readonly ValidationIssue[],
  correlationId?: string,
): KeelError {
  return new KeelError(code, `Invalid ${what} for ${contract}.${member}: ${issueSummary(issues)}`, {
    correlationId,
    details: { contract, [code === KeelErrorCode.INVALID_EVENT ? 'event' : 'operation']: member, issues: plainIssues(issues) },
  });
}

/**
 * Schema issues as one line for a message: `path: message` each, `(root)` for the value itself,
 * separated by `; `.
 *
 * @example
 * ```ts
 * issueSummary([{ path: ['lines', 0, 'quantity'], message: 'Too small: expected number to be >0' }]);
 * // 'lines.0.quantity: Too small: expected number to be >0'
 * ```
 */
export function issueSummary(issues: readonly ValidationIssue[]): string {
  return issues.map((issue) => `${issue.path.length ? issue.path.map(String).join('.') : '(root)'}: ${issue.message}`).join('; ');
}

/** Schema issues as plain JSON for an error's details: path (symbols as strings), message and code. */
export function plainIssues(issues: readonly ValidationIssue[]): { path: (string | number)[]; message: string; code?: string }[] {
  return issues.map((issue) => ({
    path: issue.path.map((part) => (typeof part === 'symbol' ? String(part) : part)),
    message: issue.message,
    ...(issue.code === undefined ? {} : { code: issue.code }),
  }));
}
