/**
 * Prometheus metrics of a kernel (calls made, calls served, events handled, on every transport)
 * and of the gateway's own HTTP requests, with prom-client.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { OK_OUTCOME, type CallRecord, type EventRecord, type Kernel } from 'keel';

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
  /** Records one HTTP request answered by the gateway. `route` is the route template, never the raw URL. */
  observeHttp(method: string, route: string, status: number, durationMs: number): void;
  /** Stops observing the kernel. */
  close(): void;
}

function metric<T extends Metric>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/**
 * Observes a kernel into Prometheus metrics:
 *
 * - `keel_calls_total{side,contract,operation,transport,caller,outcome}`: calls made (`side="made"`,
 *   as the caller saw them) and served (`side="served"`), `outcome` being `ok` or the error code;
 * - `keel_call_errors_total{side,contract,operation,transport,caller,code}`: failed calls by code;
 * - `keel_call_duration_seconds{side,contract,operation,transport,caller}`: latency histogram;
 * - `keel_events_handled_total{contract,event,subscriber,outcome}` and
 *   `keel_event_handler_duration_seconds{contract,event,subscriber}`;
 * - `keel_http_requests_total{method,route,status}` and `keel_http_request_duration_seconds{method,route}`.
 *
 * The HTTP gateway does this for you and serves the result at `/metrics`.
 *
 * @example
 * ```ts
 * const metrics = createKernelMetrics(kernel, { defaultMetrics: false });
 * console.log(await metrics.registry.metrics());
 * metrics.close();
 * ```
 */
export function createKernelMetrics(kernel: Kernel, options: KernelMetricsOptions = {}): KernelMetrics {
  const registry = options.registry ?? new Registry();
  const buckets = [...(options.buckets ?? DEFAULT_LATENCY_BUCKETS)];
  const registers = [registry];
  if (options.defaultMetrics ?? true) {
    if (registry.getSingleMetric('process_cpu_user_seconds_total') === undefined) collectDefaultMetrics({ register: registry });
  }
  const callLabels = ['side', 'contract', 'operation', 'transport', 'caller'] as const;
  const calls = metric(registry, 'keel_calls_total', () =>
    new Counter({ name: 'keel_calls_total', help: 'Calls made and served, by outcome (ok or error code).', labelNames: [...callLabels, 'outcome'], registers }),
  );
  const errors = metric(registry, 'keel_call_errors_total', () =>
    new Counter({ name: 'keel_call_errors_total', help: 'Failed calls made and served, by error code.', labelNames: [...callLabels, 'code'], registers }),
  );
  const durations = metric(registry, 'keel_call_duration_seconds', () =>
    new Histogram({ name: 'keel_call_duration_seconds', help: 'Latency of calls made and served.', labelNames: callLabels, buckets, registers }),
  );
  const eventLabels = ['contract', 'event', 'subscriber'] as const;
  const events = metric(registry, 'keel_events_handled_total', () =>
    new Counter({ name: 'keel_events_handled_total', help: 'Events handled, by outcome (ok or error code).', labelNames: [...eventLabels, 'outcome'], registers }),
  );
  const eventDurations = metric(registry, 'keel_event_handler_duration_seconds', () =>
    new Histogram({ name: 'keel_event_handler_duration_seconds', help: 'Latency of event handlers.', labelNames: eventLabels, buckets, registers }),
  );
  const httpRequests = metric(registry, 'keel_http_requests_total', () =>
    new Counter({ name: 'keel_http_requests_total', help: 'HTTP requests answered by the gateway.', labelNames: ['method', 'route', 'status'], registers }),
  );
  const httpDurations = metric(registry, 'keel_http_request_duration_seconds', () =>
    new Histogram({ name: 'keel_http_request_duration_seconds', help: 'Latency of HTTP requests.', labelNames: ['method', 'route'], buckets, registers }),
  );

  const recordCall = (side: 'made' | 'served', record: CallRecord): void => {
    const labels = {
      side,
      contract: record.contract,
      operation: record.operation,
      transport: record.transport,
      caller: record.caller,
    };
    calls.inc({ ...labels, outcome: record.outcome });
    if (record.outcome !== OK_OUTCOME) errors.inc({ ...labels, code: record.outcome });
    durations.observe(labels, record.durationMs / 1000);
  };
  const recordEvent = (record: EventRecord): void => {
    const labels = { contract: record.contract, event: record.event, subscriber: record.subscriber };
    events.inc({ ...labels, outcome: record.outcome });
    eventDurations.observe(labels, record.durationMs / 1000);
  };
  const stop = kernel.observe({
    callMade: (record) => recordCall('made', record),
    callServed: (record) => recordCall('served', record),
    eventHandled: recordEvent,
  });

  return {
    registry,
    observeHttp(method, route, status, durationMs) {
      httpRequests.inc({ method, route, status: String(status) });
      httpDurations.observe({ method, route }, durationMs / 1000);
    },
    close: stop,
  };
}
