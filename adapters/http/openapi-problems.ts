/**
 * The problem responses and parameters an OpenAPI document shares between operations (openapi.ts):
 * the Problem schema, the generic problems by status, those of an Idempotency-Key, and the bearer
 * scheme's.
 */
import type { AnyErrorClass } from 'keel';
import type { JsonObject } from './openapi.js';
import { PROBLEM_TYPE_PREFIX } from './problem.js';

export const SCHEMA_REF = '#/components/schemas/';

export const PROBLEM_SCHEMA: JsonObject = {
  type: 'object',
  description:
    'Problem details (RFC 9457) with keel extension members: `code` to match on, `correlationId` to quote ' +
    "in a support request, a declared error's `data`, or a keel error's `details` (zod issues for INVALID_INPUT).",
  properties: {
    type: { type: 'string', description: `\`${PROBLEM_TYPE_PREFIX}<code>\``, examples: [`${PROBLEM_TYPE_PREFIX}INVALID_INPUT`] },
    title: { type: 'string', description: 'Short summary of the problem type.' },
    status: { type: 'integer', description: 'The HTTP status code.' },
    detail: { type: 'string', description: 'What went wrong, and what to do next.' },
    code: { type: 'string', description: 'Error code: a keel error code, a gateway code or a declared error code.' },
    correlationId: { type: 'string', description: 'Correlation id of the request (also in the x-correlation-id header).' },
    data: { description: "A declared error's data." },
    details: { type: 'object', description: "A keel error's structured details.", additionalProperties: true },
    stack: { type: 'string', description: 'Stack trace, in development mode only.' },
  },
  required: ['type', 'title', 'status', 'detail', 'code', 'correlationId'],
};

/** Generic responses every operation may give, keyed by status. */
export const STANDARD_RESPONSES: Readonly<Record<string, GenericResponse>> = {
  '400': {
    name: 'BadRequest',
    description: 'The input does not match the schema (INVALID_INPUT), the body is not JSON (MALFORMED_JSON), or a header is malformed.',
    codes: ['INVALID_INPUT', 'MALFORMED_JSON', 'MALFORMED_REQUEST'],
  },
  '413': { name: 'PayloadTooLarge', description: 'The body is larger than the gateway accepts.', codes: ['PAYLOAD_TOO_LARGE'] },
  '415': {
    name: 'UnsupportedMediaType',
    description: 'The body is not application/json, or comes with a Content-Encoding the gateway does not decode.',
    codes: ['UNSUPPORTED_MEDIA_TYPE'],
  },
  '500': { name: 'InternalError', description: 'An undeclared failure; the logs hold the details under the correlation id.', codes: ['INTERNAL'] },
  '502': {
    name: 'BadGateway',
    description: 'The module behind the gateway runs another contract version (UNKNOWN_OPERATION, VERSION_MISMATCH).',
    codes: ['UNKNOWN_OPERATION', 'VERSION_MISMATCH'],
  },
  '503': {
    name: 'Unavailable',
    description: 'Nothing serves the operation now, or it is shutting down (NO_RESPONDERS, UNAVAILABLE). Not processed: safe to retry.',
    codes: ['NO_RESPONDERS', 'UNAVAILABLE'],
  },
  '504': { name: 'Timeout', description: 'The deadline passed; the outcome is unknown (TIMEOUT).', codes: ['TIMEOUT'] },
  '429': {
    name: 'TooManyRequests',
    description:
      "The client passed the gateway's rate limit (RATE_LIMITED), or the module's bulkhead is full (RESOURCE_EXHAUSTED). Nothing ran: retry after Retry-After seconds.",
    codes: ['RATE_LIMITED', 'RESOURCE_EXHAUSTED'],
    headers: { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer', minimum: 0 } } },
  },
};

/** The responses of a non-idempotent operation called with an `Idempotency-Key`. */
export const KEYED_RESPONSES: Readonly<Record<string, GenericResponse>> = {
  '409': {
    name: 'IdempotencyKeyInUse',
    description: 'A request with this Idempotency-Key is still running (IDEMPOTENCY_KEY_IN_USE). Nothing ran: retry later with the same key.',
    codes: ['IDEMPOTENCY_KEY_IN_USE'],
  },
  '422': {
    name: 'IdempotencyKeyReused',
    description: 'This Idempotency-Key was used with another input, or by another principal (IDEMPOTENCY_KEY_REUSED). Nothing ran: use a new key for a new request.',
    codes: ['IDEMPOTENCY_KEY_REUSED'],
  },
};

/** A problem response every operation of a kind may give: its component name, description, the codes it carries, its headers. */
export interface GenericResponse {
  readonly name: string;
  readonly description: string;
  readonly codes: readonly string[];
  readonly headers?: JsonObject;
}

export function problemContent(schema: JsonObject): JsonObject {
  return { 'application/problem+json': { schema } };
}

export function declaredProblemSchema(error: AnyErrorClass, data: JsonObject): JsonObject {
  return {
    allOf: [
      { $ref: `${SCHEMA_REF}Problem` },
      {
        type: 'object',
        properties: {
          type: { const: `${PROBLEM_TYPE_PREFIX}${error.code}` },
          code: { const: error.code },
          data,
        },
        required: ['data'],
      },
    ],
    ...(error.description === undefined ? {} : { description: error.description }),
  };
}

/** A generic problem response, as a component. */
export function genericResponse(response: GenericResponse): JsonObject {
  return {
    description: response.description,
    ...(response.headers === undefined ? {} : { headers: response.headers }),
    content: problemContent({ $ref: `${SCHEMA_REF}Problem` }),
  };
}

/** The `Idempotency-Key` header of a non-idempotent operation's POST. */
export const IDEMPOTENCY_KEY_PARAMETER: JsonObject = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'Runs the operation once per key (where its module keeps keys: a module that owns data). A retry with the same key and input ' +
    'gets the first answer without running again; the same key with another input or from another principal is 422, a retry while the ' +
      'first still runs is 409.',
  schema: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$' },
};

/** Security scheme of the operations whose contract declares `auth`: the gateway's authenticate hook reads a bearer token. */
export const BEARER_SCHEME = 'bearer';

const WWW_AUTHENTICATE = { 'WWW-Authenticate': { description: 'The challenge, such as Bearer realm="keel".', schema: { type: 'string' } } };

/** The responses of the bearer scheme: 401 where a principal is required or a token was refused, 403 where a predicate refuses it. */
export const AUTH_RESPONSES = {
  /** An operation whose contract declares `auth`. */
  unauthenticated: {
    name: 'Unauthenticated',
    description: 'No principal, or credentials that do not hold (UNAUTHENTICATED); see WWW-Authenticate.',
    codes: ['UNAUTHENTICATED'],
    headers: WWW_AUTHENTICATE,
  },
  /** Any other operation of a gateway that authenticates: a token is optional, and one that does not hold is refused. */
  credentialsRefused: {
    name: 'CredentialsRefused',
    description: 'Credentials were sent and do not hold (UNAUTHENTICATED, error="invalid_token"); send none, or valid ones.',
    codes: ['UNAUTHENTICATED'],
    headers: WWW_AUTHENTICATE,
  },
  forbidden: { name: 'Forbidden', description: "The operation's auth refused the caller's principal (FORBIDDEN).", codes: ['FORBIDDEN'] },
} as const satisfies Record<string, GenericResponse>;

