/**
 * Problem details (RFC 9457): the one JSON body of every error the gateway answers with.
 */
import { KeelErrorCode, isKeelError } from 'keel';
import { ContractError } from 'keel/transport';
import { httpStatusOf, httpStatusOfCode, type HttpProblemCode } from './status.js';

/**
 * Content type of every error response.
 *
 * @example
 * ```ts
 * reply.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
 * ```
 */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

/**
 * Prefix of a problem's `type`: the error code follows it (`urn:keel:error:OUT_OF_STOCK`).
 *
 * @example
 * ```ts
 * const code = problem.type.slice(PROBLEM_TYPE_PREFIX.length); // 'OUT_OF_STOCK'
 * ```
 */
export const PROBLEM_TYPE_PREFIX = 'urn:keel:error:';

/**
 * The body of every error response (`application/problem+json`, RFC 9457), with keel's
 * extension members `code`, `correlationId`, and `data` (a declared error's data) or `details`
 * (a keel error's structured details, such as zod issues for `INVALID_INPUT`).
 *
 * @example
 * ```ts
 * const response = await fetch(`${url}/orders/placeOrder`, { method: 'POST', body, headers });
 * if (!response.ok) {
 *   const problem = (await response.json()) as Problem;
 *   if (problem.code === 'OUT_OF_STOCK') console.log(problem.data);
 * }
 * ```
 */
export interface Problem {
  /** `urn:keel:error:<code>`. */
  readonly type: string;
  /** Short summary of the problem type (the same for every occurrence of a code). */
  readonly title: string;
  /** The HTTP status, repeated. */
  readonly status: number;
  /** What went wrong this time, and what to do next. */
  readonly detail: string;
  /** The error code: a keel error code, a gateway code or a declared error's code. */
  readonly code: string;
  /** Correlation id of the request; also in the `x-correlation-id` response header. */
  readonly correlationId: string;
  /** A declared error's data, as its contract declares it. */
  readonly data?: unknown;
  /** Structured details of a keel error (for `INVALID_INPUT`: contract, operation, issues). */
  readonly details?: Readonly<Record<string, unknown>>;
  /** Stack trace; only in development mode. */
  readonly stack?: string;
}

/** Title of each keel and gateway problem type. */
const TITLES: Readonly<Record<KeelErrorCode | HttpProblemCode, string>> = {
  INVALID_INPUT: 'Invalid input',
  INVALID_OUTPUT: 'Invalid output from the module',
  INVALID_EVENT: 'Invalid event',
  TIMEOUT: 'Deadline exceeded',
  NO_RESPONDERS: 'No module serves the operation',
  UNAVAILABLE: 'Unavailable',
  CANCELLED: 'Cancelled',
  INTERNAL: 'Internal error',
  UNKNOWN_OPERATION: 'Operation unknown to the module',
  VERSION_MISMATCH: 'Contract version mismatch',
  PAYLOAD_TOO_LARGE: 'Payload too large',
  INVALID_CONTRACT: 'Invalid contract',
  INVALID_MODULE: 'Invalid module',
  INVALID_TOPOLOGY: 'Invalid topology',
  UNDECLARED_DEPENDENCY: 'Undeclared dependency',
  INVALID_CONFIG: 'Invalid configuration',
  INVALID_STATE: 'Invalid lifecycle state',
  INTERRUPTED: 'Interrupted: outcome unknown',
  IDEMPOTENCY_KEY_REUSED: 'Idempotency key reused with another request',
  IDEMPOTENCY_KEY_IN_USE: 'A request with this idempotency key is still running',
  UNAUTHENTICATED: 'Authentication required',
  FORBIDDEN: 'Forbidden',
  RESOURCE_EXHAUSTED: 'The module is at its concurrency limit',
  ROUTE_NOT_FOUND: 'Route not found',
  METHOD_NOT_ALLOWED: 'Method not allowed',
  UNSUPPORTED_MEDIA_TYPE: 'Unsupported media type',
  MALFORMED_JSON: 'Malformed JSON',
  MALFORMED_REQUEST: 'Malformed request',
  REQUEST_TIMEOUT: 'Request timeout',
  HEADERS_TOO_LARGE: 'Request headers too large',
  RATE_LIMITED: 'Too many requests',
};

