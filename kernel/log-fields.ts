/**
 * The fields every log line written while a handler runs carries: the trace and span it belongs
 * to, the correlation id, and the module and operation (or event) being handled.
 */
import { currentContext } from './context.js';

/**
 * The call context's fields for a log record, or an empty object outside any handler: pino's
 * `mixin` adds them to every line.
 *
 * @example
 * ```ts
 * const logger = pino({ mixin: logFields });
 * ```
 */
export function logFields(): Record<string, unknown> {
  const context = currentContext();
  if (context === undefined) return {};
  const traceparent = context.traceparent;
  if (traceparent === undefined) return { correlation_id: context.correlationId };
  return { trace_id: traceparent.slice(3, 35), span_id: traceparent.slice(36, 52), correlation_id: context.correlationId };
}
