/**
 * `keel/otel`: the OpenTelemetry SDK for keel's spans, configured by the standard `OTEL_*`
 * variables. Only a process that traces loads it (`keel start` and the app skeleton import it
 * when {@link tracingRequested} says so), so an application that does not trace never loads
 * the SDK.
 *
 * @example
 * ```ts
 * import { startTracing } from 'keel/otel';
 *
 * // OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 OTEL_SERVICE_NAME=shop node main.js
 * const tracing = startTracing({ serviceName: 'shop' }); // before createKernel and the gateway
 * const kernel = createKernel({ modules });
 * await kernel.start();
 * // ... at exit: every span still buffered is sent
 * await kernel.stop();
 * await tracing.shutdown();
 * ```
 *
 * @module
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator, loggingErrorHandler, setGlobalErrorHandler } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ConsoleSpanExporter, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { KeelError, KeelErrorCode, type Logger } from 'keel';
import { z } from 'zod';
import { KeelContextManager, createLogger, disableTracing, enableTracing, loggerOption, parseOptions } from 'keel/transport';
import { MAX_TIMER_MS, batchOptions, booleanVariable, exporterConfig, keyValues, tolerantKeyValues } from './env.js';
import { messageOf, rateLimitedWarnings } from './export-failures.js';
import { neverSamplesUnderUnsampled, samplerFromEnv } from './sampler.js';

export { tracingRequested } from 'keel/transport';
export { EXPORT_FAILURE_LOG_INTERVAL_MS, EXPORT_FAILURE_MESSAGES_KEPT } from './export-failures.js';

/**
 * What {@link startTracing} takes. The `OTEL_*` variables win over `serviceName`;
 * `shutdownTimeoutMs`, when given, wins over `OTEL_BSP_EXPORT_TIMEOUT`.
 *
 * @example
 * ```ts
 * startTracing({ serviceName: 'orders', env: { ...process.env, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' } });
 * ```
 */
export interface StartTracingOptions {
  /**
   * `service.name` when neither `OTEL_SERVICE_NAME`, nor a `service.name` in
   * `OTEL_RESOURCE_ATTRIBUTES`, nor `KEEL_PROCESS_NAME` (the process group's name) is set;
   * default `keel`.
   */
  readonly serviceName?: string | undefined;
  /** Where the `OTEL_*` variables are read; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /**
   * Where the SDK's warnings go (a failed export, a shutdown that ran out of time): give the
   * process's logger. Default: `createLogger()` (`KEEL_LOG_LEVEL`, `KEEL_LOG_FORMAT` of `process.env`).
   */
  readonly logger?: Logger | undefined;
  /**
   * The longest {@link Tracing.shutdown} waits for the buffered spans to be sent, in ms: default
   * `OTEL_BSP_EXPORT_TIMEOUT` when set, else {@link DEFAULT_SHUTDOWN_TIMEOUT_MS}.
   */
  readonly shutdownTimeoutMs?: number | undefined;
}

// The options, checked once (their ranges, with the variables they stand in for, where they are read).
const StartTracingOptionsSchema = z
  .object({
    // Blank is allowed: it falls back to the next name (keel start --modules none passes one).
    serviceName: z.string({ error: 'must be a string' }).optional(),
    env: z.record(z.string(), z.unknown(), { error: 'must be an object of environment variables, such as process.env' }).optional(),
    logger: loggerOption().optional(),
    // Its type only: its range (Infinity and NaN included) is checked where it is read, with OTEL_BSP_EXPORT_TIMEOUT's.
    shutdownTimeoutMs: z.custom<number>((value) => typeof value === 'number', { error: 'must be a number of milliseconds' }).optional(),
  })
  .strict();

/**
 * How long {@link Tracing.shutdown} waits for the spans still buffered when neither
 * `shutdownTimeoutMs` nor `OTEL_BSP_EXPORT_TIMEOUT` says: 5 s, well inside the 10 to 30 s a
 * supervisor (Docker, Kubernetes, systemd) grants between SIGTERM and SIGKILL.
 *
 * @example
 * ```ts
 * startTracing({ shutdownTimeoutMs: DEFAULT_SHUTDOWN_TIMEOUT_MS * 2 });
 * ```
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5_000;

/**
 * The running SDK: {@link Tracing.shutdown} sends the spans still buffered and stops it.
 *
 * @example
 * ```ts
 * process.once('SIGTERM', () => void tracing.shutdown().finally(() => process.exit(0)));
 * ```
 */
