/**
 * `compose.yaml`: NATS with JetStream (when the topology needs it), PostgreSQL (when a group
 * hosts a module that owns data), an OpenTelemetry Collector and Jaeger (with `--tracing`) and
 * one service per process group, all running the one image.
 */
import { stringify } from 'yaml';
import { needsNats, replicaHttpPort, type ProcessGroup, type TopologyFile } from '../topology.js';
import { NATS_CONFIG_PATH, NATS_MONITOR_PORT, natsEnvPath } from './nats-files.js';
import { COMPOSE_OTLP_ENDPOINT, TRACING_SERVICES, tracingComposeServices, tracingEnvironment } from './tracing.js';
import {
  DEFAULT_DEPLOY_OPTIONS,
  generatedHeader,
  groupEnvironment,
  healthCommand,
  hostsAnyData,
  hostsData,
  isGateway,
  locksNats,
  type ResolvedDeployOptions,
} from './plan.js';
import { stopGraceSecondsOf } from './grace.js';

const NATS_VOLUME = 'nats-data';
const POSTGRES_VOLUME = 'postgres-data';
/**
 * compose's PostgreSQL user and password. They are in the file, as everything of compose.yaml
 * is: it runs the topology on one machine, whose PostgreSQL no other host reaches (no port is
 * published). Production gives its own DATABASE_URL (docs/deploy.md, "Data").
 */
const POSTGRES_USER = 'keel';

/** compose's PostgreSQL service: the official alpine image, a named volume, ready once `pg_isready` says so. */
function postgresService(options: ResolvedDeployOptions): Record<string, unknown> {
  return {
    image: DEFAULT_DEPLOY_OPTIONS.postgresImage,
    environment: { POSTGRES_USER, POSTGRES_PASSWORD: POSTGRES_USER, POSTGRES_DB: options.app },
    volumes: [`${POSTGRES_VOLUME}:/var/lib/postgresql/data`],
    healthcheck: {
      test: ['CMD', 'pg_isready', '-U', POSTGRES_USER, '-d', options.app],
      interval: '5s',
      timeout: '3s',
      retries: 10,
      start_period: '10s',
    },
    restart: 'unless-stopped',
  };
}

/**
 * The `DATABASE_URL` compose gives the groups hosting modules that own data: its PostgreSQL
 * service's database, named after the application.
 *
 * @example
 * ```ts
 * composeDatabaseUrl({ app: 'my-shop' }); // 'postgres://keel:keel@postgres:5432/my-shop'
 * ```
 */
export function composeDatabaseUrl(options: Pick<ResolvedDeployOptions, 'app'>): string {
  return `postgres://${POSTGRES_USER}:${POSTGRES_USER}@postgres:5432/${options.app}`;
}

/**
 * The compose file as a plain object (keys in the order they are written).
 *
 * The NATS service uses the official image's `-alpine` variant: the default `nats` image is
 * built from scratch and has no program to run a health check with; the alpine one has
 * busybox `wget`, which asks the monitoring port's `/healthz`. Each group waits for NATS (and,
 * when it hosts a module that owns data, PostgreSQL) to be healthy, runs `deploy.replicas`
 * copies and gets a stop grace period longer than keel's drain timeout (Docker's default of
 * 10 s would kill a draining process).
 *
 * @example
 * ```ts
 * composeDocument(topology, options).services['storefront'].deploy.replicas; // 1
 * ```
 */
