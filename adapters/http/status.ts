/**
 * The tables from errors to HTTP statuses. Every {@link KeelErrorCode} and every code the
 * gateway itself answers with ({@link HttpProblemCode}) has exactly one status here; every
 * declared error's {@link ErrorKind} has the kernel's one status for it (`STATUS_BY_ERROR_KIND`,
 * shared with the NATS adapter). Nothing elsewhere guesses a status.
 */
import { KeelErrorCode, isKeelError } from 'keel';
import { ContractError, STATUS_BY_ERROR_KIND } from 'keel/transport';

/**
 * Codes the gateway answers with itself, for requests that never became a call: the HTTP
 * request was malformed before any contract schema could look at it.
 *
 * @example
 * ```ts
 * const problem = (await response.json()) as Problem;
 * if (problem.code === HttpProblemCode.ROUTE_NOT_FOUND) console.error(problem.detail);
 * ```
 */
export const HttpProblemCode = {
  /** No route: neither an operation (`POST /<module>/<operation>`) nor a gateway endpoint. */
  ROUTE_NOT_FOUND: 'ROUTE_NOT_FOUND',
  /** The route exists but not for this method (for example GET on a non-idempotent operation). */
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  /** The body is not `application/json`. */
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** The body (or the `input` query parameter) is not valid JSON. */
  MALFORMED_JSON: 'MALFORMED_JSON',
  /** A header or query parameter the gateway reads is malformed, or the request is broken. */
  MALFORMED_REQUEST: 'MALFORMED_REQUEST',
  /** The client did not send its whole request within the gateway's `requestTimeoutMs` (or its headers within `headersTimeoutMs`). */
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  /** The request line and headers are larger than the server accepts (Node's `http.maxHeaderSize`, 16 KiB by default). */
  HEADERS_TOO_LARGE: 'HEADERS_TOO_LARGE',
  /** The client sent more requests than the gateway's `rateLimit` allows; retry after `Retry-After` seconds. */
  RATE_LIMITED: 'RATE_LIMITED',
} as const;

/** A {@link HttpProblemCode} value. */
export type HttpProblemCode = (typeof HttpProblemCode)[keyof typeof HttpProblemCode];

/**
 * HTTP status of every keel error code and gateway problem code. `satisfies` makes a new
 * {@link KeelErrorCode} a compile error here until it has a status.
 *
 * - 502 for `UNKNOWN_OPERATION` and `VERSION_MISMATCH`: the gateway's contract and the module
 *   behind it disagree, which is a deployment problem upstream, not the HTTP client's fault.
 * - 499 for `CANCELLED` (nginx's "client closed request"): only the gateway's own metrics and
 *   logs ever see it, since the client has gone.
 * - 429 for `RESOURCE_EXHAUSTED` (a module's bulkhead is full), with `Retry-After`, rather than
 *   503: the request was refused whole and is safe to send again after a wait, which is what 429
 *   with `Retry-After` tells every HTTP client, and what gRPC's own mapping of the code says; 503
 *   stays "nothing serves it" (`NO_RESPONDERS`, `UNAVAILABLE`), and a 4xx is not logged as a
 *   gateway failure, so shedding load does not add a log line per refused request.
 *
 * @example
 * ```ts
 * HTTP_STATUS_BY_CODE.NO_RESPONDERS; // 503
 * ```
 */
export const HTTP_STATUS_BY_CODE = {
  [KeelErrorCode.INVALID_INPUT]: 400,
  [KeelErrorCode.INVALID_OUTPUT]: 500,
  [KeelErrorCode.INVALID_EVENT]: 500,
  [KeelErrorCode.TIMEOUT]: 504,
  [KeelErrorCode.NO_RESPONDERS]: 503,
  [KeelErrorCode.UNAVAILABLE]: 503,
  [KeelErrorCode.CANCELLED]: 499,
  [KeelErrorCode.INTERNAL]: 500,
  [KeelErrorCode.UNKNOWN_OPERATION]: 502,
  [KeelErrorCode.VERSION_MISMATCH]: 502,
  [KeelErrorCode.PAYLOAD_TOO_LARGE]: 413,
  [KeelErrorCode.INVALID_CONTRACT]: 500,
  [KeelErrorCode.INVALID_MODULE]: 500,
  [KeelErrorCode.INVALID_TOPOLOGY]: 500,
  [KeelErrorCode.UNDECLARED_DEPENDENCY]: 500,
  [KeelErrorCode.INVALID_CONFIG]: 500,
  [KeelErrorCode.INVALID_STATE]: 500,
  [KeelErrorCode.IDEMPOTENCY_KEY_REUSED]: 422,
  [KeelErrorCode.IDEMPOTENCY_KEY_IN_USE]: 409,
  [KeelErrorCode.INTERRUPTED]: 502,
  [KeelErrorCode.UNAUTHENTICATED]: 401,
  [KeelErrorCode.FORBIDDEN]: 403,
  [KeelErrorCode.RESOURCE_EXHAUSTED]: 429,
  [HttpProblemCode.ROUTE_NOT_FOUND]: 404,
  [HttpProblemCode.METHOD_NOT_ALLOWED]: 405,
  [HttpProblemCode.UNSUPPORTED_MEDIA_TYPE]: 415,
  [HttpProblemCode.MALFORMED_JSON]: 400,
  [HttpProblemCode.MALFORMED_REQUEST]: 400,
  [HttpProblemCode.REQUEST_TIMEOUT]: 408,
  [HttpProblemCode.HEADERS_TOO_LARGE]: 431,
  [HttpProblemCode.RATE_LIMITED]: 429,
} as const satisfies Record<KeelErrorCode | HttpProblemCode, number>;

/**
 * HTTP status of a declared contract error, by its {@link ErrorKind}: the kernel's
 * `STATUS_BY_ERROR_KIND` ('keel/transport'), the same table the NATS adapter sends as its
 * service error code, so a kind has one status on every wire.
 *
 * @example
 * ```ts
 * HTTP_STATUS_BY_KIND[OutOfStock.kind]; // 409 for kind 'conflict'
 * ```
 */
export const HTTP_STATUS_BY_KIND = STATUS_BY_ERROR_KIND;

const STATUS_BY_CODE: Readonly<Record<string, number>> = HTTP_STATUS_BY_CODE;
const STATUS_BY_KIND: Readonly<Record<string, number>> = HTTP_STATUS_BY_KIND;

/**
 * The HTTP status for an error: a declared error by its kind, a keel or gateway error by its
 * code, anything else 500.
 *
 * @example
 * ```ts
 * try {
 *   await kernel.client(orders).placeOrder(input);
 * } catch (error) {
 *   reply.status(httpStatusOf(error));
 * }
 * ```
 */
export function httpStatusOf(error: unknown): number {
  if (error instanceof ContractError) return STATUS_BY_KIND[error.kind] ?? 500;
  if (isKeelError(error)) return STATUS_BY_CODE[error.code] ?? 500;
  return 500;
}

/** The status of a code from {@link HTTP_STATUS_BY_CODE}, or 500 for a code it does not know. */
export function httpStatusOfCode(code: string): number {
  return STATUS_BY_CODE[code] ?? 500;
}
