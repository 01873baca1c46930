/**
 * Tracing through the OpenTelemetry API: a client span for each call, a server span for each
 * operation served, producer and consumer spans for events, following the RPC and messaging
 * semantic conventions. Off until {@link enableTracing} (the `keel/otel` entry calls it): then
 * every check below is one comparison, and no span, context or string is made.
 */
import type { Attributes, Context, Link, Span, SpanOptions, Tracer, TracerProvider } from '@opentelemetry/api';
import { INVALID_SPANID, INVALID_TRACEID, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from './otel-api.js';
import type { CallContext } from './context.js';
import { isZeroId, spanContextOf, traceparentOf } from './traceparent.js';
import { KEEL_ROOT_CONTEXT, activeContext, derivableContext } from './otel-context.js';
import { OK_OUTCOME, outcomeOf } from './observer.js';
import { KeelErrorCode } from './errors.js';

let tracer: Tracer | undefined;
let tracingCalls = true;
let attributesAtStart = true;
let noSpanUnderUnsampled = false;

/**
 * What {@link enableTracing} takes.
 *
 * @example
 * ```ts
 * enableTracing({ provider, inProcessSpans: false });
 * ```
 */
export interface TracingOptions {
  /** Where spans go; default: OTel's global tracer provider. */
  readonly provider?: TracerProvider | undefined;
  /** Spans for calls between modules of one process too (default true). */
  readonly inProcessSpans?: boolean | undefined;
  /**
   * Whether the tracer gets a span's attributes as the span starts (default true), where a
   * sampler and a span processor's `onStart` can read them. `false` sets them on a span that
   * records only, once it started, and never works them out for one that does not: for a
   * provider whose sampler and processors read no attribute before a span ends, as
   * `keel/otel`'s (the standard samplers, a batch processor). With spans sampled rarely, this
   * is most of what tracing costs a request that is not sampled. Set after the start, keel's
   * attributes win over any a sampler's result added under the same keys. The outbox relay's
   * span and a redelivered event's (roots, and rare) get theirs at start either way.
   */
  readonly attributesAtStart?: boolean | undefined;
  /**
   * Whether keel may make no span of its own under a parent that is not sampled (default
   * false): the parent's span context goes on in its place, as the active span and in the
   * `traceparent` a call or event carries. Only for a sampler that never samples a span whose
   * parent, local or remote, is not sampled: `always_off` and the `parentbased_*` samplers
   * with their default delegates for such parents (`keel/otel` turns it on for those). A parent
   * that is not valid (all-zero ids, a no-op tracer's span) counts as none. Such a span would be
   * neither recorded nor exported, so what reaches the collector is the same; a request that is
   * not sampled is spared making it.
   */
  readonly noSpanUnderUnsampled?: boolean | undefined;
}

/**
 * Switches keel's spans on for kernels of this process. `keel/otel`'s `startTracing()` calls it
 * after setting up the SDK; an application with its own SDK calls it itself.
 *
 * @example
 * ```ts
 * import { enableTracing } from 'keel/transport';
 * enableTracing({ provider: myTracerProvider });
 * ```
 */
export function enableTracing(options: TracingOptions = {}): void {
  tracer = (options.provider ?? trace.getTracerProvider()).getTracer('keel');
  tracingCalls = options.inProcessSpans ?? true;
  attributesAtStart = options.attributesAtStart ?? true;
  noSpanUnderUnsampled = options.noSpanUnderUnsampled ?? false;
}

/**
 * True when the standard variables ask for traces: an OTLP endpoint is set, or
 * `OTEL_TRACES_EXPORTER` names an exporter, and `OTEL_SDK_DISABLED` is not `true`. Hosts load
 * `keel/otel` only then.
 *
 * @example
 * ```ts
 * const tracing = tracingRequested() ? (await import('keel/otel')).startTracing() : undefined;
 * ```
 */
export function tracingRequested(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true') return false;
  const exporter = env['OTEL_TRACES_EXPORTER']?.trim().toLowerCase();
  if (exporter !== undefined && exporter !== '') return exporter !== 'none';
  return Boolean(env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim() || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim());
}

/**
 * Switches keel's spans off again (tests, shutdown).
 *
 * @example
 * ```ts
 * afterAll(() => disableTracing());
 * ```
 */
export function disableTracing(): void {
  tracer = undefined;
}

/**
 * The tracer keel's spans come from, or `undefined` while tracing is off.
 *
 * @example
 * ```ts
 * if (keelTracer() !== undefined) logger.info({}, 'tracing is on');
 * ```
 */
export function keelTracer(): Tracer | undefined {
  return tracer;
}

/**
 * Starts a span whose attributes are `attributesOf(subject)`: given to the tracer as the span
 * starts, or, with {@link TracingOptions.attributesAtStart} `false`, set once it started and only
 * when it records (`attributesOf` is then not called at all for a span that does not). With
 * {@link TracingOptions.noSpanUnderUnsampled}, under a parent that is not sampled it starts
 * nothing and returns a span that records nothing, of the parent's span context.
 *
 * @example
 * ```ts
 * const span = startSpanWith(tracer, 'GET /health', { kind: SpanKind.SERVER }, KEEL_ROOT_CONTEXT, attributesOfRequest, request);
 * ```
 */
export function startSpanWith<T>(active: Tracer, name: string, options: SpanOptions, parent: Context, attributesOf: (subject: T) => Attributes, subject: T): Span {
  if (noSpanUnderUnsampled) {
    const above = trace.getSpan(parent)?.spanContext();
    // A parent that is not valid (a no-op tracer's, of zero ids) is no parent: a sampler asks its
    // root sampler then. Compared with the zero ids rather than by trace.isSpanContextValid, whose
    // two regular expressions cost about 2 k instructions a call (docs/performance.md).
    // The parent's context wrapped, never the parent itself: ending keel's span must not end it.
    if (above !== undefined && (above.traceFlags & TraceFlags.SAMPLED) === 0 && !isZeroId(above.traceId, INVALID_TRACEID) && !isZeroId(above.spanId, INVALID_SPANID)) {
      return trace.wrapSpanContext(above);
    }
  }
  if (attributesAtStart) return active.startSpan(name, { ...options, attributes: attributesOf(subject) }, parent);
  const span = active.startSpan(name, options, parent);
  if (span.isRecording()) span.setAttributes(attributesOf(subject));
  return span;
}

/** True when calls over `transport` get spans: always over a wire; in process unless switched off. */
export function tracesCalls(transport: string): boolean {
  return tracer !== undefined && (tracingCalls || transport !== 'local');
}

/** `base` continuing the trace of `traceparent` (its parent span), or `base` itself without one. */
function continuing(base: Context, traceparent: string | undefined): Context {
  const remote = spanContextOf(traceparent);
  return remote === undefined ? base : trace.setSpanContext(base, remote);
}

/**
 * The `traceparent` a call or event made now carries: the active span's when tracing is on
 * (the client or producer span keel just started), else `inherited`, unchanged.
 */
export function outgoingTraceparent(inherited: string | undefined): string | undefined {
  if (tracer === undefined) return inherited;
  const span = trace.getSpan(activeContext());
  return span === undefined ? inherited : traceparentOf(span.spanContext());
}

/**
 * Starts the client span of a call from `context` (default: the active context). `external`: the
 * traceparent an outside caller passed (`CallOptions.traceparent`), parent when no span is active.
 */
export function startClientSpan(
  active: Tracer,
  contract: string,
  operation: string,
  transport: string,
  caller: string,
  external: string | undefined,
  context: Context = derivableContext(),
): Span {
  let parent = context;
  if (external !== undefined && trace.getSpan(parent) === undefined) parent = continuing(parent, external);
  const method = `${contract}/${operation}`;
  return startSpanWith(active, method, CLIENT, parent, clientAttributes, { method, transport, caller });
}

const CLIENT: SpanOptions = { kind: SpanKind.CLIENT };
const SERVER: SpanOptions = { kind: SpanKind.SERVER };
const PRODUCER: SpanOptions = { kind: SpanKind.PRODUCER };
const CONSUMER: SpanOptions = { kind: SpanKind.CONSUMER };

function clientAttributes(call: { readonly method: string; readonly transport: string; readonly caller: string }): Attributes {
  return { 'rpc.system.name': 'keel', 'rpc.method': call.method, 'keel.transport': call.transport, 'keel.caller': call.caller };
}

/** Starts the server span of an operation served, child of the caller's span (its traceparent). */
export function startServerSpan(active: Tracer, contract: string, operation: string, transport: string, context: CallContext): Span {
  const method = `${contract}/${operation}`;
  return startSpanWith(active, method, SERVER, continuing(KEEL_ROOT_CONTEXT, context.traceparent), serverAttributes, { method, transport, context });
}

function serverAttributes(served: { readonly method: string; readonly transport: string; readonly context: CallContext }): Attributes {
  const { context } = served;
  const attributes: Attributes = {
    'rpc.system.name': 'keel',
    'rpc.method': served.method,
    'keel.transport': served.transport,
    'keel.caller': context.caller,
    'keel.correlation_id': context.correlationId,
  };
  if (context.callAttempt !== undefined) attributes['keel.call.attempt'] = context.callAttempt;
  return attributes;
}

/**
 * Starts the producer span of an event being emitted (`create` when it goes to the outbox,
 * `send` when it is published at once), child of the active span.
 */
export function startProducerSpan(active: Tracer, contract: string, event: string, operation: 'create' | 'send', correlationId: string | undefined): Span {
  const destination = `${contract}.${event}`;
  return startSpanWith(active, `${operation} ${destination}`, PRODUCER, activeContext(), producerAttributes, { destination, operation, correlationId });
}

function producerAttributes(sent: { readonly destination: string; readonly operation: string; readonly correlationId: string | undefined }): Attributes {
  const attributes: Attributes = {
    'messaging.system': 'keel',
    'messaging.operation.type': sent.operation,
    'messaging.operation.name': sent.operation,
    'messaging.destination.name': sent.destination,
  };
  if (sent.correlationId !== undefined) attributes['messaging.message.conversation_id'] = sent.correlationId;
  return attributes;
}

/**
 * Starts the span of the outbox relay sending one event: a root of its own (the relay runs
 * long after the request), linked to the span that wrote the event.
 */
export function startRelaySpan(
  active: Tracer,
  contract: string,
  event: string,
  eventId: string,
  traceparent: string | undefined,
  correlationId: string,
): Span {
  const created = spanContextOf(traceparent);
  const links: Link[] = created === undefined ? [] : [{ context: created, attributes: { 'keel.link': 'outbox' } }];
  return active.startSpan(
    `send ${contract}.${event}`,
    {
      kind: SpanKind.PRODUCER,
      root: true,
      links,
      attributes: {
        'messaging.system': 'keel',
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'send',
        'messaging.destination.name': `${contract}.${event}`,
        'messaging.message.id': eventId,
        'messaging.message.conversation_id': correlationId,
      },
    },
    ROOT_CONTEXT,
  );
}

/** What a consumer span is told about the event it processes. */
export interface ConsumedEvent {
  readonly contract: string;
  readonly event: string;
  readonly subscriber: string;
  readonly id: string;
  readonly correlationId: string;
  readonly traceparent: string | undefined;
  readonly attempt: number;
}

/**
 * Starts the consumer span of an event being processed: child of its producer span on the
 * first delivery; a redelivery (a durable event's later attempt) starts a trace of its own
 * linked to the producer, so that a retry an hour later does not stretch the request's trace.
 */
export function startConsumerSpan(active: Tracer, consumed: ConsumedEvent): Span {
  const name = `process ${consumed.contract}.${consumed.event}`;
  if (consumed.attempt <= 1) return startSpanWith(active, name, CONSUMER, continuing(KEEL_ROOT_CONTEXT, consumed.traceparent), consumerAttributes, consumed);
  // A redelivery: rare, its attributes at start (a root span, its own sampling decision).
  const attributes = consumerAttributes(consumed);
  attributes['keel.delivery.attempt'] = consumed.attempt;
  const producer = spanContextOf(consumed.traceparent);
  const links: Link[] = producer === undefined ? [] : [{ context: producer, attributes: { 'keel.link': 'redelivery' } }];
  return active.startSpan(name, { kind: SpanKind.CONSUMER, root: true, links, attributes }, ROOT_CONTEXT);
}

function consumerAttributes(consumed: ConsumedEvent): Attributes {
  return {
    'messaging.system': 'keel',
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'process',
    'messaging.destination.name': `${consumed.contract}.${consumed.event}`,
    'messaging.consumer.group.name': consumed.subscriber,
    'messaging.message.id': consumed.id,
    'messaging.message.conversation_id': consumed.correlationId,
  };
}

/** Notes on the active client span that the call was sent once more (a retry or a hedge). */
export function noteAttempt(attempt: number, reason: 'retry' | 'hedge'): void {
  if (tracer === undefined) return;
  trace.getSpan(activeContext())?.addEvent(reason, { 'keel.call.attempt': attempt });
}

/**
 * Ends the span of an event attempt its module's stop gave back before the handler ended: no
 * failure (the event is delivered again), so no error status and no `error.type`, as its
 * observation is `given_back` rather than a code; `keel.event.given_back` says why it ended early.
 */
export function endGivenBackSpan(span: Span): void {
  span.setAttribute('keel.event.given_back', true);
  span.end();
}

/** Ends `span` with the outcome of its work: `OK`, or the error's code and message. */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    span.setAttribute('error.type', outcomeOf(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
  }
  span.end();
}

/**
 * The outcomes that are the server's fault, and so mark a server span `ERROR` (as gRPC's
 * conventions list UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE): a
 * declared error, bad input, a refused caller or a spent quota is the caller's, and leaves the
 * server span's status unset (with `error.type` still set).
 */
const SERVER_FAULTS: ReadonlySet<string> = new Set([
  KeelErrorCode.INTERNAL,
  KeelErrorCode.INVALID_OUTPUT,
  KeelErrorCode.TIMEOUT,
  KeelErrorCode.UNAVAILABLE,
  KeelErrorCode.NO_RESPONDERS,
  KeelErrorCode.INTERRUPTED,
  KeelErrorCode.UNKNOWN_OPERATION,
  KeelErrorCode.INVALID_STATE,
]);

/**
 * Ends the span of a call (`client`) or of a served operation (`server`) with
 * `rpc.status_code`: any outcome but `ok` marks a client span `ERROR`; a server span only when
 * the outcome is the server's fault ({@link SERVER_FAULTS}).
 */
export function endCallSpan(span: Span, side: 'client' | 'server', outcome: string, error?: unknown): void {
  span.setAttribute('rpc.status_code', outcome);
  if (outcome !== OK_OUTCOME) {
    span.setAttribute('error.type', outcome);
    if (side === 'client' || SERVER_FAULTS.has(outcome)) span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
  }
  span.end();
}

function errorMessage(error: unknown): string {
  const envelope = (error as { envelope?: { message?: unknown } } | undefined)?.envelope;
  if (typeof envelope?.message === 'string') return envelope.message;
  return error instanceof Error ? error.message : String(error);
}
