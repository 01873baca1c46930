/**
 * The rules of the values a call carries in headers (correlation id, idempotency key, W3C
 * traceparent): checks only, with no Node.js built-in, so a browser client checks the very same
 * rules as the kernel and the adapters.
 */

const TRACEPARENT_PATTERN = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * True when `value` is a valid W3C `traceparent`: well-formed, of a version other than `ff`, with
 * neither its trace id nor its parent span id all zeros. W3C Trace Context has a receiver ignore
 * any other, so keel never carries one on: tracing off, it would otherwise name the trace of every
 * log line of every request a client or proxy sent it with (`trace_id` `000…0` joins them all).
 *
 * @example
 * ```ts
 * const incoming = request.headers['traceparent'];
 * const traceparent = isTraceparent(incoming) ? incoming : newTraceparent();
 * ```
 */
export function isTraceparent(value: unknown): value is string {
  return typeof value === 'string' && TRACEPARENT_PATTERN.test(value) && !value.startsWith('ff') && !allZeros(value, 3, 35) && !allZeros(value, 36, 52);
}

/** Whether `value` has only `0` from `from` to `to`: read in place (no slice), and told at the first digit for almost every id. */
function allZeros(value: string, from: number, to: number): boolean {
  for (let at = from; at < to; at += 1) if (value.charCodeAt(at) !== 48) return false;
  return true;
}

/** What a correlation id may be: 1 to 128 visible ASCII characters, so that it crosses an HTTP or NATS header unchanged. */
const CORRELATION_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;

/**
 * True when `value` can serve as a correlation id: 1 to 128 visible ASCII characters (no
 * space, no line break). Every transport carries such an id unchanged; keel refuses any other
 * at the call that passes it, in process as over NATS, so that an id means the same everywhere.
 *
 * @example
 * ```ts
 * const incoming = request.headers['x-correlation-id'];
 * const correlationId = isCorrelationId(incoming) ? incoming : newCorrelationId();
 * ```
 */
export function isCorrelationId(value: unknown): value is string {
  return typeof value === 'string' && CORRELATION_ID_PATTERN.test(value);
}

const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/**
 * True when `value` can serve as an idempotency key: 1 to 255 visible ASCII characters (no
 * space, no line break), which every transport carries unchanged.
 *
 * @example
 * ```ts
 * const key = request.headers['idempotency-key'];
 * if (key !== undefined && !isIdempotencyKey(key)) throw new Error('bad Idempotency-Key');
 * ```
 */
export function isIdempotencyKey(value: unknown): value is string {
  return typeof value === 'string' && IDEMPOTENCY_KEY_PATTERN.test(value);
}
