/**
 * The fields every log line written while a handler runs carries: the trace and span it belongs
 * to, the correlation id, and the module and operation (or event) being handled.
 */
import { trace } from './otel-api.js';
import type { CallContext } from './context.js';
import { CALL_CONTEXT_KEY, HANDLER_KEY, contextStorage, type HandlerScope } from './otel-context.js';
import { keelTracer } from './tracing.js';

/**
 * The fields of the context a log line is written in, `{}` outside any handler:
 * `trace_id` and `span_id` (the handler's own span while tracing is on; without tracing, the
 * trace and the caller's span from the call's `traceparent`), `correlation_id`, `module`, and
 * `operation` or `event`. keel's default logger adds them to every line (pino's `mixin`); with
 * a logger of your own, add them yourself.
 *
 * @example
 * ```ts
 * import { pino } from 'pino';
 * import { logFields } from 'keel/transport';
 *
 * const kernel = createKernel({ modules, logger: pino({ mixin: logFields }) });
 * ```
 */
export function logFields(): Record<string, unknown> {
  const store = contextStorage.getStore();
  if (store === undefined) return {};
  const call = store.getValue(CALL_CONTEXT_KEY) as CallContext | undefined;
  const handler = store.getValue(HANDLER_KEY) as HandlerScope | undefined;
  const fields: Record<string, unknown> = {};
  const span = keelTracer() === undefined ? undefined : trace.getSpan(store)?.spanContext();
  if (span !== undefined) {
    fields['trace_id'] = span.traceId;
    fields['span_id'] = span.spanId;
  } else if (call?.traceparent !== undefined) {
    fields['trace_id'] = call.traceparent.slice(3, 35);
    fields['span_id'] = call.traceparent.slice(36, 52);
  }
  if (call !== undefined) fields['correlation_id'] = call.correlationId;
  if (handler !== undefined) {
    fields['module'] = handler.module;
    if (handler.operation !== undefined) fields['operation'] = handler.operation;
    if (handler.event !== undefined) fields['event'] = handler.event;
  }
  return fields;
}

/**
 * The fields of {@link logFields} for a call or an event, on a line keel writes about it once its
 * handler has ended or failed (what a handler threw whose caller sees `INTERNAL`, an answer it
 * could not send, an event given up on), where the handler's context is no longer current:
 * `trace_id` and `span_id` from its `traceparent` (the caller's span, in the call's trace),
 * `correlation_id`, then `fields` (`operation`, `event`). The keys it does not set are set to
 * `undefined`, which pino leaves out, so that the scope of whatever context is current (an outer
 * handler's, when the call was nested in it) does not leak onto the line through the mixin. Not
 * `module`: a module's logger binds it, and pino would write it twice. So the line that explains
 * an `INTERNAL` answer is found by the same `trace_id` or `correlation_id` as the handler's own
 * lines.
 *
 * @example
 * ```ts
 * logger.error({ err: error, ...callLogFields(context, { operation: 'placeOrder' }) }, 'orders.placeOrder failed with an undeclared error');
 * ```
 */
export function callLogFields(
  source: { readonly correlationId?: string | undefined; readonly traceparent?: string | undefined },
  fields: Record<string, unknown>,
): Record<string, unknown> {
  const traceparent = source.traceparent;
  return Object.assign(
    {
      trace_id: traceparent?.slice(3, 35),
      span_id: traceparent?.slice(36, 52),
      correlation_id: source.correlationId,
      operation: undefined,
      event: undefined,
    },
    fields,
  );
}
