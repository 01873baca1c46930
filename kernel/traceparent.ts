/**
 * The W3C `traceparent` a call or event carries: formatted from a span context, and read back
 * into one. A one-entry memo spares the in-process callee parsing the string its caller has just
 * written (docs/design-notes.md, "A traced call that makes no span enters no context").
 */
import type { SpanContext } from '@opentelemetry/api';
import { INVALID_SPANID, INVALID_TRACEID, TraceFlags } from './otel-api.js';
import { isTraceparent } from './call-ids.js';

/**
 * A span context as a W3C `traceparent`.
 *
 * @example
 * ```ts
 * const traceparent = traceparentOf(span.spanContext()); // '00-<trace id>-<span id>-01'
 * ```
 */
export function traceparentOf(spanContext: SpanContext): string {
  const last = lastFormatted;
  const { traceId, spanId, traceFlags } = spanContext;
  if (last !== undefined && last.spanContext === spanContext && last.traceId === traceId && last.spanId === spanId && last.traceFlags === traceFlags) {
    return last.traceparent;
  }
  const traceparent = `00-${traceId}-${spanId}-${traceFlags & TraceFlags.SAMPLED ? '01' : '00'}`;
  lastFormatted = { spanContext, traceId, spanId, traceFlags, traceparent, valid: undefined };
  return traceparent;
}

/** A `traceparent` formatted, with what it was formatted from (copied: a span context's fields can be written). */
interface FormattedTraceparent {
  readonly spanContext: SpanContext;
  readonly traceId: string;
  readonly spanId: string;
  readonly traceFlags: number;
  readonly traceparent: string;
  /** Whether parsing `traceparent` gives a span context, once a reader asked. */
  valid: boolean | undefined;
}

/**
 * The last `traceparent` formatted. Calls made one after another under one span carry the same
 * string, formatted once. And in process the callee reads the string its caller has just
 * written (the transport calls the handler synchronously, before any other call is made), so
 * {@link spanContextOf} finds it here and does not parse it again, however many callees read it.
 * A string of other digits (a callee's over a wire, mostly) costs one string comparison more, and
 * is parsed.
 */
let lastFormatted: FormattedTraceparent | undefined;

/**
 * The remote span context a `traceparent` names, or `undefined` for none or a malformed one.
 *
 * @example
 * ```ts
 * const parent = spanContextOf(request.headers['traceparent']);
 * ```
 */
export function spanContextOf(traceparent: string | undefined): SpanContext | undefined {
  const last = lastFormatted;
  if (last === undefined || traceparent !== last.traceparent) return parsed(traceparent);
  // The digits of the string just formatted: read from what it was formatted from, checked once.
  if (last.valid === undefined) last.valid = parsed(traceparent) !== undefined;
  return last.valid ? { traceId: last.traceId, spanId: last.spanId, traceFlags: last.traceFlags & TraceFlags.SAMPLED, isRemote: true } : undefined;
}

function parsed(traceparent: string | undefined): SpanContext | undefined {
  if (!isTraceparent(traceparent) || traceparent.startsWith('ff')) return undefined;
  const traceId = traceparent.slice(3, 35);
  const spanId = traceparent.slice(36, 52);
  if (isZeroId(traceId, INVALID_TRACEID) || isZeroId(spanId, INVALID_SPANID)) return undefined;
  return { traceId, spanId, traceFlags: Number.parseInt(traceparent.slice(53, 55), 16) & TraceFlags.SAMPLED, isRemote: true };
}

/**
 * Whether `id` is `zero`, the all-zero id of its length, told by its first and last digits for all
 * but one id in 256: comparing a sliced string (a parsed traceparent's ids) with another string
 * reads it through V8's runtime, about 400 instructions a comparison.
 */
export function isZeroId(id: string, zero: string): boolean {
  return id.charCodeAt(0) === 48 && id.charCodeAt(id.length - 1) === 48 && id === zero;
}
