/**
 * What {@link createHttpClient} and its calls take: the option types, their defaults, and their
 * checks (the client's options, parsed once; a call's options and headers, checked per call). A
 * bad client option is an `INVALID_CONFIG` naming the field, a bad call option an
 * `INVALID_INPUT`. Browser-safe, as http-client.ts: zod and kernel files only, no Node.js built-in.
 */
import { z } from 'zod';
import { isCorrelationId, isIdempotencyKey, isTraceparent } from './call-ids.js';
import type { HedgePolicy, RetryPolicy } from './call-policy.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { describeValue, signalOptionError, unknownOptionError } from './options.js';
import { DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS } from './timeouts.js';

/** Headers as a plain record of names to values. */
type HeaderRecord = Readonly<Record<string, string>>;

/**
 * Headers as the client takes them: a record of names to values, a `Headers`, or an array of
 * `[name, value]` pairs. Names are not case-sensitive (they are sent in lower case); a name given
 * twice in one of them is refused.
 *
 * @example
 * ```ts
 * const headers: HttpHeaders = { authorization: `Bearer ${token}` };
 * ```
 */
export type HttpHeaders = HeaderRecord | Headers | readonly (readonly [string, string])[];

/**
 * Options of {@link createHttpClient}.
 *
 * @example
 * ```ts
 * const options: HttpClientOptions = {
 *   baseUrl: 'https://shop.example.com',
 *   headers: () => ({ authorization: `Bearer ${session.token}` }),
 *   timeoutMs: 5_000,
 * };
 * const shop = createHttpClient(orders, options);
 * ```
 */
export interface HttpClientOptions {
  /** Where the gateway answers, as an absolute http(s) URL (in a browser page, `location.origin` for the page's own server). */
  readonly baseUrl: string | URL;
  /**
   * Headers sent with every call, or a function giving them per call (a fresh token, for
   * example). The function's time counts against the call's deadline, and the call's `signal`
   * stops the wait for it. The client sets `content-type`, `accept`, `idempotency-key` and the
   * correlation and deadline headers itself: giving one of them here is refused.
   */
  readonly headers?: HttpHeaders | (() => HttpHeaders | Promise<HttpHeaders>);
  /** The fetch function to call with (default: the global `fetch`). */
  readonly fetch?: typeof fetch;
  /**
   * Deadline of a call whose operation and call options set none (default
   * {@link DEFAULT_HTTP_CLIENT_OPTIONS}`.timeoutMs`, as the kernel's).
   */
  readonly timeoutMs?: number;
  /** The gateway's correlation id header (its `correlationHeader` option; default `x-correlation-id`). */
  readonly correlationHeader?: string;
  /** The gateway's deadline header (its `timeoutHeader` option; default `x-keel-timeout-ms`). */
  readonly timeoutHeader?: string;
}

/**
 * Options of one call made by an {@link HttpClient}. Any `CallOptions` of an in-process client
 * has this type too, so code written against a `Client` takes an `HttpClient`. At run time, the
 * options that have no meaning over HTTP are refused with `INVALID_INPUT` naming them, never
 * ignored: `principal` (the gateway's `authenticate` hook decides who calls), and a `retry` or
 * `hedge` policy (the client makes one attempt; `false` is taken).
 *
 * @example
 * ```ts
 * const order = await shop.getOrder({ orderId }, { timeoutMs: 2_000, correlationId: 'checkout-42' });
 * ```
 */
export interface HttpCallOptions {
  /** Deadline of this call in milliseconds, sent to the gateway; it answers `TIMEOUT` when it passes. */
  readonly timeoutMs?: number;
  /** Aborts the call with `CANCELLED`. */
  readonly signal?: AbortSignal;
  /** Correlation id of this call (1 to 128 visible ASCII characters); default: a new one. */
  readonly correlationId?: string;
  /** Makes a non-idempotent operation run once for this key (the `Idempotency-Key` header). */
  readonly idempotencyKey?: string;
  /** W3C traceparent of this call (the `traceparent` header); a malformed one is refused with `INVALID_INPUT`. */
  readonly traceparent?: string;
  /** Only `false` is taken: the client makes one attempt (the kernel behind the gateway retries). A policy is refused. */
  readonly retry?: RetryPolicy | false;
  /** Only `false` is taken: the client does not hedge. A policy is refused. */
  readonly hedge?: HedgePolicy | false;
  /** Headers of this call, over the client's (same rules as {@link HttpClientOptions}`.headers`). */
  readonly headers?: HttpHeaders;
}