export interface Tracing {
  /** `service.name` the spans are exported under. */
  readonly serviceName: string;
  /** Exporter in use: `otlp` (with its protocol), `console` or `none` (also when `OTEL_SDK_DISABLED=true`). */
  readonly exporter: string;
  /**
   * Sends what is buffered and stops tracing; idempotent. It waits at most the shutdown bound
   * (`shutdownTimeoutMs`, else `OTEL_BSP_EXPORT_TIMEOUT`, else 5 s): past it, or when the export
   * fails, it logs a warning, drops what is left, and still switches tracing off. It never
   * rejects, so that a collector that is down cannot stop a process from exiting cleanly.
   */
  shutdown(): Promise<void>;
}

/** The tracing this process runs, from {@link startTracing} until its shutdown finished. */
let running: { readonly serviceName: string } | undefined;

/**
 * Starts the OpenTelemetry SDK and switches keel's spans on, from the standard variables:
 * `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (and their `_HEADERS`),
 * `OTEL_EXPORTER_OTLP_PROTOCOL` or `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (`http/protobuf`, the
 * default, or `http/json`), `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`),
 * `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
 * `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_TIMEOUT` (or `_TRACES_TIMEOUT`),
 * `OTEL_SDK_DISABLED`. `KEEL_TRACE_IN_PROCESS=false`
 * leaves calls between modules of one process without spans. Call it before making kernels and
 * gateways.
 *
 * `service.name` is, first to last: `OTEL_SERVICE_NAME`, `service.name` in
 * `OTEL_RESOURCE_ATTRIBUTES`, `KEEL_PROCESS_NAME`, `options.serviceName`, `keel`. The resource
 * carries the SDK's own attributes (`telemetry.sdk.*`) and those of `OTEL_RESOURCE_ATTRIBUTES`.
 *
 * `OTEL_SDK_DISABLED=true` starts nothing: the handle says exporter `none`, keel's spans stay
 * off, and its `shutdown()` does nothing.
 *
 * One process runs one SDK at a time (OpenTelemetry's globals hold one tracer provider): a second
 * call while the first's is running throws rather than replacing it or handing back the first
 * (whose service name and exporter may not be what the second caller asked for). Once the first
 * handle's `shutdown()` resolved, tracing can start again.
 *
 * Export failures (a collector down or refusing) are logged as warnings through `options.logger`,
 * at most one line per distinct failure every 30 s.
 *
 * @throws KeelError `INVALID_CONFIG` naming the variable (or option) whose value is not
 *   supported, or saying that tracing is already started in this process.
 * @example
 * ```ts
 * const tracing = startTracing({ logger });
 * ```
 */
