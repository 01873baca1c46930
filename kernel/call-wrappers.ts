/**
 * What a typed client's call is wrapped in, when the kernel asks for it: observers told about
 * every finished call (metrics), and a client span around the call while tracing is on. Each
 * wrapper costs one comparison per call while it has nothing to do.
 */
import { performance } from 'node:perf_hooks';
import { trace } from './otel-api.js';
import type { CallOptions } from './client.js';
import { OK_OUTCOME, outcomeOf, type KernelObserver } from './observer.js';
import { contextStorage, derivableContext } from './otel-context.js';
import { endCallSpan, keelTracer, startClientSpan, tracesCalls } from './tracing.js';

/** `call`, reporting every finished call to `observers` (a live array: none, no cost but a length check). */
export function observeCall(
  call: (input: unknown, options?: CallOptions) => Promise<unknown>,
  contract: string,
  operation: string,
  transport: string,
  caller: string,
  observers: readonly KernelObserver[],
): (input: unknown, options?: CallOptions) => Promise<unknown> {
  const report = (started: number, outcome: string): void => {
    const record = { contract, operation, transport, caller, durationMs: performance.now() - started, outcome };
    for (const observer of observers) observer.callMade?.(record);
  };
  // Not an async function: one derived promise per call, no await.
  const observed = (input: unknown, options?: CallOptions): Promise<unknown> => {
    const started = performance.now();
    let pending: Promise<unknown>;
    try {
      pending = call(input, options);
    } catch (error) {
      report(started, outcomeOf(error));
      return Promise.reject(error);
    }
    return pending.then(
      (output) => {
        report(started, OK_OUTCOME);
        return output;
      },
      (error: unknown) => {
        report(started, outcomeOf(error));
        throw error;
      },
    );
  };
  return (input, options) => (observers.length === 0 ? call(input, options) : observed(input, options));
}

/**
 * `call` with a client span around it while tracing is on (one comparison while it is off):
 * the call runs with its span active, so the context it sends carries the span's traceparent.
 */
export function traceCall(
  call: (input: unknown, options?: CallOptions) => Promise<unknown>,
  contract: string,
  operation: string,
  transport: string,
  caller: string,
): (input: unknown, options?: CallOptions) => Promise<unknown> {
  return (input, options) => {
    const tracer = keelTracer();
    if (tracer === undefined || !tracesCalls(transport)) return call(input, options);
    const parent = derivableContext();
    const span = startClientSpan(tracer, contract, operation, transport, caller, options?.traceparent, parent);
    // No span of keel's own (under a parent not sampled, `noSpanUnderUnsampled`): the parent's
    // span context goes on, and the parent, which records nothing either, is already the active
    // span. Nothing to make active or to end, so the call is made as it is: entering a context
    // copies the caller's whole async context frame on Node 24 (about 2.5 k instructions a call;
    // docs/performance.md, "Tracing, second round").
    const above = trace.getSpan(parent);
    if (above !== undefined && span.spanContext() === above.spanContext() && !above.isRecording()) return call(input, options);
    let pending: Promise<unknown>;
    try {
      pending = contextStorage.run(trace.setSpan(parent, span), call, input, options);
    } catch (error) {
      endCallSpan(span, 'client', outcomeOf(error), error);
      throw error;
    }
    return pending.then(
      (output) => {
        endCallSpan(span, 'client', OK_OUTCOME);
        return output;
      },
      (error: unknown) => {
        endCallSpan(span, 'client', outcomeOf(error), error);
        throw error;
      },
    );
  };
}
