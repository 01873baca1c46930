/**
 * The checks of a call's options that can refuse it before it is made, with `INVALID_INPUT`
 * errors that name the option and say what it must be.
 */
import type { CallOptions } from './client.js';
import { isCorrelationId, isIdempotencyKey, isTraceparent } from './call-ids.js';
import { HedgePolicySchema, RetryPolicySchema } from './call-policy.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { MAX_TIMEOUT_MS } from './timeouts.js';
import { describeValue, signalOptionError, unknownOptionError } from './options.js';

/**
 * The error for call options that are no object, hold an option no call knows, a `timeoutMs`
 * that is no number of milliseconds in range, or a `signal` that is no AbortSignal; undefined
 * when they are fine.
 * Checked before anything else, since a string timeout would make a string deadline and a
 * signal without `addEventListener` would throw out of the call once it settles.
 */
export function refusedCallOptions(options: unknown, label: string): KeelError | undefined {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `options for ${label} must be an object such as { timeoutMs: 2000 }, or left out, got ${describeValue(options)}.`,
    );
  }
  // Own keys only: an enumerable property some library put on Object.prototype refuses no call.
  for (const key in options) {
    if (!Object.hasOwn(CALL_OPTIONS, key) && Object.hasOwn(options, key)) return unknownOptionError(key, CALL_OPTION_KEYS, label, OTHER_CLIENTS_OPTIONS);
  }
  const { timeoutMs, signal } = options as CallOptions;
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `timeoutMs for ${label} must be a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}, got ${describeValue(timeoutMs)}.`,
    );
  }
  const refusedSignal = signalOptionError(signal, label);
  if (refusedSignal !== undefined) return refusedSignal;
  return undefined;
}

/**
 * Every call option, in the order an unknown option's error lists them. A record over
 * `keyof CallOptions`, so that an option added to `CallOptions` and not here fails to compile.
 */
const CALL_OPTIONS: { readonly [K in keyof CallOptions]-?: true } = {
  timeoutMs: true,
  signal: true,
  correlationId: true,
  traceparent: true,
  idempotencyKey: true,
  principal: true,
  retry: true,
  hedge: true,
};
const CALL_OPTION_KEYS = Object.keys(CALL_OPTIONS);

/** What an option of another client is for, when a call of this one is given it. */
const OTHER_CLIENTS_OPTIONS: Readonly<Record<string, string>> = {
  headers: 'headers is an option of the HTTP client (createHttpClient); a call in process or over NATS sends no HTTP headers',
};

/** The error for a `retry` or `hedge` call option that is not a policy, or a hedge where repeating is not safe. */
export function refusedPolicyOption(options: CallOptions, label: string, idempotent: boolean): KeelError | undefined {
  const problems: string[] = [];
  for (const [field, schema] of [['retry', RetryPolicySchema], ['hedge', HedgePolicySchema]] as const) {
    if (options[field] === undefined) continue;
    const checked = schema.safeParse(options[field]);
    if (!checked.success) problems.push(...checked.error.issues.map((issue) => `${[field, ...issue.path].join('.')} ${issue.message}`));
  }
  if (options.hedge !== undefined && options.hedge !== false && !idempotent) {
    problems.push(`hedge needs an idempotent operation, and ${label} is not one (hedging sends the same call more than once)`);
  }
  if (problems.length === 0) return undefined;
  return new KeelError(KeelErrorCode.INVALID_INPUT, `Call options for ${label}: ${problems.join('; ')}.`);
}

/** The error for an `idempotencyKey` option that could not cross every transport unchanged. */
export function refusedIdempotencyKey(options: CallOptions | undefined, label: string): KeelError | undefined {
  const key = options?.idempotencyKey;
  if (key === undefined || isIdempotencyKey(key)) return undefined;
  return new KeelError(
    KeelErrorCode.INVALID_INPUT,
    `idempotencyKey for ${label} must be 1 to 255 visible ASCII characters (no spaces or line breaks), got ${JSON.stringify(key)}.`,
  );
}

/**
 * The error for a `correlationId` or `traceparent` call option that could not cross every
 * transport unchanged, or undefined when both are fine: checked once, here, so that a call
 * carries the same context in process and over NATS.
 */
export function refusedContextOption(options: CallOptions | undefined, label: string): KeelError | undefined {
  if (options?.correlationId !== undefined && !isCorrelationId(options.correlationId)) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `correlationId for ${label} must be 1 to 128 visible ASCII characters (no spaces or line breaks), got ${JSON.stringify(options.correlationId)}.`,
    );
  }
  if (options?.traceparent !== undefined && !isTraceparent(options.traceparent)) {
    return new KeelError(
      KeelErrorCode.INVALID_INPUT,
      `traceparent for ${label} must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lower case, ids not all zeros), got ${JSON.stringify(options.traceparent)}; newTraceparent() makes one.`,
    );
  }
  return undefined;
}
