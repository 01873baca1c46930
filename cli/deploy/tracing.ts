/**
 * `keel deploy --tracing`: where every process sends its traces. compose gets an OpenTelemetry
 * Collector (`otel-collector`, configured by `otel-collector.yaml` beside compose.yaml) that
 * takes OTLP over HTTP on 4318 and passes the traces to Jaeger (`jaeger`, its UI published on
 * 16686) over OTLP/gRPC. Every keel service, in compose and in Kubernetes, gets the standard
 * OTEL_* variables the OpenTelemetry SDK reads (docs/deploy.md, "Tracing").
 */
import { stringify } from 'yaml';
import { generatedHeader, type ResolvedDeployOptions } from './plan.js';

/**
 * The images and ports of the tracing services, pinned: a deployment file names exact versions.
 *
 * @example
 * ```ts
 * TRACING_SERVICES.jaegerUiPort; // 16686: http://localhost:16686 once compose is up
 * ```
 */
export const TRACING_SERVICES = {
  /** The contrib distribution: the core one has no exporters beyond OTLP and debug, and users add processors from contrib. */
  collectorImage: 'otel/opentelemetry-collector-contrib:0.156.0',
  /** Jaeger v2: one binary (collector, storage in memory, UI) that takes OTLP itself. */
  jaegerImage: 'jaegertracing/jaeger:2.19.0',
  /** compose's collector service, and the host name keel's services send to. */
  collectorService: 'otel-collector',
  jaegerService: 'jaeger',
  otlpHttpPort: 4318,
  otlpGrpcPort: 4317,
  jaegerUiPort: 16686,
  /** The collector's configuration file, beside compose.yaml. */
  collectorConfigPath: 'otel-collector.yaml',
  /** Where the contrib image reads its configuration. */
  collectorConfigMount: '/etc/otelcol-contrib/config.yaml',
} as const;

/**
 * The OTLP endpoint compose's services send to: its own collector.
 *
 * @example
 * ```ts
 * COMPOSE_OTLP_ENDPOINT; // 'http://otel-collector:4318'
 * ```
 */
export const COMPOSE_OTLP_ENDPOINT = `http://${TRACING_SERVICES.collectorService}:${TRACING_SERVICES.otlpHttpPort}`;

/**
 * The OTEL_* variables of one process group: the collector's base URL (the exporter appends
 * `/v1/traces`), protobuf over HTTP, and the group's name as the service name, so that each
 * process group is one service in Jaeger or Tempo.
 *
 * @example
 * ```ts
 * tracingEnvironment('storefront', 'http://otel-collector:4318');
 * // [['OTEL_EXPORTER_OTLP_ENDPOINT', 'http://otel-collector:4318'], ['OTEL_EXPORTER_OTLP_PROTOCOL', 'http/protobuf'], ['OTEL_SERVICE_NAME', 'storefront']]
 * ```
 */
export function tracingEnvironment(group: string, endpoint: string): [string, string][] {
  return [
    ['OTEL_EXPORTER_OTLP_ENDPOINT', endpoint],
    ['OTEL_EXPORTER_OTLP_PROTOCOL', 'http/protobuf'],
    ['OTEL_SERVICE_NAME', group],
  ];
}

/**
 * The collector's configuration as a plain object: the OTLP receiver on HTTP (all interfaces of
 * the container: since v0.104 it listens on localhost only unless told otherwise), a batch
 * processor, and the OTLP/gRPC exporter to Jaeger (`otlp_grpc`, the name since v0.144; plain
 * text inside compose's network).
 *
 * @example
 * ```ts
 * collectorConfigDocument().service.pipelines.traces.exporters; // ['otlp_grpc/jaeger']
 * ```
 */
export function collectorConfigDocument() {
  return {
    receivers: { otlp: { protocols: { http: { endpoint: `0.0.0.0:${TRACING_SERVICES.otlpHttpPort}` } } } },
    processors: { batch: {} },
    exporters: {
      'otlp_grpc/jaeger': { endpoint: `${TRACING_SERVICES.jaegerService}:${TRACING_SERVICES.otlpGrpcPort}`, tls: { insecure: true } },
    },
    service: {
      pipelines: { traces: { receivers: ['otlp'], processors: ['batch'], exporters: ['otlp_grpc/jaeger'] } },
    },
  };
}

/**
 * `otel-collector.yaml`'s text: {@link collectorConfigDocument} under the generated-file header.
 *
 * @example
 * ```ts
 * writeFileSync('deploy/otel-collector.yaml', collectorConfigFile(options));
 * ```
 */
export function collectorConfigFile(options: Pick<ResolvedDeployOptions, 'source'>): string {
  const header = [
    `# ${generatedHeader(options)}`,
    `# The OpenTelemetry Collector of compose.yaml: OTLP over HTTP in on ${TRACING_SERVICES.otlpHttpPort}, to Jaeger over OTLP/gRPC. Add an exporter here to send traces elsewhere too.`,
  ].join('\n');
  return `${header}\n${stringify(collectorConfigDocument(), { lineWidth: 0 })}`;
}

/**
 * compose's tracing services: the collector, reading `otel-collector.yaml`, and Jaeger with its
 * UI published on the host. Neither has a health check (both images are built from scratch,
 * with no program to run one); exporters retry, and a span sent before the collector listens
 * is dropped, never a process stopped.
 *
 * @example
 * ```ts
 * Object.keys(tracingComposeServices()); // ['otel-collector', 'jaeger']
 * ```
 */
export function tracingComposeServices(): Record<string, unknown> {
  return {
    [TRACING_SERVICES.collectorService]: {
      image: TRACING_SERVICES.collectorImage,
      command: [`--config=${TRACING_SERVICES.collectorConfigMount}`],
      volumes: [`./${TRACING_SERVICES.collectorConfigPath}:${TRACING_SERVICES.collectorConfigMount}:ro`],
      depends_on: { [TRACING_SERVICES.jaegerService]: { condition: 'service_started' } },
      restart: 'unless-stopped',
    },
    [TRACING_SERVICES.jaegerService]: {
      image: TRACING_SERVICES.jaegerImage,
      // The UI has no login and shows every request's data: published on the host's loopback only.
      ports: [`127.0.0.1:${TRACING_SERVICES.jaegerUiPort}:${TRACING_SERVICES.jaegerUiPort}`],
      restart: 'unless-stopped',
    },
  };
}
