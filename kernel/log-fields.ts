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
 * could not send, an event given up on), then `fields` (`operation`, `event`). Written where the
 * handler's context is still current, they are that context's ({@link logFields}, the handler's
 * own span included); elsewhere, `trace_id` and `span_id` come from the call's `traceparent` (the
 * caller's span: the handler's has ended), and `correlation_id` from the call. Not `module`: a module's logger binds it, and pino would write
 * it twice. So the line that explains an `INTERNAL` answer is found by the same `trace_id` or
 * `correlation_id` as the handler's own lines.
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
  if (contextStorage.getStore()?.getValue(CALL_CONTEXT_KEY) !== undefined) {
    // The handler's context is current: its fields, its own span among them (a mixin would add the same).
    const { module: _bound, ...current } = logFields();
    return Object.assign(current, fields);
  }
  const line: Record<string, unknown> = {};
  if (source.traceparent !== undefined) {
    line['trace_id'] = source.traceparent.slice(3, 35);
    line['span_id'] = source.traceparent.slice(36, 52);
  }
  if (source.correlationId !== undefined) line['correlation_id'] = source.correlationId;
  return Object.assign(line, fields);
}
