/**
 * How the HTTP client reads the gateway's answers: a 2xx body as the operation's validated
 * output, any other answer as the error it stands for (a problem body rebuilt as the in-process
 * error, a declared one as its contract's class; a gateway refusal or a body-less status mapped
 * to a keel code). Browser-safe, as http-client.ts: kernel files only, no Node.js built-in.
 */
import type { AnyOperation } from './contract.js';
import { fromErrorEnvelope } from './envelope.js';
import type { AnyErrorClass } from './declared-errors.js';
import { KeelError, KeelErrorCode, issueSummary, plainIssues } from './errors.js';
import type { ErrorEnvelope } from './transport.js';

/**
 * The keel code a gateway's own refusal (a request that never became a call) stands for on the
 * caller's side, keyed by the gateway's `HttpProblemCode`s (adapters/http/status.ts); the
 * original code stays in the error's `details.gatewayCode`.
 */
const KEEL_CODE_BY_GATEWAY_CODE: Readonly<Record<string, KeelErrorCode>> = Object.freeze({
  // This gateway does not expose the operation: caller and gateway disagree on the contract.
  ROUTE_NOT_FOUND: KeelErrorCode.UNKNOWN_OPERATION,
  METHOD_NOT_ALLOWED: KeelErrorCode.UNKNOWN_OPERATION,
  UNSUPPORTED_MEDIA_TYPE: KeelErrorCode.INVALID_INPUT,
  MALFORMED_JSON: KeelErrorCode.INVALID_INPUT,
  MALFORMED_REQUEST: KeelErrorCode.INVALID_INPUT,
  // The gateway did not get the whole request in time: nothing ran, safe to send again.
  REQUEST_TIMEOUT: KeelErrorCode.UNAVAILABLE,
  // The request line and headers are over the server's limit: too large, nothing ran.
  HEADERS_TOO_LARGE: KeelErrorCode.PAYLOAD_TOO_LARGE,
  RATE_LIMITED: KeelErrorCode.RESOURCE_EXHAUSTED,
});

/** The keel code of an error answer with no problem body (a proxy's page, for example), by status. */
const KEEL_CODE_BY_STATUS: Readonly<Record<number, KeelErrorCode>> = {
  401: KeelErrorCode.UNAUTHENTICATED,
  403: KeelErrorCode.FORBIDDEN,
  404: KeelErrorCode.UNKNOWN_OPERATION,
  413: KeelErrorCode.PAYLOAD_TOO_LARGE,
  429: KeelErrorCode.RESOURCE_EXHAUSTED,
  431: KeelErrorCode.PAYLOAD_TOO_LARGE,
  502: KeelErrorCode.INTERRUPTED,
  503: KeelErrorCode.UNAVAILABLE,
  504: KeelErrorCode.TIMEOUT,
};

const KEEL_CODES: ReadonlySet<string> = new Set(Object.values(KeelErrorCode));

/** The validated output of a 2xx answer; a body this caller's contract does not accept is `VERSION_MISMATCH`, as in process. */
export function outputOf(text: string, definition: AnyOperation, label: string, correlationId: string): unknown {
  let value: unknown;
  try {
    value = text === '' ? undefined : JSON.parse(text);
  } catch (cause) {
    throw new KeelError(
      KeelErrorCode.INTERNAL,
      `${label} answered with a body that is not JSON; is the base URL a keel gateway?`,
      { correlationId, cause },
    );
  }
  const checked = definition.output.safeParse(value);
  if (checked.success) return checked.data;
  throw new KeelError(
    KeelErrorCode.VERSION_MISMATCH,
    `${label} answered with output this caller's contract does not accept (${issueSummary(checked.error.issues)}). ` +
      'Caller and callee disagree on the contract; deploy matching versions.',
    { correlationId, details: { issues: plainIssues(checked.error.issues) } },
  );
}

/**
 * The error of a non-2xx answer. A problem body (RFC 9457, as the gateway answers) becomes the
 * error envelope the kernel rebuilds errors from, so a declared error is an instance of the
 * contract's class exactly as in process; any other body is judged by its status.
 */
export function errorOfAnswer(
  response: Response,
  text: string,
  errorsByCode: ReadonlyMap<string, AnyErrorClass>,
  label: string,
  correlationId: string,
): Error {
  const envelope = envelopeOfProblem(parseJson(text), response.status);
  if (envelope !== undefined) return fromErrorEnvelope(envelope, errorsByCode);
  const code = KEEL_CODE_BY_STATUS[response.status] ?? KeelErrorCode.INTERNAL;
  return new KeelError(
    code,
    // HTTP/2 has no reason phrase: statusText is then empty.
    `${label} failed with HTTP ${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`} and no keel problem body; ` +
      'is the base URL a keel gateway, or did a proxy answer?',
    { correlationId, details: { status: response.status } },
  );
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The error envelope a problem body stands for, or undefined when `body` is not a keel problem. */
function envelopeOfProblem(body: unknown, status: number): ErrorEnvelope | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const problem = body as Record<string, unknown>;
  const { code, detail, correlationId } = problem;
  if (typeof code !== 'string' || typeof detail !== 'string' || typeof correlationId !== 'string') return undefined;
  if ('data' in problem) return { type: 'declared', code, message: detail, data: problem['data'], correlationId };
  const details = typeof problem['details'] === 'object' && problem['details'] !== null ? (problem['details'] as Record<string, unknown>) : undefined;
  if (KEEL_CODES.has(code)) return { type: 'keel', code, message: detail, details, correlationId };
  const mapped = KEEL_CODE_BY_GATEWAY_CODE[code] ?? KeelErrorCode.INTERNAL;
  return { type: 'keel', code: mapped, message: detail, details: { ...details, gatewayCode: code, status }, correlationId };
}
