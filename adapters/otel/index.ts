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
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ConsoleSpanExporter, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { KeelError, KeelErrorCode } from 'keel';
import { KeelContextManager, disableTracing, enableTracing } from 'keel/transport';
import { samplerFromEnv } from './sampler.js';

export { tracingRequested } from 'keel/transport';

/**
 * What {@link startTracing} takes. Every field has an `OTEL_*` variable, which wins over it.
 *
 * @example
 * ```ts
 * startTracing({ serviceName: 'orders', env: { ...process.env, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' } });
 * ```
 */
export interface StartTracingOptions {
  /** `service.name` when neither `OTEL_SERVICE_NAME` nor `KEEL_PROCESS_NAME` (the process group's name) is set; default `keel`. */
  readonly serviceName?: string | undefined;
  /** Where the `OTEL_*` variables are read; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
}

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
  /** Exporter in use: `otlp` (with its protocol), `console` or `none`. */
  readonly exporter: string;
  /** Sends what is buffered (at most `OTEL_BSP_EXPORT_TIMEOUT` ms) and stops tracing. */
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry SDK and switches keel's spans on, from the standard variables:
 * `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (and their `_HEADERS`),
 * `OTEL_EXPORTER_OTLP_PROTOCOL` or `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (`http/protobuf`, the
 * default, or `http/json`), `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`),
 * `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
 * `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`. `KEEL_TRACE_IN_PROCESS=false` leaves calls between
 * modules of one process without spans. Call it before making kernels and gateways.
 *
 * @throws KeelError `INVALID_CONFIG` naming the variable whose value is not supported.
 * @example
 * ```ts
 * const tracing = startTracing();
 * ```
 */
export function startTracing(options: StartTracingOptions = {}): Tracing {
  const env = options.env ?? process.env;
  const serviceName = env['OTEL_SERVICE_NAME']?.trim() || env['KEEL_PROCESS_NAME']?.trim() || options.serviceName || 'keel';
  const exporterName = (env['OTEL_TRACES_EXPORTER']?.trim() || 'otlp').toLowerCase();
  let exporter: SpanExporter | undefined;
  let described = exporterName;
  if (exporterName === 'otlp') {
    const protocol = (env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']?.trim() || env['OTEL_EXPORTER_OTLP_PROTOCOL']?.trim() || 'http/protobuf').toLowerCase();
    const config = exporterConfig(env);
    if (protocol === 'http/protobuf') exporter = new OtlpProtobufExporter(config);
    else if (protocol === 'http/json') exporter = new OtlpJsonExporter(config);
    else {
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `OTEL_EXPORTER_OTLP_PROTOCOL is "${protocol}", which keel does not export with; set it to http/protobuf or http/json ` +
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
  const resource = resourceFromAttributes({ ...keyValues(env, 'OTEL_RESOURCE_ATTRIBUTES'), 'service.name': serviceName });
  const provider = new TracerProvider({
    resource,
    sampler: samplerFromEnv(env),
    spanProcessors: exporter === undefined ? [] : [new BatchSpanProcessor({ exporter, ...batchOptions(env) })],
  });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new KeelContextManager());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  enableTracing({ provider, inProcessSpans: env['KEEL_TRACE_IN_PROCESS']?.trim().toLowerCase() !== 'false' });
  let stopped: Promise<void> | undefined;
  return {
    serviceName: resource.attributes['service.name'] as string,
    exporter: described,
    shutdown: () => {
      stopped ??= (async () => {
        disableTracing();
        await provider.shutdown();
        trace.disable();
        context.disable();
        propagation.disable();
      })();
      return stopped;
    },
  };
}

/**
 * The exporter's URL and headers from `env` (the exporters themselves read only `process.env`):
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
 * `/v1/traces`; the general and the traces headers.
 */
function exporterConfig(env: Readonly<Record<string, string | undefined>>): { url?: string; headers?: Record<string, string> } {
  const config: { url?: string; headers?: Record<string, string> } = {};
  const traces = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim();
  const base = env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim();
  const url = traces || (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined);
  if (url !== undefined) {
    if (!/^https?:$/.test(URL.parse(url)?.protocol ?? '')) {
      const variable = traces ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `${variable} is "${traces || base}", which is not an http(s) URL; set it to the receiver's, such as http://localhost:4318.`,
      );
    }
    config.url = url;
  }
  const headers = { ...keyValues(env, 'OTEL_EXPORTER_OTLP_HEADERS'), ...keyValues(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS') };
  if (Object.keys(headers).length > 0) config.headers = headers;
  return config;
}

/** A `key1=value1,key2=value2` variable (values percent-decoded), as the OTel variables write lists. */
function keyValues(env: Readonly<Record<string, string | undefined>>, variable: string): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const item of (env[variable] ?? '').split(',')) {
    if (item.trim() === '') continue;
    const at = item.indexOf('=');
    if (at <= 0) throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} has "${item.trim()}", which is not key=value; write it as key1=value1,key2=value2.`);
    try {
      pairs[item.slice(0, at).trim()] = decodeURIComponent(item.slice(at + 1).trim());
    } catch {
      throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} has "${item.trim()}", whose value is not percent-encoded correctly.`);
    }
  }
  return pairs;
}

const BATCH_VARIABLES = {
  OTEL_BSP_SCHEDULE_DELAY: 'scheduledDelayMillis',
  OTEL_BSP_EXPORT_TIMEOUT: 'exportTimeoutMillis',
  OTEL_BSP_MAX_QUEUE_SIZE: 'maxQueueSize',
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 'maxExportBatchSize',
} as const;

/** The batch span processor's options from `OTEL_BSP_*`; a value that is not a positive whole number is named. */
function batchOptions(env: Readonly<Record<string, string | undefined>>): Record<string, number> {
  const options: Record<string, number> = {};
  for (const [variable, field] of Object.entries(BATCH_VARIABLES)) {
    const raw = env[variable]?.trim();
    if (raw === undefined || raw === '') continue;
    const value = Number(raw);
    if (!Number.isInteger(value) || value <= 0) {
      throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} is "${raw}"; set it to a positive whole number, or unset it.`);
    }
    options[field] = value;
  }
  return options;
}
