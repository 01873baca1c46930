/**
 * Prometheus metrics of a kernel (calls made, calls served, events handled, on every transport)
 * and of the gateway's own HTTP requests, with prom-client.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';
import { collectKernelState } from './state-metrics.js';
import { KeelErrorCode, type AnyContract, type Kernel } from 'keel';
import { EXTERNAL_CALLER, GIVEN_BACK_OUTCOME, OK_OUTCOME, type CallRecord, type EventRecord } from 'keel/transport';
import { BoundedLabel, SeriesCache, SeriesCounter, SeriesHistogram, type CounterSeries, type HistogramSeries } from './series.js';

/**
 * Callers and outcomes admitted as label values beyond those known in advance (the application's
 * module names, `http`, `external`; the closed map's codes and every declared error's): scripts
 * and gateways naming themselves, errors of services outside the manifest.
 */
const LABEL_ROOM = 64;

/**
 * Latency buckets in seconds: from in-process calls (well under a millisecond) to slow remote ones.
 *
 * @example
 * ```ts
 * createKernelMetrics(kernel, { buckets: DEFAULT_LATENCY_BUCKETS.filter((seconds) => seconds >= 0.001) });
 * ```
 */
export const DEFAULT_LATENCY_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/**
 * What {@link createKernelMetrics} takes.
 *
 * @example
 * ```ts
 * import { register } from 'prom-client';
 * const gateway = await createHttpGateway({ kernel, metrics: { registry: register, defaultMetrics: false } });
 * ```
 */
export interface KernelMetricsOptions {
  /** Registry to register into (default: a new one, so several gateways in a process do not clash). */
  readonly registry?: Registry;
  /** Also collect prom-client's default process metrics (CPU, memory, event loop lag). Default true. */
  readonly defaultMetrics?: boolean;
  /** Histogram buckets in seconds. */
  readonly buckets?: readonly number[];
}

/**
 * Metrics of one kernel and one HTTP server; made by {@link createKernelMetrics}.
 *
 * @example
 * ```ts
 * const metrics: KernelMetrics = createKernelMetrics(kernel);
 * const text = await metrics.registry.metrics(); // Prometheus text format
 * metrics.close();
 * ```
 */
export interface KernelMetrics {
  /** The registry holding every metric; `registry.metrics()` is the Prometheus text. */
  readonly registry: Registry;
  /**
   * Records one HTTP request answered by the gateway. `route` is the route template, never the
   * raw URL. Without `durationMs` (an answer whose request has no known start: what Node's
   * client-error handler writes) the request is counted, and the duration histogram left alone.
   */
  observeHttp(method: string, route: string, status: number, durationMs?: number): void;
  /** Stops observing the kernel. */
  close(): void;
}

/** The kernel each {@link KernelMetrics} made here observes: how the gateway knows one it is given. */
const observed = new WeakMap<KernelMetrics, Kernel>();

/**
 * The kernel `value` observes, when it is a {@link KernelMetrics} made by
 * {@link createKernelMetrics}; else `undefined`.
 *
 * @example
 * ```ts
 * const metrics = createKernelMetrics(kernel);
 * kernelOfMetrics(metrics) === kernel; // true
 * kernelOfMetrics({ registry }); // undefined: options, not metrics
 * ```
 */
export function kernelOfMetrics(value: unknown): Kernel | undefined {
  return typeof value === 'object' && value !== null ? observed.get(value as KernelMetrics) : undefined;
}

/** The metric series one kind of call record lands in. */
interface CallSeries {
  readonly calls: CounterSeries;
  readonly duration: HistogramSeries;
}

/** The metric series one kind of event record lands in. */
interface EventSeries {
  readonly events: CounterSeries;
  readonly duration: HistogramSeries;
}

/** The metric series one kind of HTTP request lands in. */
interface HttpSeries {
  readonly requests: CounterSeries;
  readonly duration: HistogramSeries;
}