/**
 * Seconds a client is told to wait (`Retry-After`) before sending again a request a module's
 * bulkhead refused (`RESOURCE_EXHAUSTED`, 429) when the refusal carries no `details.retryAfterMs`
 * (a handler's own `RESOURCE_EXHAUSTED`, a callee older than the bulkhead's estimate). One
 * second: a full bulkhead has a queue's worth of calls ahead, which a healthy module works
 * through in well under that; the client's own backoff takes it from there.
 */
export const RESOURCE_EXHAUSTED_RETRY_AFTER_SECONDS = 1;

/**
 * The `Retry-After` seconds of a problem the gateway answers a call's failure (`error`) with, if
 * it has one: for a full bulkhead's refusal, its `details.retryAfterMs` (the bulkhead's estimate
 * of when the call's turn would come, kernel/bulkhead.ts), else one second; for a call an open
 * circuit breaker refused (`UNAVAILABLE`, 503, whose details a 5xx body does not show), the time
 * until the breaker lets a probe through. Milliseconds become whole seconds rounded up, at least 1.
 */
export function retryAfterOf(problem: Problem, error?: unknown): number | undefined {
  const details = (error as { details?: { circuit?: unknown; retryAfterMs?: unknown } } | undefined)?.details;
  const hintMs = details?.retryAfterMs;
  const hinted = typeof hintMs === 'number' && Number.isFinite(hintMs) ? Math.max(1, Math.ceil(hintMs / 1000)) : undefined;
  if (problem.code === KeelErrorCode.RESOURCE_EXHAUSTED) return hinted ?? RESOURCE_EXHAUSTED_RETRY_AFTER_SECONDS;
  if (problem.code === KeelErrorCode.UNAVAILABLE && details?.circuit === 'open') return hinted;
  return undefined;
}

/** Title of a problem type: a known code's title, else the code in words (`OUT_OF_STOCK` → `Out of stock`). */
export function titleOfCode(code: string): string {
  const known = (TITLES as Readonly<Record<string, string>>)[code];
  if (known !== undefined) return known;
  const words = code.toLowerCase().replaceAll('_', ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function describe(code: string, status: number, detail: string, correlationId: string): Problem {
  return {
    type: `${PROBLEM_TYPE_PREFIX}${code}`,
    title: titleOfCode(code),
    status,
    detail,
    code,
    correlationId,
  };
}

/**
 * A problem the gateway answers with itself (bad route, bad media type, bad JSON, ...).
 *
 * @example
 * ```ts
 * reply.status(404).send(gatewayProblem('ROUTE_NOT_FOUND', 'No route GET /nope.', correlationId));
 * ```
 */
export function gatewayProblem(
  code: HttpProblemCode | typeof KeelErrorCode.PAYLOAD_TOO_LARGE | typeof KeelErrorCode.UNAVAILABLE | typeof KeelErrorCode.FORBIDDEN,
  detail: string,
  correlationId: string,
  details?: Readonly<Record<string, unknown>>,
): Problem {
  const problem = describe(code, httpStatusOfCode(code), detail, correlationId);
  return details === undefined ? problem : { ...problem, details };
}

/**
 * The problem for an error a call failed with. Declared errors keep their code and data; keel
 * errors their code, message and (for 4xx) details; anything else becomes `INTERNAL` with no
 * trace of the original unless `development` is true.
 *
 * @example
 * ```ts
 * const problem = problemOf(error, correlationId, false);
 * reply.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem);
 * ```
 */
export function problemOf(error: unknown, correlationId: string, development: boolean): Problem {
  const status = httpStatusOf(error);
  const stack = development && error instanceof Error && error.stack !== undefined ? { stack: error.stack } : {};
  if (error instanceof ContractError) {
    const described = describe(error.code, status, error.message, error.correlationId ?? correlationId);
    const description = (error.constructor as { description?: unknown }).description;
    return {
      ...described,
      ...(typeof description === 'string' && description !== '' ? { title: description } : {}),
      data: error.data,
      ...stack,
    };
  }
  if (isKeelError(error)) {
    const described = describe(error.code, status, error.message, error.correlationId ?? correlationId);
    const showDetails = error.details !== undefined && (status < 500 || development);
    return { ...described, ...(showDetails ? { details: error.details } : {}), ...stack };
  }
  const detail = development
    ? `Internal error: ${error instanceof Error ? error.message : String(error)}`
    : `The gateway failed with an internal error (correlation id ${correlationId}); its logs have the details.`;
  return { ...describe(KeelErrorCode.INTERNAL, 500, detail, correlationId), ...stack };
}
