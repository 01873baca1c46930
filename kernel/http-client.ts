/**
 * A typed client of a contract that calls the HTTP gateway with `fetch`: the same typed results
 * and the same errors as an in-process client, from a browser, a worker or a script. It imports
 * zod and browser-safe kernel files only (no Node.js built-in), so it bundles for a browser.
 */
import { z } from 'zod';
import { isCorrelationId, isIdempotencyKey, isTraceparent } from './call-ids.js';
import type { HedgePolicy, RetryPolicy } from './call-policy.js';
import type { AnyContract, AnyOperation, OperationInput, OperationOutput } from './contract.js';
import { fromErrorEnvelope } from './envelope.js';
import { KeelError, KeelErrorCode, validationError, type AnyErrorClass } from './errors.js';
import { describeValue, parseOptions } from './options.js';
import { DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS } from './timeouts.js';
import type { ErrorEnvelope } from './transport.js';

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
 * A typed client of contract `C` over HTTP: one async method per operation, typed as the
 * in-process client's.
 *
 * @example
 * ```ts
 * const shop: HttpClient<typeof catalog> = createHttpClient(catalog, { baseUrl: location.origin });
 * const product = await shop.getProduct({ sku: 'KB-001' });
 * ```
 */
export type HttpClient<C extends AnyContract> = {
  readonly [K in keyof C['operations']]: (
    input: OperationInput<C['operations'][K]>,
    options?: HttpCallOptions,
  ) => Promise<OperationOutput<C['operations'][K]>>;
};

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