/**
 * Observes a kernel into Prometheus metrics:
 *
 * - `keel_calls_total{side,contract,operation,transport,caller,outcome}`: calls made (`side="made"`,
 *   as the caller saw them) and served (`side="served"`), `outcome` being `ok` or the error code
 *   (failed calls are `outcome!="ok"`: there is no separate error counter);
 * - `keel_call_duration_seconds{side,contract,operation,transport,caller}`: latency histogram;
 * - `keel_events_handled_total{contract,event,subscriber,outcome}` (`outcome`: `ok`, `given_back`
 *   when a module's stop gave the event back, or the error code, bounded as a made call's) and
 *   `keel_event_handler_duration_seconds{contract,event,subscriber}`;
 * - `keel_http_requests_total{method,route,status}` and `keel_http_request_duration_seconds{method,route}`;
 * - `keel_requests_dropped_total{contract,operation,transport,reason}`: requests a transport dropped
 *   before they became calls (`reason="no-reply"`: a NATS request without a reply subject);
 * - `keel_bulkhead_running{module}`, `keel_bulkhead_queued{module}` (gauges) and
 *   `keel_bulkhead_rejected_total{module}` (calls refused `RESOURCE_EXHAUSTED`): each hosted
 *   module's bulkhead, read from `kernel.status()` when the registry is read, never per call;
 * - `keel_call_retries_total{contract,operation,transport,caller,reason}`: attempts callers sent
 *   again (`reason` `retry` or `hedge`);
 * - `keel_circuit_state{dependency}` (0 closed, 1 open, 2 half-open) and
 *   `keel_circuit_opened_total{dependency}`: each dependency's circuit breaker, read when scraped;
 * - `keel_retries_over_budget_total{dependency}`: retries and hedges not sent because the
 *   dependency's retry budget (the kernel's `retryBudget`) was spent, read when scraped.
 *
 * The HTTP gateway does this for you and serves the result at `/metrics`. Only what happens
 * after this call is counted: make it (or the gateway) before `kernel.start()`, which is where
 * modules make their first calls and durable consumers handle the events that waited for them.
 * Metrics made here can be given to a gateway made later (`createHttpGateway({ kernel, metrics })`):
 * it serves them, and leaves closing them to you.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, topology });
 * const metrics = createKernelMetrics(kernel, { defaultMetrics: false }); // before start: the start-up backlog counts
 * await kernel.start();
 * console.log(await metrics.registry.metrics());
 * metrics.close();
 * ```
 */
