/**
 * A typed client of a contract that calls the HTTP gateway with `fetch`: the same typed results
 * and the same errors as an in-process client, from a browser, a worker or a script. It imports
 * zod and browser-safe kernel files only (no Node.js built-in), so it bundles for a browser.
 * This file builds the client and makes the call; what it takes and checks is in
 * http-client-options.ts, how it reads the gateway's answers in http-client-answers.ts.
 */
import type { AnyContract, AnyOperation } from './contract.js';
import type { OperationInput, OperationOutput } from './contract-inference.js';
import type { AnyErrorClass } from './declared-errors.js';
import { KeelError, KeelErrorCode, validationError } from './errors.js';
import { errorOfAnswer, outputOf } from './http-client-answers.js';
import {
  DEFAULT_HTTP_CLIENT_OPTIONS,
  HttpClientOptionsSchema,
  ownedHeaders,
  readHeaders,
  refusedCallOption,
  type HttpCallOptions,
  type HttpClientOptions,
} from './http-client-options.js';
import { parseOptions } from './options.js';
import { MAX_TIMEOUT_MS } from './timeouts.js';

export {
  DEFAULT_HTTP_CLIENT_OPTIONS,
  type HttpCallOptions,
  type HttpClientOptions,
  type HttpHeaders,
} from './http-client-options.js';

/**
 * A typed client of contract `C` over HTTP: one async method per operation the gateway serves,
 * typed as the in-process client's. An operation declared `internal: true` is typed `never`
 * (calling it does not compile), since the gateway never serves it; one typed only
 * `internal: boolean` keeps its method, which refuses the call with `UNKNOWN_OPERATION` when it
 * is internal.
 *
 * @example
 * ```ts
 * const shop: HttpClient<typeof catalog> = createHttpClient(catalog, { baseUrl: location.origin });
 * const product = await shop.getProduct({ sku: 'KB-001' });
 * ```
 */
export type HttpClient<C extends AnyContract> = {
  // `never` rather than no key: calling it is a type error, while generic code may still index
  // the client by any operation name and pass it where a `Client<C>` is expected.
  readonly [K in keyof C['operations']]: C['operations'][K]['internal'] extends true
    ? never
    : (input: OperationInput<C['operations'][K]>, options?: HttpCallOptions) => Promise<OperationOutput<C['operations'][K]>>;
};

// How long past a call's deadline the client still waits for the gateway's own TIMEOUT answer
// (which names where the time went) before it stops waiting itself.
const DEADLINE_GRACE_MS = 250;

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
 * import { OutOfStock } from './modules/inventory/contract.js';
 * import { orders } from './modules/orders/contract.js';
 *
 * const shop = createHttpClient(orders, { baseUrl: 'http://localhost:3000' });
 * try {
 *   await shop.placeOrder({ customerId: 'c-42', lines: [{ sku: 'KB-001', quantity: 3 }], card: { token: 'tok_visa' } });
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
    const refused = refusedCallOption(options, label);
    if (refused !== undefined) throw refused;
    const correlationId = options.correlationId ?? newCorrelationId();
    if (definition.internal) {
      // The gateway would answer 404: say why, without a request.
      throw new KeelError(
        KeelErrorCode.UNKNOWN_OPERATION,
        `${label} is internal (its contract says so): other modules call it, the HTTP gateway does not serve it. Call an operation that is not internal.`,
        { correlationId },
      );
    }
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
          // Given up at the deadline itself: the grace past it waits for the gateway's own answer,
          // and no request was sent yet.
          given = await untilAborted(Promise.resolve().then(plan.headers), controller.signal, Math.min(timeoutMs, MAX_TIMEOUT_MS));
        } catch (cause) {
          if (cause === TIME_UP) throw notStartedInTime(label, timeoutMs, correlationId);
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

/** What {@link untilAborted} rejects with when its time is up before `promise` settled. */
const TIME_UP = Symbol('time up');

/**
 * `promise`, or a rejection with the signal's reason as soon as `signal` aborts, or with
 * {@link TIME_UP} once `limitMs` passed.
 */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal, limitMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    if (signal.aborted) return stop();
    signal.addEventListener('abort', stop, { once: true });
    timer = setTimeout(() => {
      signal.removeEventListener('abort', stop);
      reject(TIME_UP);
    }, limitMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', stop);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
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

function cancelled(label: string, correlationId: string, reason: unknown, sent: boolean): KeelError {
  const outcome = sent ? 'its outcome is unknown' : 'nothing was sent';
  return new KeelError(KeelErrorCode.CANCELLED, `${label} was cancelled by its caller; ${outcome}.`, {
    correlationId,
    cause: reason,
  });
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