export function startTracing(options: StartTracingOptions = {}): Tracing {
  parseOptions('startTracing', StartTracingOptionsSchema, options);
  const env = options.env ?? process.env;
  // The specification's rule for its booleans: `true` in any case, anything else false, with a warning.
  const disabled = env['OTEL_SDK_DISABLED']?.trim() ?? '';
  if (disabled !== '' && disabled.toLowerCase() !== 'true' && disabled.toLowerCase() !== 'false') {
    (options.logger ?? createLogger()).warn({ variable: 'OTEL_SDK_DISABLED', value: disabled }, `OTEL_SDK_DISABLED is "${disabled}", read as false: set it to true or false`);
  }
  if (disabled.toLowerCase() === 'true') {
    // The SDK is off: nothing is checked, registered or switched on.
    return { serviceName: serviceNameOf(env, options, tolerantKeyValues(env, 'OTEL_RESOURCE_ATTRIBUTES')), exporter: 'none', shutdown: () => Promise.resolve() };
  }
  if (running !== undefined) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `Tracing is already started in this process (service.name "${running.serviceName}"); call shutdown() on the handle ` +
        'startTracing() returned first, and start it again once that resolved.',
    );
  }
  const inProcessSpans = booleanVariable(env, 'KEEL_TRACE_IN_PROCESS', true);
  const attributes = keyValues(env, 'OTEL_RESOURCE_ATTRIBUTES');
  const serviceName = serviceNameOf(env, options, attributes);
  const exporterName = (env['OTEL_TRACES_EXPORTER']?.trim() || 'otlp').toLowerCase();
  let exporter: SpanExporter | undefined;
  let described = exporterName;
  if (exporterName === 'otlp') {
    const protocolVariable = env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']?.trim() ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
    const protocol = (env[protocolVariable]?.trim() || 'http/protobuf').toLowerCase();
    const config = exporterConfig(env);
    if (protocol === 'http/protobuf') exporter = new OtlpProtobufExporter(config);
    else if (protocol === 'http/json') exporter = new OtlpJsonExporter(config);
    else {
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `${protocolVariable} is "${protocol}", which keel does not export with; set it to http/protobuf or http/json ` +
          '(a collector takes both on port 4318).',
      );
    }
    described = `otlp ${protocol}`;
  } else if (exporterName === 'console') {
    exporter = new ConsoleSpanExporter();
  } else if (exporterName !== 'none') {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `OTEL_TRACES_EXPORTER is "${exporterName}", which keel does not support; set it to otlp, console or none.`,
    );
  }
  const batch = batchOptions(env);
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? batch['exportTimeoutMillis'] ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  // The bound is a timer's delay: above 2^31-1 ms (or Infinity) a timer fires at once, which would drop every buffered span.
  if (!(Number.isFinite(shutdownTimeoutMs) && shutdownTimeoutMs > 0 && shutdownTimeoutMs <= MAX_TIMER_MS)) {
    const field = options.shutdownTimeoutMs !== undefined ? 'shutdownTimeoutMs' : 'OTEL_BSP_EXPORT_TIMEOUT';
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `${field} is ${shutdownTimeoutMs}; give a number of milliseconds above 0 and at most ${MAX_TIMER_MS}, or leave it out.`,
    );
  }
  const sampler = samplerFromEnv(env);
  const logger = (options.logger ?? createLogger()).child({ component: 'otel' });
  // The SDK's own attributes (telemetry.sdk.*), then OTEL_RESOURCE_ATTRIBUTES, then the service name.
  const resource = resourceFromAttributes({ ...defaultResource().attributes, ...instanceOf(env, attributes), ...attributes, 'service.name': serviceName });
  const provider = new TracerProvider({
    resource,
    sampler,
    spanProcessors: exporter === undefined ? [] : [new BatchSpanProcessor({ exporter, ...batch })],
  });
  running = { serviceName };
  setGlobalErrorHandler(rateLimitedWarnings(logger));
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new KeelContextManager());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  // This provider's samplers (the standard ones) and batch processor read no attribute before a
  // span ends: a span that is not sampled needs none. Under a parent not sampled, always_off and
  // the parentbased_* samplers sample nothing: no span need be made there.
  enableTracing({
    provider,
    inProcessSpans,
    attributesAtStart: false,
    noSpanUnderUnsampled: neverSamplesUnderUnsampled(sampler),
  });
  let stopped: Promise<void> | undefined;
  return {
    serviceName,
    exporter: described,
    shutdown: () => {
      stopped ??= (async () => {
        disableTracing();
        try {
          const outcome = await withinBound(provider.shutdown(), shutdownTimeoutMs);
          if (outcome === 'timeout') {
            logger.warn(
              { timeoutMs: shutdownTimeoutMs },
              `tracing shutdown: the spans still buffered were not sent within ${shutdownTimeoutMs} ms (is the collector reachable?); dropping them`,
            );
          }
        } catch (error) {
          logger.warn({ err: error }, `tracing shutdown: the spans still buffered could not be sent: ${messageOf(error)}`);
        } finally {
          trace.disable();
          context.disable();
          propagation.disable();
          setGlobalErrorHandler(loggingErrorHandler());
          running = undefined;
        }
      })();
      return stopped;
    },
  };
}

/** A replica's `#<n>`, which `keel up` adds to the group's name in `KEEL_PROCESS_NAME` (`storefront#2`). */
const REPLICA_SUFFIX = /#\d+$/;

/**
 * `service.name`: `OTEL_SERVICE_NAME`, then `OTEL_RESOURCE_ATTRIBUTES`'s, then `KEEL_PROCESS_NAME`
 * without a replica's `#<n>` (the replicas of a group are one service), then the option, then `keel`.
 */
function serviceNameOf(env: Readonly<Record<string, string | undefined>>, options: StartTracingOptions, attributes: Record<string, string>): string {
  return (
    env['OTEL_SERVICE_NAME']?.trim() ||
    attributes['service.name']?.trim() ||
    env['KEEL_PROCESS_NAME']?.trim().replace(REPLICA_SUFFIX, '') ||
    options.serviceName?.trim() ||
    'keel'
  );
}

/** `service.instance.id` for a replica `keel up` named (`storefront#2`), unless `OTEL_RESOURCE_ATTRIBUTES` gives one. */
function instanceOf(env: Readonly<Record<string, string | undefined>>, attributes: Record<string, string>): Record<string, string> {
  const name = env['KEEL_PROCESS_NAME']?.trim();
  return name !== undefined && REPLICA_SUFFIX.test(name) && attributes['service.instance.id'] === undefined ? { 'service.instance.id': name } : {};
}

/** `'done'` when `work` settles within `ms` (its rejection is thrown), else `'timeout'`; `work` is left to finish, its failure swallowed. */
async function withinBound(work: Promise<unknown>, ms: number): Promise<'done' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
    timer.unref();
  });
  work.catch(() => undefined);
  try {
    return await Promise.race([work.then(() => 'done' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