/**
 * The defaults of {@link createHttpClient}: the kernel's default deadline and the HTTP gateway's
 * default header names.
 *
 * @example
 * ```ts
 * const shop = createHttpClient(orders, { baseUrl, timeoutMs: 2 * DEFAULT_HTTP_CLIENT_OPTIONS.timeoutMs });
 * ```
 */
export const DEFAULT_HTTP_CLIENT_OPTIONS = Object.freeze({
  timeoutMs: DEFAULT_TIMEOUT_MS,
  correlationHeader: 'x-correlation-id',
  timeoutHeader: 'x-keel-timeout-ms',
});

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// What fetch sends as a header value: no CR, LF, NUL or other control character but tab, nothing above U+00FF.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const TIMEOUT_RULE = `must be a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;
const HEADERS_RULE = 'must be a record of header names to string values, a Headers or an array of [name, value] pairs';

const isIterable = (value: object): value is Iterable<unknown> => typeof (value as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function';

/** The [name, value] pairs of headers as the client takes them, or what is wrong with their shape (never quoting a value). */
function headerPairs(value: unknown): [string, string][] | string {
  if (typeof value !== 'object' || value === null) return `${HEADERS_RULE}, got ${describeValue(value)}`;
  if (!isIterable(value)) {
    const entries = Object.entries(value);
    const wrong = entries.find(([, text]) => typeof text !== 'string');
    return wrong === undefined ? (entries as [string, string][]) : `${HEADERS_RULE}; "${wrong[0]}" has a ${typeof wrong[1]} (not shown: it may be a secret)`;
  }
  const pairs: [string, string][] = [];
  for (const item of value) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string' || typeof item[1] !== 'string') {
      return `${HEADERS_RULE}; item ${pairs.length} is not a [name, value] pair of strings`;
    }
    pairs.push([item[0], item[1]]);
  }
  return pairs;
}

/**
 * Headers as the client takes them, as lower-case names to values, or what is wrong with them:
 * a name that is not a header name, a value fetch cannot send (named, never quoted: it may be a
 * token), a name given twice, or a header the client sets itself (`owned`: the name and what sets it).
 */
export function readHeaders(value: unknown, owned: ReadonlyMap<string, string>): Record<string, string> | string {
  const pairs = headerPairs(value);
  if (typeof pairs === 'string') return pairs;
  const headers: Record<string, string> = {};
  for (const [given, text] of pairs) {
    if (!HEADER_NAME.test(given)) return `has ${describeValue(given)}, which is not an HTTP header name`;
    const name = given.toLowerCase();
    if (!HEADER_VALUE.test(text)) {
      return `has a value for "${given}" with a CR, LF, NUL or other control character, or a character above U+00FF, which HTTP cannot carry (not shown: it may be a secret)`;
    }
    const setBy = owned.get(name);
    if (setBy !== undefined) return `sets "${given}", which the client sets itself: ${setBy}`;
    if (Object.hasOwn(headers, name)) return `names "${name}" twice (header names are not case-sensitive); give it once`;
    headers[name] = text;
  }
  return headers;
}

/** The headers the client sets itself, each with what sets it instead. */
export function ownedHeaders(correlationHeader: string, timeoutHeader: string): ReadonlyMap<string, string> {
  return new Map([
    ['content-type', 'application/json, for an input; leave it out'],
    ['accept', 'the JSON and problem types it reads; leave it out'],
    ['idempotency-key', 'give the call option idempotencyKey (CallOptions.idempotencyKey) instead'],
    [correlationHeader, 'give the call option correlationId (CallOptions.correlationId) instead'],
    [timeoutHeader, "give the call option timeoutMs (CallOptions.timeoutMs) or the client's timeoutMs instead"],
  ]);
}

const isAbsoluteHttpUrl = (value: unknown): boolean => {
  if (typeof value !== 'string' && !(value instanceof URL)) return false;
  try {
    const url = new URL(String(value));
    // Operation paths are appended to it: a query or a fragment would swallow them.
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === '' && !String(value).includes('?') && !String(value).includes('#');
  } catch {
    return false;
  }
};