export function composeDocument(topology: TopologyFile, options: ResolvedDeployOptions): Record<string, unknown> {
  const nats = needsNats(topology);
  // Locked down: the server reads nats/nats-server.conf (users, JetStream, monitoring), each group its nats/<group>.env.
  const locked = locksNats(topology, options);
  const services: Record<string, unknown> = {};
  if (nats) {
    services['nats'] = {
      image: DEFAULT_DEPLOY_OPTIONS.natsImage,
      command: locked ? ['-c', NATS_CONFIG_PATH] : ['-js', '-sd', '/data', '-m', String(NATS_MONITOR_PORT)],
      volumes: [`${NATS_VOLUME}:/data`, ...(locked ? [`./nats/nats-server.conf:${NATS_CONFIG_PATH}:ro`] : [])],
      healthcheck: {
        test: ['CMD', 'wget', '-q', '--spider', `http://127.0.0.1:${NATS_MONITOR_PORT}/healthz`],
        interval: '5s',
        timeout: '3s',
        retries: 10,
        start_period: '5s',
      },
      restart: 'unless-stopped',
    };
  }
  const data = hostsAnyData(topology, options);
  if (data) services['postgres'] = postgresService(options);
  if (options.tracing) Object.assign(services, tracingComposeServices());
  for (const [name, group] of Object.entries(topology.processes)) {
    const pairs = groupEnvironment(topology, name, group, options.tracing ? tracingEnvironment(name, COMPOSE_OTLP_ENDPOINT) : []);
    const database = hostsData(group, options);
    pairs.splice(
      2,
      0,
      ...(nats ? [['KEEL_NATS_URL', DEFAULT_DEPLOY_OPTIONS.natsUrl] as [string, string]] : []),
      ...(database ? [['DATABASE_URL', composeDatabaseUrl(options)] as [string, string]] : []),
    );
    const environment = Object.fromEntries(pairs);
    const dependencies = {
      ...(nats ? { nats: { condition: 'service_healthy' } } : {}),
      ...(database ? { postgres: { condition: 'service_healthy' } } : {}),
      // Started, not healthy: the collector's image has no program to run a health check with.
      ...(options.tracing ? { [TRACING_SERVICES.collectorService]: { condition: 'service_started' } } : {}),
    };
    services[name] = {
      image: options.image,
      ...(locked ? { env_file: [natsEnvPath(name)] } : {}),
      environment,
      // http: 0 (any free port, for keel up) publishes the container port on a port Docker picks;
      // replicas take one host port each, from http on (a range compose hands out one per container).
      ...(isGateway(group) ? { ports: [`${hostPorts(group)}${DEFAULT_DEPLOY_OPTIONS.containerPort}`] } : {}),
      ...(Object.keys(dependencies).length > 0 ? { depends_on: dependencies } : {}),
      deploy: { replicas: group.replicas },
      healthcheck: { test: ['CMD', ...healthCommand()], interval: '10s', timeout: '3s', retries: 3, start_period: '15s' },
      stop_grace_period: `${stopGraceSecondsOf(group, options.modules, options.config)}s`,
      restart: 'unless-stopped',
    };
  }
  const volumes = { ...(nats ? { [NATS_VOLUME]: {} } : {}), ...(data ? { [POSTGRES_VOLUME]: {} } : {}) };
  return { name: options.app, services, ...(Object.keys(volumes).length > 0 ? { volumes } : {}) };
}

/** The host side of a gateway's port mapping, with its colon: `8080:`, `8080-8081:` for two replicas, '' for any. */
function hostPorts(group: ProcessGroup): string {
  if (!group.http) return '';
  return group.replicas === 1 ? `${group.http}:` : `${group.http}-${replicaHttpPort(group.http, group.replicas)}:`;
}

/**
 * `compose.yaml`'s text: {@link composeDocument} as YAML under the generated-file header.
 *
 * @example
 * ```ts
 * writeFileSync('deploy/compose.yaml', composeFile(topology, options));
 * ```
 */
export function composeFile(topology: TopologyFile, options: ResolvedDeployOptions): string {
  const header = [
    `# ${generatedHeader(options)}`,
    `# Build the image first (docker build -t ${options.image} -f <out>/Dockerfile .), then: docker compose -f <out>/compose.yaml up`,
  ].join('\n');
  return `${header}\n${stringify(composeDocument(topology, options), { lineWidth: 0 })}`;
}