export function createKernelMetrics(kernel: Kernel, options: KernelMetricsOptions = {}): KernelMetrics {
  const registry = options.registry ?? new Registry();
  const buckets = [...(options.buckets ?? DEFAULT_LATENCY_BUCKETS)];
  if (options.defaultMetrics ?? true) {
    if (registry.getSingleMetric('process_cpu_user_seconds_total') === undefined) collectDefaultMetrics({ register: registry });
  }
  const callLabels = ['side', 'contract', 'operation', 'transport', 'caller'] as const;
  const calls = new SeriesCounter(registry, 'keel_calls_total', 'Calls made and served, by outcome (ok or error code).', [
    ...callLabels,
    'outcome',
  ]);
  const durations = SeriesHistogram.in(registry, 'keel_call_duration_seconds', 'Latency of calls made and served.', buckets);
  const eventLabels = ['contract', 'event', 'subscriber'] as const;
  const events = new SeriesCounter(registry, 'keel_events_handled_total', 'Events handled, by outcome (ok, given_back or error code).', [
    ...eventLabels,
    'outcome',
  ]);
  const eventDurations = SeriesHistogram.in(registry, 'keel_event_handler_duration_seconds', 'Latency of event handlers.', buckets);
  const httpRequests = new SeriesCounter(registry, 'keel_http_requests_total', 'HTTP requests answered by the gateway.', ['method', 'route', 'status']);
  const httpDurations = SeriesHistogram.in(registry, 'keel_http_request_duration_seconds', 'Latency of HTTP requests.', buckets);
  const dropped = new SeriesCounter(registry, 'keel_requests_dropped_total', 'Requests dropped before they became calls, by reason.', [
    'contract',
    'operation',
    'transport',
    'reason',
  ]);
  const retries = new SeriesCounter(registry, 'keel_call_retries_total', 'Attempts sent again by callers: a retry after a failure, or a hedge.', [
    'contract',
    'operation',
    'transport',
    'caller',
    'reason',
  ]);

  // Each kind of record is resolved once to its series; recording is then arithmetic (series.ts).
  const keyOf = (...values: string[]): string => values.join('\u0001');
  const madeSeries = new SeriesCache<CallSeries>();
  const servedSeries = new SeriesCache<CallSeries>();
  // A served call's caller is what the request said it was, and a made call's error code what
  // the answer said: bounded, so that a sender cannot add series without end. Only those two: a
  // made call's caller and a served call's outcome are this process's own.
  const servedCallers = new BoundedLabel([...kernel.modules.map((module) => module.name), 'http', EXTERNAL_CALLER], LABEL_ROOM);
  const declared = kernel.modules.flatMap((module) =>
    Object.values((module.contract as AnyContract).operations).flatMap((definition) => definition.errors.map((error) => error.code)),
  );
  const madeOutcomes = new BoundedLabel([OK_OUTCOME, ...Object.values(KeelErrorCode), ...declared], LABEL_ROOM);
  const recordCall = (side: 'made' | 'served', record: CallRecord): void => {
    const cache = side === 'made' ? madeSeries : servedSeries;
    const { contract, operation, transport, caller, outcome } = record;
    let series = cache.get(contract, operation, transport, caller, outcome);
    if (series === undefined) {
      // Asked when no series is found: for a value past the bound, on each of its calls.
      const callerLabel = side === 'served' ? servedCallers.of(caller) : caller;
      const outcomeLabel = side === 'made' ? madeOutcomes.of(outcome) : outcome;
      if (callerLabel !== caller || outcomeLabel !== outcome) {
        recordCall(side, { ...record, caller: callerLabel, outcome: outcomeLabel });
        return;
      }
      const labels = { side, contract, operation, transport, caller };
      const key = keyOf(side, contract, operation, transport, caller);
      series = cache.set(
        {
          calls: calls.series(keyOf(key, outcome), () => ({ ...labels, outcome })),
          duration: durations.series(key, () => labels),
        },
        contract,
        operation,
        transport,
        caller,
        outcome,
      );
    }
    calls.inc(series.calls);
    durations.observe(series.duration, record.durationMs / 1000);
  };
  const eventSeries = new SeriesCache<EventSeries>();
  // An event's outcome is the `code` of whatever its handler threw: a database's or a library's
  // error code, or one a handler made up from its payload. Bounded as a made call's is.
  const eventOutcomes = new BoundedLabel([OK_OUTCOME, GIVEN_BACK_OUTCOME, ...Object.values(KeelErrorCode), ...declared], LABEL_ROOM);
  const recordEvent = (record: EventRecord): void => {
    const { contract, event, subscriber, outcome } = record;
    let series = eventSeries.get(contract, event, subscriber, outcome, '');
    if (series === undefined) {
      // Asked when no series is found: for a value past the bound, on each of its records.
      const outcomeLabel = eventOutcomes.of(outcome);
      if (outcomeLabel !== outcome) {
        recordEvent({ ...record, outcome: outcomeLabel });
        return;
      }
      const labels = { contract, event, subscriber };
      const key = keyOf(contract, event, subscriber);
      series = eventSeries.set(
        {
          events: events.series(keyOf(key, outcome), () => ({ ...labels, outcome })),
          duration: eventDurations.series(key, () => labels),
        },
        contract,
        event,
        subscriber,
        outcome,
        '',
      );
    }
    events.inc(series.events);
    eventDurations.observe(series.duration, record.durationMs / 1000);
  };
  const stop = kernel.observe({
    callMade: (record) => recordCall('made', record),
    callServed: (record) => recordCall('served', record),
    eventHandled: recordEvent,
    requestDropped: ({ contract, operation, transport, reason }) =>
      dropped.inc(dropped.series(keyOf(contract, operation, transport, reason), () => ({ contract, operation, transport, reason }))),
    callRetried: ({ contract, operation, transport, caller, reason }) =>
      retries.inc(retries.series(keyOf(contract, operation, transport, caller, reason), () => ({ contract, operation, transport, caller, reason }))),
  });

  const stopState = collectKernelState(registry, () => kernel.status());

  const httpSeries = new SeriesCache<HttpSeries>();
  const made: KernelMetrics = {
    registry,
    observeHttp(method, route, status, durationMs) {
      let series = httpSeries.get(method, route, status, '', '');
      if (series === undefined) {
        series = httpSeries.set(
          {
            requests: httpRequests.series(keyOf(method, route, String(status)), () => ({ method, route, status: String(status) })),
            duration: httpDurations.series(keyOf(method, route), () => ({ method, route })),
          },
          method,
          route,
          status,
          '',
          '',
        );
      }
      httpRequests.inc(series.requests);
      if (durationMs !== undefined) httpDurations.observe(series.duration, durationMs / 1000);
    },
    close() {
      stop();
      stopState();
      for (const counter of [calls, events, httpRequests, dropped, retries]) counter.close();
    },
  };
  observed.set(made, kernel);
  return made;
}