export const HttpClientOptionsSchema = z
  .object({
    baseUrl: z.custom(isAbsoluteHttpUrl, {
      error: 'must be an absolute http or https URL without a query or fragment, such as "https://shop.example.com" (in a browser page: location.origin)',
    }),
    headers: z
      .custom((value) => typeof value === 'function' || typeof headerPairs(value) !== 'string', {
        error: `${HEADERS_RULE}, or a function returning one`,
      })
      .optional(),
    fetch: z.custom((value) => typeof value === 'function', { error: 'must be a fetch function' }).optional(),
    timeoutMs: z
      .number({ error: TIMEOUT_RULE })
      .refine((value) => value > 0 && value <= MAX_TIMEOUT_MS, TIMEOUT_RULE)
      .optional(),
    correlationHeader: z.string().regex(HEADER_NAME, 'must be an HTTP header name, such as x-correlation-id').optional(),
    timeoutHeader: z.string().regex(HEADER_NAME, 'must be an HTTP header name, such as x-keel-timeout-ms').optional(),
  })
  .strict();

/**
 * Every option of a call over HTTP, in the order an unknown option's error lists them;
 * `principal`, which the HTTP client refuses with its own message, included. A record over the
 * options' type, so that an option added to `HttpCallOptions` and not here fails to compile.
 */
const HTTP_CALL_OPTIONS: { readonly [K in keyof HttpCallOptions | 'principal']-?: true } = {
  timeoutMs: true,
  signal: true,
  correlationId: true,
  traceparent: true,
  idempotencyKey: true,
  headers: true,
  retry: true,
  hedge: true,
  principal: true,
};
const HTTP_CALL_OPTION_KEYS = Object.keys(HTTP_CALL_OPTIONS);

/** A call option that cannot cross an HTTP header, as the in-process client refuses it (`INVALID_INPUT`). */
export function refusedCallOption(options: HttpCallOptions, label: string): KeelError | undefined {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `options for ${label} must be an object such as { timeoutMs: 2000 }, or left out, got ${describeValue(options)}.`,
    );
  }
  for (const key in options) {
    if (!Object.hasOwn(HTTP_CALL_OPTIONS, key) && Object.hasOwn(options, key)) return unknownOptionError(key, HTTP_CALL_OPTION_KEYS, label);
  }
  const { timeoutMs, correlationId, idempotencyKey, traceparent, retry, hedge, signal } = options;
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
    return new KeelError(KeelErrorCode.INVALID_INPUT, `timeoutMs for ${label} ${TIMEOUT_RULE}, got ${describeValue(timeoutMs)}.`);
  }
  const refusedSignal = signalOptionError(signal, label);
  if (refusedSignal !== undefined) return refusedSignal;
  if (correlationId !== undefined && !isCorrelationId(correlationId)) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `correlationId for ${label} must be 1 to 128 visible ASCII characters (no space), got ${describeValue(correlationId)}.`,
    );
  }
  if (traceparent !== undefined && !isTraceparent(traceparent)) {
    return new KeelError(KeelErrorCode.INVALID_INPUT, `traceparent for ${label} must be a W3C traceparent, got ${describeValue(traceparent)}.`);
  }
  // The in-process options with no meaning over HTTP: refused, never silently ignored.
  if ((options as { principal?: unknown }).principal !== undefined) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `principal for ${label} cannot be sent over HTTP: the gateway's authenticate hook decides who calls. Send the caller's credentials in headers instead.`,
    );
  }
  for (const [field, value] of [['retry', retry], ['hedge', hedge]] as const) {
    if (value !== undefined && value !== false) {
      return new KeelError(
        KeelErrorCode.INVALID_INPUT,
        `${field} for ${label} must be false or left out: the HTTP client makes one attempt (the kernel behind the gateway retries what is safe to retry).`,
      );
    }
  }
  if (idempotencyKey !== undefined && !isIdempotencyKey(idempotencyKey)) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `idempotencyKey for ${label} must be 1 to 255 visible ASCII characters (no space), got ${describeValue(idempotencyKey)}.`,
    );
  }
  return undefined;
}