// How long past a call's deadline the client still waits for the gateway's own TIMEOUT answer
// (which names where the time went) before it stops waiting itself.
const DEADLINE_GRACE_MS = 250;

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
function readHeaders(value: unknown, owned: ReadonlyMap<string, string>): Record<string, string> | string {
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
function ownedHeaders(correlationHeader: string, timeoutHeader: string): ReadonlyMap<string, string> {
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
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
};

const HttpClientOptionsSchema = z
  .object({
    baseUrl: z.custom(isAbsoluteHttpUrl, {
      error: 'must be an absolute http or https URL, such as "https://shop.example.com" (in a browser page: location.origin)',
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
  RATE_LIMITED: KeelErrorCode.RESOURCE_EXHAUSTED,
});

/** The keel code of an error answer with no problem body (a proxy's page, for example), by status. */
const KEEL_CODE_BY_STATUS: Readonly<Record<number, KeelErrorCode>> = {
  401: KeelErrorCode.UNAUTHENTICATED,
  403: KeelErrorCode.FORBIDDEN,
  404: KeelErrorCode.UNKNOWN_OPERATION,
  413: KeelErrorCode.PAYLOAD_TOO_LARGE,
  429: KeelErrorCode.RESOURCE_EXHAUSTED,
  502: KeelErrorCode.INTERRUPTED,
  503: KeelErrorCode.UNAVAILABLE,
  504: KeelErrorCode.TIMEOUT,
};

const KEEL_CODES: ReadonlySet<string> = new Set(Object.values(KeelErrorCode));

/**
 * Builds a typed client of `contract` that calls the keel HTTP gateway at `baseUrl`
 * (`POST <baseUrl>/<module>/<operation>`). Each call validates its input as an in-process call
 * does (`INVALID_INPUT` before any request), sends a correlation id and its deadline as headers,
 * and validates the output. A declared error arrives as an instance of the contract's class,
 * with its data; a framework failure as a {@link KeelError} with its code. The client does not
 * retry: the kernel behind the gateway already retries what is safe to retry. The options are
 * checked once, here (`INVALID_CONFIG` naming the field).
 *
 * @example
 * ```ts
 * import { createHttpClient } from 'keel/http-client';
 * import { OutOfStock, inventory } from './modules/inventory/contract.js';
 *
 * const stock = createHttpClient(inventory, { baseUrl: 'http://localhost:3000' });
 * try {
 *   await stock.reserve({ orderId: 'o-1', lines: [{ sku: 'KB-001', quantity: 3 }] });
 * } catch (error) {
 *   if (error instanceof OutOfStock) console.log(`${error.data.available} left`);
 * }
 * ```
 */
export function createHttpClient<C extends AnyContract>(contract: C, options: HttpClientOptions): HttpClient<C> {
  const given = parseOptions('createHttpClient', HttpClientOptionsSchema, options, ['headers']);
  const resolved = { ...DEFAULT_HTTP_CLIENT_OPTIONS, ...given };
  const base = String(resolved.baseUrl).replace(/\/+$/, '');
  const send: typeof fetch = resolved.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const correlationHeader = resolved.correlationHeader.toLowerCase();
  const timeoutHeader = resolved.timeoutHeader.toLowerCase();
  const owned = ownedHeaders(correlationHeader, timeoutHeader);
  let headers: Record<string, string> | (() => unknown) = {};
  if (typeof resolved.headers === 'function') headers = resolved.headers;
  else if (resolved.headers !== undefined) {
    const read = readHeaders(resolved.headers, owned);
    if (typeof read === 'string') throw new KeelError(KeelErrorCode.INVALID_CONFIG, `createHttpClient: headers ${read}.`);
    headers = read;
  }
  const client: Record<string, unknown> = {};
  for (const [name, definition] of Object.entries(contract.operations)) {
    client[name] = makeHttpCall(contract, name, definition, {
      url: `${base}/${contract.name}/${name}`,
      send,
      headers,
      owned,
      timeoutMs: definition.timeoutMs ?? resolved.timeoutMs,
      correlationHeader,
      timeoutHeader,
    });
  }
  return Object.freeze(client) as HttpClient<C>;
}

/** What one operation's calls need, decided when the client is built. */
interface HttpCallPlan {
  readonly url: string;
  readonly send: typeof fetch;
  /** The client's headers, read once; or its headers function, called per call. */
  readonly headers: Readonly<Record<string, string>> | (() => unknown);
  /** The headers the client sets itself, each with what sets it instead. */
  readonly owned: ReadonlyMap<string, string>;
  readonly timeoutMs: number;
  readonly correlationHeader: string;
  readonly timeoutHeader: string;
}

function makeHttpCall(
  contract: AnyContract,
  name: string,
  definition: AnyOperation,
  plan: HttpCallPlan,
): (input: unknown, options?: HttpCallOptions) => Promise<unknown> {
  const label = `${contract.name}.${name}`;
  const errorsByCode = new Map<string, AnyErrorClass>(definition.errors.map((error) => [error.code, error]));
  return async (input, options = {}) => {
    const correlationId = options.correlationId ?? newCorrelationId();
    const refused = refusedCallOption(options, label);
    if (refused !== undefined) throw refused;
    const parsed = definition.input.safeParse(input);
    if (!parsed.success) {
      throw validationError(KeelErrorCode.INVALID_INPUT, 'input', contract.name, name, parsed.error.issues, correlationId);
    }
    const timeoutMs = options.timeoutMs ?? plan.timeoutMs;
    const callHeaders = readHeaders(options.headers ?? {}, plan.owned);
    if (typeof callHeaders === 'string') throw new KeelError(KeelErrorCode.INVALID_INPUT, `headers for ${label} ${callHeaders}.`, { correlationId });
    const body = parsed.data === undefined ? undefined : JSON.stringify(parsed.data);

    // The deadline and the caller's signal cover the headers function too. A timer holds at most
    // 2^31-1 ms: a longer delay fires at once, so the grace past a deadline near the maximum is cut.
    const started = Date.now();
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, Math.min(timeoutMs + DEADLINE_GRACE_MS, MAX_TIMEOUT_MS));
    const cancel = (): void => controller.abort();
    options.signal?.addEventListener('abort', cancel, { once: true });
    try {
      if (options.signal?.aborted) throw cancelled(label, correlationId, options.signal.reason, false);
      let clientHeaders: Readonly<Record<string, string>>;
      let deadlineMs = timeoutMs;
      if (typeof plan.headers === 'function') {
        let given: unknown;
        try {
          given = await untilAborted(Promise.resolve().then(plan.headers), controller.signal);
        } catch (cause) {
          if (!controller.signal.aborted) throw cause;
          if (options.signal?.aborted) throw cancelled(label, correlationId, options.signal.reason, false);
          throw notStartedInTime(label, timeoutMs, correlationId);
        }
        const read = readHeaders(given, plan.owned);
        if (typeof read === 'string') {
          throw new KeelError(KeelErrorCode.INVALID_INPUT, `headers for ${label}: what the client's headers function returned ${read}.`, { correlationId });
        }
        clientHeaders = read;
        // What the headers function took comes off the deadline the gateway is sent.
        deadlineMs = timeoutMs - (Date.now() - started);
        if (deadlineMs <= 0) throw notStartedInTime(label, timeoutMs, correlationId);
      } else {
        clientHeaders = plan.headers;
      }
      const headers: Record<string, string> = {
        ...clientHeaders,
        ...callHeaders,
        accept: 'application/json, application/problem+json',
        [plan.correlationHeader]: correlationId,
        [plan.timeoutHeader]: String(Math.ceil(deadlineMs)),
      };
      if (options.traceparent !== undefined) headers['traceparent'] = options.traceparent;
      if (options.idempotencyKey !== undefined) headers['idempotency-key'] = `"${options.idempotencyKey}"`;
      if (body !== undefined) headers['content-type'] = 'application/json';

      let response: Response;
      let text: string;
      try {
        // Called detached, never as a method: a browser's fetch throws "Illegal invocation" when
        // `this` is anything but the global object or undefined.
        const send = plan.send;
        response = await send(plan.url, { method: 'POST', headers, body, signal: controller.signal });
        text = await response.text();
      } catch (cause) {
        if (timedOut) {
          throw new KeelError(
            KeelErrorCode.TIMEOUT,
            `${label} did not answer within ${timeoutMs} ms; its outcome is unknown. Retry only if the operation is idempotent, or raise the timeout.`,
            { correlationId, cause },
          );
        }
        if (options.signal?.aborted) throw cancelled(label, correlationId, options.signal.reason, true);
        throw new KeelError(
          KeelErrorCode.INTERRUPTED,
          `${label} failed: the request to ${plan.url} got no answer (${cause instanceof Error ? cause.message : String(cause)}); ` +
            'it may or may not have been processed. Check that the gateway is up and reachable (and, from a browser, that it allows this origin).',
          { correlationId, cause },
        );
      }
      if (response.ok) return outputOf(text, definition, label, correlationId);
      throw errorOfAnswer(response, text, errorsByCode, label, correlationId);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', cancel);
    }
  };
}

/** `promise`, or a rejection with the signal's reason as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stop = (): void => reject(signal.reason);
    if (signal.aborted) return stop();
    signal.addEventListener('abort', stop, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', stop);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', stop);
        reject(error);
      },
    );
  });
}

/** The deadline passed while the client's headers function ran: nothing was sent. */
function notStartedInTime(label: string, timeoutMs: number, correlationId: string): KeelError {
  return new KeelError(
    KeelErrorCode.TIMEOUT,
    `${label} was not sent: its deadline of ${timeoutMs} ms passed while the client's headers function ran. Nothing was sent, so it is safe to call again.`,
    { correlationId },
  );
}

/** A call option that cannot cross an HTTP header, as the in-process client refuses it (`INVALID_INPUT`). */
function refusedCallOption(options: HttpCallOptions, label: string): KeelError | undefined {
  const { timeoutMs, correlationId, idempotencyKey, traceparent, retry, hedge } = options;
  if (timeoutMs !== undefined && !(timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
    return new KeelError(KeelErrorCode.INVALID_INPUT, `timeoutMs for ${label} ${TIMEOUT_RULE}, got ${String(timeoutMs)}.`);
  }
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

function cancelled(label: string, correlationId: string, reason: unknown, sent: boolean): KeelError {
  const outcome = sent ? 'its outcome is unknown' : 'nothing was sent';
  return new KeelError(KeelErrorCode.CANCELLED, `${label} was cancelled by its caller; ${outcome}.`, {
    correlationId,
    cause: reason,
  });
}

/** The validated output of a 2xx answer; a body this caller's contract does not accept is `VERSION_MISMATCH`, as in process. */
function outputOf(text: string, definition: AnyOperation, label: string, correlationId: string): unknown {
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
    `${label} answered with output this caller's contract does not accept (${checked.error.message}). ` +
      'Caller and callee disagree on the contract; deploy matching versions.',
    { correlationId, details: { issues: checked.error.issues } },
  );
}

/**
 * The error of a non-2xx answer. A problem body (RFC 9457, as the gateway answers) becomes the
 * error envelope the kernel rebuilds errors from, so a declared error is an instance of the
 * contract's class exactly as in process; any other body is judged by its status.
 */
function errorOfAnswer(
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
    `${label} failed with HTTP ${response.status} ${response.statusText} and no keel problem body; is the base URL a keel gateway, or did a proxy answer?`,
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

// A random prefix per page or process plus a counter, as the kernel's ids: unique with
// overwhelming probability. getRandomValues works in every browser, even off a secure context.
let idPrefix: string | undefined;
let idCounter = 0;

function newCorrelationId(): string {
  if (idPrefix === undefined) {
    const bytes = new Uint8Array(8);
    if (globalThis.crypto?.getRandomValues !== undefined) globalThis.crypto.getRandomValues(bytes);
    else for (let index = 0; index < bytes.length; index += 1) bytes[index] = Math.floor(Math.random() * 256);
    idPrefix = `${Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')}-`;
  }
  idCounter += 1;
  return idPrefix + idCounter.toString(36);
}
